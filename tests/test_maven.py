"""Maven with the real clients (mvn 3.8, Gradle 4.4, Ivy 2.5) against a real depot.

The upstream of every proxy is a static tree built from the machine's ~/.m2/repository (plugins
included) served by tests/upstream.py, which counts requests; never the internet. Every mvn run
uses a settings.xml mirroring `*` to depot and an empty -Dmaven.repo.local.
"""
from __future__ import annotations

import hashlib
import re
import shutil
import sqlite3
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from depot_process import DepotProcess
from maven_fixtures import build_m2_tree, client_env, compile_jar, deploy_file, mvn, project, settings
from upstream import start_upstream

ADMIN = ("admin", DepotProcess.ADMIN_PASSWORD)
GROUP = "com.example"
TINY = "public class Tiny { public static String hi() { return \"hi\"; } }"
SNAP_1 = "public class Snap { public static String first() { return \"1\"; } }"
SNAP_2 = "public class Snap { public static String second() { return \"2\"; } }"


@pytest.fixture(scope="module")
def m2_tree(tmp_path_factory):
    return build_m2_tree(tmp_path_factory.mktemp("m2") / "repository")


@pytest.fixture(scope="module")
def deploy_m2(tmp_path_factory):
    """One local repository for every deploy-file run of the module: the deploy plugin is
    resolved through depot once (empty at first), not once per test."""
    return tmp_path_factory.mktemp("deploy-m2")


@pytest.fixture(scope="module")
def m2_upstream(m2_tree):
    server = start_upstream(m2_tree)
    yield server
    server.stop()


def trio(upstream_url: str, **hosted_options) -> dict:
    return {"maven-local": {"format": "maven", "type": "hosted", "options": hosted_options},
            "maven-remote": {"format": "maven", "type": "proxy", "upstream": upstream_url + "/",
                             "negative_ttl": 3600},
            "maven": {"format": "maven", "type": "group", "members": ["maven-local", "maven-remote"],
                      "deploy_to": "maven-local"}}


def upstream_requests(upstream) -> int:
    return sum(n for key, n in upstream.counts().items() if not key.startswith("PUT"))


def fetch_outcome(url: str) -> int | str:
    """The status of a GET, or "broken" when the body was cut off (a failed verification)."""
    try:
        return requests.get(url, timeout=30).status_code
    except requests.exceptions.RequestException:
        return "broken"


def stored_paths(depot: DepotProcess) -> list[str]:
    """Every path recorded in depot's catalog of hosted files."""
    with sqlite3.connect(depot.data_dir / "depot.db") as db:
        return [row[0] for row in db.execute("SELECT path FROM files ORDER BY path")]


def errors(result: subprocess.CompletedProcess[str]) -> str:
    return "\n".join(line for line in result.stdout.splitlines() if "ERROR" in line)[:3000]


