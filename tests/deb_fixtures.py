"""Debian test helpers: .deb files built with dpkg-deb, and apt-get runs with private state."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Iterable

APT_ENV = {k: v for k, v in os.environ.items() if not k.startswith(("DEPOT_", "http_", "https_", "HTTP_", "HTTPS_"))}


def build_deb(work: Path, name: str, version: str = "1.0", arch: str = "all", payload: bytes = b"",
              extra_control: str = "") -> Path:
    """A real binary package built by dpkg-deb -b (installs /usr/share/<name>/payload);
    `extra_control` is appended to the control file (Section, a long description's lines…)."""
    assert shutil.which("dpkg-deb"), "dpkg-deb is required (apt-get install dpkg)"
    root = work / f"{name}-{version}-{arch}"
    (root / "DEBIAN").mkdir(parents=True, exist_ok=True)
    (root / "DEBIAN" / "control").write_text(
        f"Package: {name}\nVersion: {version}\nArchitecture: {arch}\n"
        f"Maintainer: depot tests <tests@example.invalid>\nDescription: depot test package {name}\n" + extra_control)
    data = root / "usr" / "share" / name
    data.mkdir(parents=True, exist_ok=True)
    (data / "payload").write_bytes(payload or f"{name} {version}\n".encode())
    out = work / f"{name}_{version}_{arch}.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-b", str(root), str(out)], check=True,
                   capture_output=True, timeout=60)
    return out


def build_source(work: Path, name: str, version: str = "1.0", revision: str = "1") -> list[Path]:
    """A real "3.0 (quilt)" source package built by dpkg-source -b: [.dsc, .orig.tar.gz, .debian.tar.xz]."""
    assert shutil.which("dpkg-source"), "dpkg-source is required (apt-get install dpkg-dev)"
    work.mkdir(parents=True, exist_ok=True)
    tree = work / f"{name}-{version}"
    (tree / "src").mkdir(parents=True, exist_ok=True)
    (tree / "src" / "main.c").write_text(f"/* {name} {version} */\nint main(void) {{ return 0; }}\n")
    orig = work / f"{name}_{version}.orig.tar.gz"
    subprocess.run(["tar", "--sort=name", "--owner=0", "--group=0", "-czf", str(orig), tree.name], cwd=work,
                   check=True, capture_output=True, timeout=60)
    (tree / "debian" / "source").mkdir(parents=True, exist_ok=True)
    (tree / "debian" / "source" / "format").write_text("3.0 (quilt)\n")
    (tree / "debian" / "control").write_text(
        f"Source: {name}\nSection: devel\nPriority: optional\nMaintainer: depot tests <tests@example.invalid>\n"
        f"Build-Depends: debhelper-compat (= 13)\nStandards-Version: 4.6.2\n\n"
        f"Package: {name}\nArchitecture: any\nDescription: depot test source package {name}\n")
    (tree / "debian" / "changelog").write_text(
        f"{name} ({version}-{revision}) stable; urgency=medium\n\n  * Test build.\n\n"
        f" -- depot tests <tests@example.invalid>  Tue, 01 Dec 2026 00:00:00 +0000\n")
    (tree / "debian" / "rules").write_text("#!/usr/bin/make -f\n%:\n\tdh $@\n")
    subprocess.run(["dpkg-source", "-b", tree.name], cwd=work, check=True, capture_output=True, timeout=60,
                   env=APT_ENV)
    full = f"{version}-{revision}"
    return [work / f"{name}_{full}.dsc", orig, work / f"{name}_{full}.debian.tar.xz"]


def source_changes(work: Path, name: str, version: str = "1.0", revision: str = "1") -> Path:
    """The source-only .changes of a package build_source made (dpkg-genchanges -S)."""
    out = work / f"{name}_{version}-{revision}_source.changes"
    subprocess.run(["dpkg-genchanges", "-S", f"-O{out}"], cwd=work / f"{name}-{version}", check=True,
                   capture_output=True, timeout=60, env=APT_ENV)
    return out


