"""Maven test fixtures: tiny jars compiled with javac, settings.xml, mvn runs, a static upstream
built from the machine's Maven cache (~/.m2/repository, hard-linked, with .sha1 sidecars)."""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

M2 = Path.home() / ".m2" / "repository"
MVN = shutil.which("mvn")
JAVAC = shutil.which("javac")
DEPLOY = "org.apache.maven.plugins:maven-deploy-plugin:3.1.4:deploy-file"
PLUGINS = """
  <build><plugins>
    <plugin><groupId>org.apache.maven.plugins</groupId><artifactId>maven-resources-plugin</artifactId><version>3.5.0</version></plugin>
    <plugin><groupId>org.apache.maven.plugins</groupId><artifactId>maven-compiler-plugin</artifactId><version>3.13.0</version></plugin>
  </plugins></build>"""


def client_env() -> dict[str, str]:
    """The environment for mvn/gradle/java: nothing of the machine's proxy or Maven settings."""
    drop = ("MAVEN_", "JAVA_TOOL", "GRADLE_", "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)}


def build_m2_tree(dest: Path) -> Path:
    """A copy of ~/.m2/repository (hard links: fast, nothing of the original is written) with a
    .sha1 next to every .jar and .pom, as a real remote repository has."""
    assert M2.is_dir() and any(M2.iterdir()), f"{M2} is needed for the Maven proxy tests"
    subprocess.run(["cp", "-al", str(M2), str(dest)], check=True, timeout=120)
    files = [p for p in dest.rglob("*") if p.suffix in (".jar", ".pom") and p.is_file()]

    def sidecar(path: Path) -> None:
        digest = hashlib.sha1(path.read_bytes()).hexdigest()
        path.with_name(path.name + ".sha1").write_text(digest)
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(sidecar, files))
    return dest


def compile_jar(work: Path, package: str, classes: dict[str, str]) -> Path:
    """A jar of `classes` (name -> Java body) in `package`, compiled with javac (release 8)."""
    assert JAVAC, "javac (JDK 17) is required"
    src = work / "src"
    out = work / "classes"
    pkg_dir = src / package.replace(".", "/")
    pkg_dir.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    sources = []
    for name, body in classes.items():
        path = pkg_dir / f"{name}.java"
        path.write_text(f"package {package};\n{body}\n")
        sources.append(str(path))
    subprocess.run([JAVAC, "--release", "8", "-d", str(out), *sources], check=True, timeout=120,
                   capture_output=True)
    jar = work / "out.jar"
    with zipfile.ZipFile(jar, "w") as archive:
        for path in sorted(out.rglob("*.class")):
            archive.write(path, path.relative_to(out).as_posix())
    return jar


SNAPSHOTS_ON = """<profiles><profile><id>depot</id>
  <repositories><repository><id>central</id><url>http://central</url>
    <releases><enabled>true</enabled></releases><snapshots><enabled>true</enabled></snapshots></repository></repositories>
  <pluginRepositories><pluginRepository><id>central</id><url>http://central</url>
    <releases><enabled>true</enabled></releases><snapshots><enabled>true</enabled></snapshots></pluginRepository>
  </pluginRepositories></profile></profiles><activeProfiles><activeProfile>depot</activeProfile></activeProfiles>"""


def settings(path: Path, mirror: str | None = None, user: str | None = None, password: str | None = None,
             snapshots: bool = False) -> Path:
    """settings.xml: optionally every repository mirrored to `mirror` (with `snapshots`, central
    redefined with SNAPSHOTs enabled, the usual repository-manager recipe), and a server `depot`."""
    parts = ["<settings>"]
    if mirror:
        parts.append(f"<mirrors><mirror><id>depot</id><mirrorOf>*</mirrorOf><url>{mirror}</url></mirror></mirrors>")
    if snapshots:
        parts.append(SNAPSHOTS_ON)
    if user:
        parts.append(f"<servers><server><id>depot</id><username>{user}</username>"
                     f"<password>{password}</password></server></servers>")
    parts.append("</settings>")
    path.write_text("\n".join(parts))
    return path


def mvn(cwd: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """mvn in batch mode (never the machine's settings: every call passes -s)."""
    assert MVN, "mvn is required (Maven 3.8 with JDK 17)"
    return subprocess.run([MVN, "-B", "-ntp", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=client_env())


def deploy_file(cwd: Path, settings_xml: Path, repo_local: Path, url: str, jar: Path, group: str,
                artifact: str, version: str) -> subprocess.CompletedProcess[str]:
    """mvn deploy:deploy-file (generates and uploads a POM too)."""
    return mvn(cwd, "-s", str(settings_xml), f"-Dmaven.repo.local={repo_local}", DEPLOY, f"-Dfile={jar}",
               f"-DgroupId={group}", f"-DartifactId={artifact}", f"-Dversion={version}", "-Dpackaging=jar",
               "-DrepositoryId=depot", f"-Durl={url}")


def project(path: Path, dependencies: list[tuple[str, str, str]], main: str) -> Path:
    """A one-class Maven project with pinned plugins (present in ~/.m2) and `dependencies`."""
    deps = "".join(f"<dependency><groupId>{g}</groupId><artifactId>{a}</artifactId><version>{v}</version>"
                   "</dependency>" for g, a, v in dependencies)
    (path / "src/main/java/demo").mkdir(parents=True, exist_ok=True)
    (path / "pom.xml").write_text(f"""<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>demo</groupId><artifactId>demo</artifactId><version>1.0</version>
  <properties><maven.compiler.release>17</maven.compiler.release>
    <project.build.sourceEncoding>UTF-8</project.build.sourceEncoding></properties>
  <dependencies>{deps}</dependencies>{PLUGINS}
</project>
""")
    (path / "src/main/java/demo/App.java").write_text(f"package demo;\npublic class App {{\n{main}\n}}\n")
    return path