def test_deploy_resolve_through_group_redeploy_refused(depot_factory, m2_upstream, deploy_m2, tmp_path):
    """deploy-file a release and a SNAPSHOT (twice) to hosted through the group; a project compiles
    against both through the group with a fresh local repository; the second build is all HITs
    (no upstream request); a redeploy of the release is refused with 400."""
    depot = depot_factory(trio(m2_upstream.url))
    group_url = f"{depot.url}/maven/"
    conf = settings(tmp_path / "settings.xml", mirror=group_url, user=ADMIN[0], password=ADMIN[1], snapshots=True)
    deploy_repo = deploy_m2
    tiny = compile_jar(tmp_path / "tiny", "com.example.tiny", {"Tiny": TINY})
    done = deploy_file(tmp_path, conf, deploy_repo, group_url, tiny, GROUP, "tiny", "1.0")
    assert done.returncode == 0, errors(done)
    for body in (SNAP_1, SNAP_2):
        jar = compile_jar(tmp_path / f"snap-{len(body)}-{body[-12:-6]}", "com.example.snap", {"Snap": body})
        done = deploy_file(tmp_path, conf, deploy_repo, group_url, jar, GROUP, "snap", "2.0-SNAPSHOT")
        assert done.returncode == 0, errors(done)
    meta = requests.get(f"{depot.url}/maven-local/com/example/snap/2.0-SNAPSHOT/maven-metadata.xml").text
    values = set(re.findall(r"<value>(2\.0-\d{8}\.\d{6}-(\d+))</value>", meta))
    assert {build for _, build in values} == {"2"} and "<buildNumber>2</buildNumber>" in meta, meta
    puts = [line for line in depot.log().splitlines() if '"PUT /maven/' in line]
    assert puts and all(re.search(r'HTTP/1.1" 20[01] ', line) for line in puts), puts
    assert any(".jar.sha1" in line for line in puts) and any("maven-metadata.xml" in line for line in puts)
    artifact_meta = requests.get(f"{depot.url}/maven/com/example/snap/maven-metadata.xml").text
    assert "<version>2.0-SNAPSHOT</version>" in artifact_meta

    app = project(tmp_path / "app", [(GROUP, "tiny", "1.0"), (GROUP, "snap", "2.0-SNAPSHOT")],
                  "public static void main(String[] a) { System.out.println(com.example.tiny.Tiny.hi()"
                  " + com.example.snap.Snap.second()); }")
    built = mvn(app, "-s", str(conf), f"-Dmaven.repo.local={tmp_path / 'build-1'}", "compile")
    assert built.returncode == 0, errors(built)
    assert (app / "target/classes/demo/App.class").is_file()

    m2_upstream.reset()
    since = len(depot.log())
    shutil.rmtree(app / "target")
    again = mvn(app, "-s", str(conf), f"-Dmaven.repo.local={tmp_path / 'build-2'}", "compile")
    assert again.returncode == 0, errors(again)
    assert upstream_requests(m2_upstream) == 0, m2_upstream.counts()
    second = [line for line in depot.log()[since:].splitlines() if '" 200 ' in line and "GET /maven/" in line]
    assert len(second) > 50 and all(line.endswith('"HIT"') for line in second), second

    refused = deploy_file(tmp_path, conf, deploy_repo, group_url, tiny, GROUP, "tiny", "1.0")
    assert refused.returncode != 0 and "400 com/example/tiny/1.0/tiny-1.0.jar is a release file that is already " \
        "deployed" in errors(refused), errors(refused)
    assert requests.get(f"{depot.url}/maven/com/example/tiny/1.0/tiny-1.0.jar").content == tiny.read_bytes()


def mvn_like_deploy(base: str, version: str, auth: tuple[str, str]) -> list[int]:
    """The request sequence of `mvn deploy` for one release: jar, pom and their checksums, then
    GET maven-metadata.xml, merge it on the client and PUT it back with its checksums."""
    path = f"{base}/com/example/many/{version}/many-{version}"
    jar = f"jar of {version}".encode()
    pom = (f'<project><modelVersion>4.0.0</modelVersion><groupId>com.example</groupId>'
           f'<artifactId>many</artifactId><version>{version}</version></project>').encode()
    codes = []
    with requests.Session() as http:
        http.auth = auth
        for url, body in ((path + ".jar", jar), (path + ".pom", pom)):
            codes.append(http.put(url, data=body, timeout=30).status_code)
            for algo in ("sha1", "md5"):
                codes.append(http.put(f"{url}.{algo}", data=hashlib.new(algo, body).hexdigest(), timeout=30)
                             .status_code)
        meta_url = f"{base}/com/example/many/maven-metadata.xml"
        seen = http.get(meta_url, timeout=30)
        versions = re.findall(r"<version>([^<]+)</version>", seen.text) if seen.ok else []
        listed = "".join(f"<version>{v}</version>" for v in sorted(set(versions) | {version}))
        doc = (f"<metadata><groupId>com.example</groupId><artifactId>many</artifactId><versioning>"
               f"<release>{version}</release><versions>{listed}</versions>"
               f"<lastUpdated>20240101000000</lastUpdated></versioning></metadata>").encode()
        codes.append(http.put(meta_url, data=doc, timeout=30).status_code)
        codes.append(http.put(meta_url + ".sha1", data=hashlib.sha1(doc).hexdigest(), timeout=30).status_code)
    return codes