def dput(work: Path, changes: Path, host: str, incoming: str, login: str, password: str) -> subprocess.CompletedProcess[str]:
    """dput's http method (WebDAV-style PUTs of every file of the .changes, the .changes last),
    unsigned; the password answers its prompt on stdin (a new session: no terminal to ask on)."""
    assert shutil.which("dput"), "dput is required (apt-get install dput)"
    config = work / "dput.cf"
    config.write_text(f"[depot]\nfqdn = {host}\nmethod = http\nincoming = {incoming}\nlogin = {login}\n"
                      "allow_unsigned_uploads = 1\nrun_lintian = 0\n")
    return subprocess.run(["dput", "-c", str(config), "-u", "depot", str(changes)], input=password + "\n",
                          capture_output=True, text=True, timeout=120, env=APT_ENV, start_new_session=True)


# apt-file's index target (its /etc/apt/apt.conf.d/50apt-file.conf), given to apt-get with -c so
# `apt-get update` fetches Contents-<arch> without changing the host's apt configuration
CONTENTS_TARGET = """Acquire::IndexTargets::deb::Contents-deb {
    MetaKey "$(COMPONENT)/Contents-$(ARCHITECTURE)";
    ShortDescription "Contents-$(ARCHITECTURE)";
    Description "$(RELEASE)/$(COMPONENT) $(ARCHITECTURE) Contents (deb)";
    flatMetaKey "Contents-$(ARCHITECTURE)";
    flatDescription "$(RELEASE) Contents (deb)";
    PDiffs "false";
    KeepCompressed "true";
};
"""


class Apt:
    """apt-get with a private Dir::State/Dir::Etc/Dir::Cache; never touches the host's packages.
    `languages` is Acquire::Languages ("none": no Translation files); `contents` adds apt-file's
    Contents index target."""

    def __init__(self, work: Path, lines: Iterable[str], proxy: str | None = None, languages: str = "none",
                 contents: bool = False) -> None:
        assert shutil.which("apt-get"), "apt-get is required"
        self.work = work
        for sub in ("lists/partial", "archives/partial", "etc/apt.conf.d", "etc/preferences.d"):
            (work / sub).mkdir(parents=True, exist_ok=True)
        (work / "etc" / "sources.list").write_text("\n".join(lines) + "\n")
        (work / "etc" / "extra.conf").write_text(CONTENTS_TARGET if contents else "")
        (work / "status").write_text("")
        self.options = ["-c", f"{work}/etc/extra.conf",
            "-o", f"Dir::Etc::SourceList={work}/etc/sources.list", "-o", "Dir::Etc::SourceParts=/nonexistent",
            "-o", f"Dir::Etc::Parts={work}/etc/apt.conf.d", "-o", f"Dir::Etc::PreferencesParts={work}/etc/preferences.d",
            "-o", f"Dir::State::Lists={work}/lists", "-o", f"Dir::State::status={work}/status",
            "-o", f"Dir::Cache::Archives={work}/archives", "-o", "Dir::Cache::pkgcache=",
            "-o", "Dir::Cache::srcpkgcache=", "-o", f"Acquire::Languages={languages}", "-o", "APT::Sandbox::User=root",
            "-o", "Acquire::Retries=0", "-o", "Acquire::http::Timeout=20",
            "-o", f"Acquire::http::Proxy={proxy or 'DIRECT'}"]

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(["apt-get", *self.options, *args], cwd=self.work / "archives", capture_output=True,
                              text=True, timeout=180, env=APT_ENV, stdin=subprocess.DEVNULL)
        if check and (proc.returncode != 0 or "W: " in proc.stderr or "E: " in proc.stderr):
            raise AssertionError(f"apt-get {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc

    def update(self, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run("update", check=check)

    def download(self, *packages: str) -> dict[str, bytes]:
        self.run("download", *packages)
        return {p.name: p.read_bytes() for p in (self.work / "archives").glob("*.deb")}

    def contents(self) -> str:
        """The Contents apt fetched, read the way apt-file reads them (apt-get indextargets, then
        apt-helper cat-file)."""
        listed = subprocess.run(["apt-get", *self.options, "indextargets", "--format", "$(FILENAME)",
                                 "Identifier: Contents-deb"], capture_output=True, text=True, timeout=60,
                                env=APT_ENV, check=True).stdout.split()
        out = []
        for name in listed:
            found = [p for p in Path(name).parent.glob(Path(name).name + "*")]
            if found:
                out.append(subprocess.run(["/usr/lib/apt/apt-helper", "cat-file", str(found[0])],
                                          capture_output=True, text=True, timeout=60, check=True).stdout)
        return "".join(out)