def test_twenty_concurrent_deploys_all_listed(depot_factory, tmp_path):
    """20 deploys of different versions at once (mvn's request sequence, each client merging the
    metadata it read): all 20 are in maven-metadata.xml, whose checksums match it."""
    depot = depot_factory({"maven-local": {"format": "maven", "type": "hosted"}})
    base = f"{depot.url}/maven-local"
    versions = [f"1.{i}" for i in range(20)]
    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(lambda v: mvn_like_deploy(base, v, ADMIN), versions))
    assert all(code in (200, 201) for codes in results for code in codes), results
    meta = requests.get(f"{base}/com/example/many/maven-metadata.xml")
    listed = re.findall(r"<version>([^<]+)</version>", meta.text)
    assert sorted(listed) == sorted(versions) and "<release>1.19</release>" in meta.text, meta.text
    assert requests.get(f"{base}/com/example/many/maven-metadata.xml.sha1").text == \
        hashlib.sha1(meta.content).hexdigest()


def test_proxy_of_central_mirror_then_upstream_down(depot_factory, m2_tree, tmp_path):
    """mirrorOf * → a depot proxy in front of a static tree of ~/.m2 (plugins included): mvn compile
    with a fresh local repository works through depot only, release files verified against the
    upstream's .sha1; with the upstream stopped the same build works again."""
    upstream = start_upstream(m2_tree)
    try:
        depot = depot_factory({"central": {"format": "maven", "type": "proxy", "upstream": upstream.url + "/"}})
        conf = settings(tmp_path / "settings.xml", mirror=f"{depot.url}/central/")
        app = project(tmp_path / "app", [("org.apache.commons", "commons-lang3", "3.12.0")],
                      "public static void main(String[] a) { System.out.println("
                      "org.apache.commons.lang3.StringUtils.capitalize(\"x\")); }")
        first = mvn(app, "-s", str(conf), f"-Dmaven.repo.local={tmp_path / 'r1'}", "compile")
        assert first.returncode == 0, errors(first)
        counts = upstream.counts()
        jars = [k for k in counts if k.startswith("GET ") and k.endswith(".jar")]
        assert jars and all(counts[k] == 1 for k in jars), counts
        assert all(counts.get(k + ".sha1") == 1 for k in jars), "each release verified against its .sha1"
    finally:
        upstream.stop()
    shutil.rmtree(app / "target")
    second = mvn(app, "-s", str(conf), f"-Dmaven.repo.local={tmp_path / 'r2'}", "compile")
    assert second.returncode == 0, errors(second)
    assert (app / "target/classes/demo/App.class").is_file()


def test_twenty_clients_one_upstream_get_and_sidecar_verification(depot_factory, upstream):
    """20 concurrent clients on one uncached release file: 1 upstream GET of it (and of its .sha1);
    a file whose upstream .sha1 disagrees is refused (502) and nothing is cached."""
    payload = bytes(range(256)) * 4000
    upstream.put("org/acme/big/1.0/big-1.0.jar", payload)
    upstream.put("org/acme/big/1.0/big-1.0.jar.sha1", hashlib.sha1(payload).hexdigest().encode())
    upstream.put("org/acme/bad/1.0/bad-1.0.jar", b"tampered")
    upstream.put("org/acme/bad/1.0/bad-1.0.jar.sha1", hashlib.sha1(b"original").hexdigest().encode())
    depot = depot_factory({"central": {"format": "maven", "type": "proxy", "upstream": upstream.url + "/"}})
    url = f"{depot.url}/central/org/acme/big/1.0/big-1.0.jar"
    with ThreadPoolExecutor(20) as pool:
        bodies = list(pool.map(lambda _: requests.get(url, timeout=60).content, range(20)))
    assert all(body == payload for body in bodies)
    assert upstream.count("/org/acme/big/1.0/big-1.0.jar") == 1
    assert upstream.count("/org/acme/big/1.0/big-1.0.jar.sha1") == 1
    answer = requests.get(url + ".sha512")
    assert answer.text == hashlib.sha512(payload).hexdigest() and answer.headers["X-Cache"] == "HIT"
    assert upstream.count("/org/acme/big/1.0/big-1.0.jar.sha512") == 0     # computed, not asked

    bad = f"{depot.url}/central/org/acme/bad/1.0/bad-1.0.jar"
    assert fetch_outcome(bad) in (502, "broken")       # streamed, then cut before the last bytes
    assert fetch_outcome(bad) in (502, "broken") and upstream.count("/org/acme/bad/1.0/bad-1.0.jar") == 2

    missing = f"{depot.url}/central/org/acme/none/1.0/none-1.0.pom"
    assert requests.get(missing).status_code == 404 and requests.get(missing).status_code == 404
    assert upstream.count("/org/acme/none/1.0/none-1.0.pom") == 1          # 404 negative-cached


def test_metadata_revalidated_and_merged_in_group(depot_factory, upstream, tmp_path):
    """Proxied maven-metadata.xml is revalidated after metadata_ttl; a group merges the hosted and
    proxied documents (versions union, latest/release recomputed) and serves matching checksums."""
    remote_meta = ("<metadata><groupId>org.acme</groupId><artifactId>lib</artifactId><versioning>"
                   "<latest>1.5</latest><release>1.5</release><versions><version>1.0</version>"
                   "<version>1.5</version></versions><lastUpdated>20240101000000</lastUpdated>"
                   "</versioning></metadata>")
    upstream.put("org/acme/lib/maven-metadata.xml", remote_meta.encode())
    repos = trio(upstream.url)
    repos["maven-remote"]["metadata_ttl"] = 1
    depot = depot_factory(repos)
    pom = (b"<project><modelVersion>4.0.0</modelVersion><groupId>org.acme</groupId><artifactId>lib</artifactId>"
           b"<version>1.10</version></project>")
    assert requests.put(f"{depot.url}/maven/org/acme/lib/1.10/lib-1.10.pom", data=pom, auth=ADMIN).status_code == 201
    merged = requests.get(f"{depot.url}/maven/org/acme/lib/maven-metadata.xml")
    assert re.findall(r"<version>([^<]+)</version>", merged.text) == ["1.0", "1.5", "1.10"], merged.text
    assert "<latest>1.10</latest>" in merged.text and "<release>1.10</release>" in merged.text
    assert requests.get(f"{depot.url}/maven/org/acme/lib/maven-metadata.xml.md5").text == \
        hashlib.md5(merged.content).hexdigest()
    import time
    time.sleep(1.2)
    upstream.put("org/acme/lib/maven-metadata.xml", remote_meta.replace("<version>1.5</version>",
                                                                        "<version>1.5</version><version>2.0</version>")
                 .encode())
    fresh = requests.get(f"{depot.url}/maven/org/acme/lib/maven-metadata.xml").text
    assert "<version>2.0</version>" in fresh and "<latest>2.0</latest>" in fresh, fresh


def test_anonymous_and_read_token_cannot_deploy(depot_factory, m2_upstream, deploy_m2, tmp_path):
    """mvn deploy-file: anonymous gets 401 with a stable Basic challenge, a read token 403;
    a write token deploys."""
    from test_access import make_token, make_user
    repos = trio(m2_upstream.url)
    repos["maven-local"]["access"] = {"reader": "read", "writer": "write"}
    repos["maven"]["anonymous_read"] = True
    depot = depot_factory(repos, secure=True)
    make_user(depot, "reader")
    make_user(depot, "writer")
    read_token = make_token(depot, "--user", "reader", "--repo", "maven-local", "--perm", "read")
    write_token = make_token(depot, "--user", "writer", "--repo", "maven-local", "--perm", "write")
    jar = compile_jar(tmp_path / "tiny", "com.example.tiny", {"Tiny": TINY})
    url = f"{depot.url}/maven-local/"
    repo_local = deploy_m2
    anonymous = settings(tmp_path / "anon.xml", mirror=f"{depot.url}/maven/")
    denied = deploy_file(tmp_path, anonymous, repo_local, url, jar, GROUP, "tiny", "1.0")
    assert denied.returncode != 0 and "401" in errors(denied), errors(denied)
    challenge = requests.put(f"{url}com/example/tiny/1.0/tiny-1.0.jar", data=b"x")
    assert challenge.status_code == 401 and challenge.headers["WWW-Authenticate"] == 'Basic realm="depot"'
    reader = settings(tmp_path / "reader.xml", mirror=f"{depot.url}/maven/", user="reader", password=read_token)
    denied = deploy_file(tmp_path, reader, repo_local, url, jar, GROUP, "tiny", "1.0")
    assert denied.returncode != 0 and "403" in errors(denied), errors(denied)
    assert requests.get(f"{url}com/example/tiny/1.0/tiny-1.0.jar", auth=("reader", read_token)).status_code == 404
    writer = settings(tmp_path / "writer.xml", mirror=f"{depot.url}/maven/", user="writer", password=write_token)
    done = deploy_file(tmp_path, writer, repo_local, url, jar, GROUP, "tiny", "1.0")
    assert done.returncode == 0, errors(done)
    assert requests.get(f"{url}com/example/tiny/1.0/tiny-1.0.jar", auth=("reader", read_token)).content == \
        jar.read_bytes()


GOOD_POM = (b"<project><modelVersion>4.0.0</modelVersion><groupId>org.acme</groupId>"
            b"<artifactId>lib</artifactId><version>1.0</version></project>")


@pytest.mark.parametrize("path,body,why", [
    ("org/acme/lib/1.0/lib-1.0.pom", b"<project><groupId>org.acme", "well-formed"),
    ("org/acme/lib/1.0/lib-1.0.pom", GOOD_POM.replace(b"<version>1.0", b"<version>2.0"), "version"),
    ("org/acme/lib/1.0/lib-1.0.pom", GOOD_POM.replace(b">lib<", b">other<"), "artifactId"),
    ("org/evil/lib/1.0/lib-1.0.pom", GOOD_POM, "groupId"),
    ("org/acme/lib/1.0/lib-1.0.pom", b'<?xml version="1.0"?><!DOCTYPE p [<!ENTITY x "y">]><project>&x;</project>',
     "XML"),
    ("org/acme/lib/1.0/other-1.0.jar", b"jar", "not a Maven repository file"),
    ("org/acme/lib/maven-metadata.xml", b"<metadata><groupId>org.acme", "well-formed"),
    ("org/acme/lib/maven-metadata.xml", b"<metadata><groupId>org.acme</groupId><artifactId>x</artifactId></metadata>",
     "artifactId"),
    ("org/acme/%2e%2e/lib/1.0/lib-1.0.jar", b"jar", "invalid path segment"),
    ("org/acme/lib/1.0/lib-1.0.jar.sha1", b"0" * 40, "before its checksum"),
])
def test_bad_uploads_refused_nothing_stored(depot_factory, tmp_path, path, body, why):
    depot = depot_factory({"maven-local": {"format": "maven", "type": "hosted"}})
    answer = requests.put(f"{depot.url}/maven-local/{path}", data=body, auth=ADMIN)
    assert answer.status_code == 400 and why in answer.text, (answer.status_code, answer.text)
    assert stored_paths(depot) == []
    assert requests.get(f"{depot.url}/maven-local/org/acme/lib/maven-metadata.xml").status_code == 404


def test_uploaded_checksums_are_checked(depot_factory):
    depot = depot_factory({"maven-local": {"format": "maven", "type": "hosted"}})
    url = f"{depot.url}/maven-local/org/acme/lib/1.0/lib-1.0.jar"
    bad = requests.put(url, data=b"jar", auth=ADMIN, headers={"X-Checksum-Sha1": "0" * 40})
    assert bad.status_code == 400 and "mismatch" in bad.text
    assert requests.get(url).status_code == 404
    assert requests.put(url, data=b"jar", auth=ADMIN).status_code == 201
    assert requests.put(url + ".sha1", data="1" * 40, auth=ADMIN).status_code == 400
    assert requests.put(url + ".sha1", data=hashlib.sha1(b"jar").hexdigest(), auth=ADMIN).status_code == 201
    assert requests.put(url + ".md5", data="nothex", auth=ADMIN).status_code == 400
    for algo in ("md5", "sha1", "sha256", "sha512"):
        assert requests.get(f"{url}.{algo}").text == hashlib.new(algo, b"jar").hexdigest()


def test_snapshot_retention_and_redeploy_option(depot_factory):
    """snapshot_keep: 2 keeps the two newest builds; allow_redeploy lets a release be replaced."""
    depot = depot_factory({"snaps": {"format": "maven", "type": "hosted", "options": {"snapshot_keep": 2}},
                           "loose": {"format": "maven", "type": "hosted", "options": {"allow_redeploy": True}}})
    base = f"{depot.url}/snaps/org/acme/lib/1.0-SNAPSHOT"
    for build in (1, 2, 3):
        name = f"lib-1.0-20240101.00000{build}-{build}.jar"
        assert requests.put(f"{base}/{name}", data=f"b{build}", auth=ADMIN).status_code == 201
        doc = (f"<metadata><groupId>org.acme</groupId><artifactId>lib</artifactId><version>1.0-SNAPSHOT</version>"
               f"<versioning><snapshot><timestamp>20240101.00000{build}</timestamp><buildNumber>{build}"
               f"</buildNumber></snapshot></versioning></metadata>")
        assert requests.put(f"{base}/maven-metadata.xml", data=doc, auth=ADMIN).status_code == 201
    assert requests.get(f"{base}/lib-1.0-20240101.000001-1.jar").status_code == 404
    assert requests.get(f"{base}/lib-1.0-20240101.000002-2.jar").text == "b2"
    meta = requests.get(f"{base}/maven-metadata.xml").text
    assert "<buildNumber>3</buildNumber>" in meta and "<value>1.0-20240101.000003-3</value>" in meta
    url = f"{depot.url}/loose/org/acme/lib/1.0/lib-1.0.jar"
    assert requests.put(url, data=b"one", auth=ADMIN).status_code == 201
    assert requests.put(url, data=b"two", auth=ADMIN).status_code == 201
    assert requests.get(url).content == b"two"


GRADLE = shutil.which("gradle")
IVY_JAR = Path("/usr/share/java/ivy.jar")


def run_tool(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=240, env={**client_env(), **(env or {})})


def deploy_tiny(depot: DepotProcess, tmp_path: Path, repo_local: Path) -> Path:
    """com.example:tiny:1.0 deployed to the hosted member with mvn deploy-file."""
    conf = settings(tmp_path / "deploy.xml", mirror=f"{depot.url}/maven/", user=ADMIN[0], password=ADMIN[1])
    jar = compile_jar(tmp_path / "tiny", "com.example.tiny", {"Tiny": TINY})
    done = deploy_file(tmp_path, conf, repo_local, f"{depot.url}/maven-local/", jar, GROUP, "tiny", "1.0")
    assert done.returncode == 0, errors(done)
    return jar


def test_gradle_and_ivy_resolve_through_group(depot_factory, m2_upstream, deploy_m2, tmp_path):
    """Gradle 4.4 compiles against an artifact in the group; Ivy 2.5 (ibiblio m2compatible, the
    resolver sbt builds on) resolves it and a proxied one through the same group."""
    assert GRADLE, "gradle is required (Debian gradle, tests/clients/maven.apt)"
    assert IVY_JAR.is_file(), "ivy is required (Debian ivy, tests/clients/maven.apt)"
    depot = depot_factory(trio(m2_upstream.url))
    jar = deploy_tiny(depot, tmp_path, deploy_m2)
    app = tmp_path / "gradle-app"
    (app / "src/main/java/demo").mkdir(parents=True)
    (app / "build.gradle").write_text(
        f"apply plugin: 'java'\nrepositories {{ maven {{ url '{depot.url}/maven/' }} }}\n"
        "dependencies { compile 'com.example:tiny:1.0' }\n")
    (app / "settings.gradle").write_text("rootProject.name = 'demo'\n")
    (app / "src/main/java/demo/App.java").write_text(
        "package demo;\npublic class App { String x = com.example.tiny.Tiny.hi(); }\n")
    built = run_tool([GRADLE, "--no-daemon", "-q", "--console=plain", "compileJava"],
                     app, {"GRADLE_USER_HOME": str(tmp_path / "gradle-home")})
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    assert (app / "build/classes/java/main/demo/App.class").is_file()

    ivy_settings = tmp_path / "ivysettings.xml"
    ivy_settings.write_text(f"""<ivysettings><settings defaultResolver="depot"/>
  <caches defaultCacheDir="{tmp_path / 'ivy-cache'}"/>
  <resolvers><ibiblio name="depot" m2compatible="true" root="{depot.url}/maven/"/></resolvers></ivysettings>""")
    for group, artifact, version in ((GROUP, "tiny", "1.0"), ("org.apache.commons", "commons-lang3", "3.12.0")):
        out = tmp_path / f"ivy-{artifact}"
        resolved = run_tool(["java", "-jar", str(IVY_JAR), "-settings", str(ivy_settings), "-dependency", group,
                             artifact, version, "-confs", "default", "-retrieve",
                             f"{out}/[artifact]-[revision].[ext]"], tmp_path)
        assert resolved.returncode == 0, resolved.stdout[-3000:] + resolved.stderr[-2000:]
        assert (out / f"{artifact}-{version}.jar").is_file(), resolved.stdout[-2000:]
    assert (tmp_path / "ivy-tiny/tiny-1.0.jar").read_bytes() == jar.read_bytes()


def ivy_layout_settings(path: Path, url: str, cache: Path) -> Path:
    path.write_text(f"""<ivysettings><settings defaultResolver="depot"/>
  <caches defaultCacheDir="{cache}"/>
  <credentials host="127.0.0.1" realm="depot" username="{ADMIN[0]}" passwd="{ADMIN[1]}"/>
  <resolvers><url name="depot" m2compatible="false">
    <ivy pattern="{url}/[organisation]/[module]/[revision]/ivy-[revision].xml"/>
    <artifact pattern="{url}/[organisation]/[module]/[revision]/[type]s/[artifact]-[revision].[ext]"/>
  </url></resolvers></ivysettings>""")
    return path


def test_ivy_layout_publish_and_resolve(depot_factory, tmp_path):
    """layout: ivy: Ivy publishes (-publish, PUT with Basic auth after the 401 challenge, checksums
    checked) and resolves the module back; releases are immutable; a bad ivy.xml is refused."""
    assert IVY_JAR.is_file(), "ivy is required (Debian ivy, tests/clients/maven.apt)"
    depot = depot_factory({"ivy-local": {"format": "maven", "type": "hosted", "options": {"layout": "ivy"}}},
                          secure=True)
    url = f"{depot.url}/ivy-local"
    conf = ivy_layout_settings(tmp_path / "ivysettings.xml", url, tmp_path / "cache-publish")
    work = tmp_path / "module"
    (work / "dist").mkdir(parents=True)
    (work / "dist/hello-1.0.jar").write_bytes(b"PK\x05\x06" + b"\0" * 18)
    (work / "ivy.xml").write_text("""<ivy-module version="2.0">
  <info organisation="org.acme" module="hello" revision="1.0" status="release"/>
  <publications><artifact name="hello" type="jar" ext="jar"/></publications>
</ivy-module>""")
    published = run_tool(["java", "-jar", str(IVY_JAR), "-settings", str(conf), "-ivy", "ivy.xml",
                          "-publish", "depot", "-publishpattern", "dist/[artifact]-[revision].[ext]",
                          "-revision", "1.0", "-status", "release"], work)
    assert published.returncode == 0, published.stdout[-3000:] + published.stderr[-2000:]
    stored = set(stored_paths(depot))
    assert {"org.acme/hello/1.0/jars/hello-1.0.jar", "org.acme/hello/1.0/ivy-1.0.xml"} <= stored, stored
    assert requests.get(f"{url}/org.acme/hello/1.0/jars/hello-1.0.jar.sha1", auth=ADMIN).text == \
        hashlib.sha1((work / "dist/hello-1.0.jar").read_bytes()).hexdigest()

    reader = ivy_layout_settings(tmp_path / "resolve.xml", url, tmp_path / "cache-resolve")
    out = tmp_path / "out"
    resolved = run_tool(["java", "-jar", str(IVY_JAR), "-settings", str(reader), "-dependency", "org.acme", "hello",
                         "1.0", "-retrieve", f"{out}/[artifact]-[revision].[ext]"], tmp_path)
    assert resolved.returncode == 0, resolved.stdout[-3000:] + resolved.stderr[-2000:]
    assert (out / "hello-1.0.jar").read_bytes() == (work / "dist/hello-1.0.jar").read_bytes()

    # an ivy-layout proxy in front of this depot: resolves, then again with the upstream stopped
    front = depot_factory({"ivy-remote": {"format": "maven", "type": "proxy", "upstream": url + "/",
                                          "options": {"layout": "ivy"}, "username": ADMIN[0],
                                          "password": ADMIN[1]}}, name="front")
    for attempt in ("live", "upstream-down"):
        proxied = ivy_layout_settings(tmp_path / f"proxy-{attempt}.xml", f"{front.url}/ivy-remote",
                                      tmp_path / f"cache-{attempt}")
        got = tmp_path / f"got-{attempt}"
        resolved = run_tool(["java", "-jar", str(IVY_JAR), "-settings", str(proxied), "-dependency", "org.acme",
                             "hello", "1.0", "-retrieve", f"{got}/[artifact]-[revision].[ext]"], tmp_path)
        assert resolved.returncode == 0, resolved.stdout[-3000:] + resolved.stderr[-2000:]
        assert (got / "hello-1.0.jar").read_bytes() == (work / "dist/hello-1.0.jar").read_bytes()
        depot.stop()

    depot.start()
    again = requests.put(f"{url}/org.acme/hello/1.0/jars/hello-1.0.jar", data=b"other", auth=ADMIN)
    assert again.status_code == 400
    bad = requests.put(f"{url}/org.acme/hello/2.0/ivy-2.0.xml", auth=ADMIN,
                       data=b'<ivy-module version="2.0"><info organisation="org.acme" module="hello" revision="3.0"/>'
                            b'</ivy-module>')
    assert bad.status_code == 400 and "version" in bad.text, bad.text
    assert "org.acme/hello/2.0/ivy-2.0.xml" not in stored_paths(depot)
    assert requests.delete(f"{url}/org.acme/hello/1.0/jars/hello-1.0.jar", auth=ADMIN).status_code == 204
    assert not [p for p in stored_paths(depot) if p.startswith("org.acme/hello/1.0/jars/")]


def test_depot_warm_from_a_coordinate_list(depot_factory, upstream, tmp_path):
    """`depot warm <proxy> deps.txt` (one coordinate or `mvn dependency:list` line each) fetches
    each POM and jar once; clients then get HITs."""
    for name, body in (("lib-1.0.pom", GOOD_POM), ("lib-1.0.jar", b"jar bytes")):
        upstream.put(f"org/acme/lib/1.0/{name}", body)
        upstream.put(f"org/acme/lib/1.0/{name}.sha1", hashlib.sha1(body).hexdigest().encode())
    depot = depot_factory({"central": {"format": "maven", "type": "proxy", "upstream": upstream.url + "/"}})
    listing = tmp_path / "deps.txt"
    listing.write_text("[INFO]    org.acme:lib:jar:1.0:compile\n")
    warmed = depot.run_cli("warm", "central", str(listing), "--url", depot.url, check=False)
    assert warmed.returncode == 0, warmed.stdout + warmed.stderr
    assert upstream.count("/org/acme/lib/1.0/lib-1.0.jar") == 1 and upstream.count("/org/acme/lib/1.0/lib-1.0.pom") == 1
    answer = requests.get(f"{depot.url}/central/org/acme/lib/1.0/lib-1.0.jar")
    assert answer.content == b"jar bytes" and answer.headers["X-Cache"] == "HIT"


def test_delete_regenerates_metadata(depot_factory):
    """Deleting a version's files takes it out of maven-metadata.xml (latest/release recomputed)."""
    depot = depot_factory({"maven-local": {"format": "maven", "type": "hosted"}})
    base = f"{depot.url}/maven-local/org/acme/lib"
    for version in ("1.0", "2.0"):
        pom = GOOD_POM.replace(b"<version>1.0", f"<version>{version}".encode())
        assert requests.put(f"{base}/{version}/lib-{version}.pom", data=pom, auth=ADMIN).status_code == 201
    assert "<release>2.0</release>" in requests.get(f"{base}/maven-metadata.xml").text
    assert requests.delete(f"{base}/2.0/lib-2.0.pom", auth=ADMIN).status_code == 204
    meta = requests.get(f"{base}/maven-metadata.xml").text
    assert re.findall(r"<version>([^<]+)</version>", meta) == ["1.0"] and "<latest>1.0</latest>" in meta, meta
