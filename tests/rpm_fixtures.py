"""RPM test helpers: packages built with rpmbuild, dnf runs into a private --installroot."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

DNF_ENV = {k: v for k, v in os.environ.items() if not k.startswith(("DEPOT_", "http_", "https_", "HTTP_", "HTTPS_"))}

SPEC = """Name: {name}
Version: {version}
Release: 1
Summary: depot test package {name}
License: MIT
BuildArch: noarch

%description
A tiny package for depot's tests.

%install
mkdir -p %{{buildroot}}/usr/share/{name}
echo '{name} {version}' > %{{buildroot}}/usr/share/{name}/payload.txt

%files
/usr/share/{name}/payload.txt
"""


def build_rpm(work: Path, name: str, version: str = "1.0") -> Path:
    """A real noarch package built by rpmbuild (no dependencies: the installroot is empty)."""
    assert shutil.which("rpmbuild"), "rpmbuild is required (apt-get install rpm)"
    top = work / f"top-{name}-{version}"
    top.mkdir(parents=True, exist_ok=True)
    spec = top / f"{name}.spec"
    spec.write_text(SPEC.format(name=name, version=version))
    subprocess.run(["rpmbuild", "--define", f"_topdir {top}", "--define", "_build_id_links none", "-bb", str(spec)],
                   check=True, capture_output=True, timeout=120, env=DNF_ENV)
    built = top / "RPMS" / "noarch" / f"{name}-{version}-1.noarch.rpm"
    assert built.is_file(), list(top.rglob("*.rpm"))
    return built


class Dnf:
    """dnf with a private installroot, reposdir and cache; never installs into the host."""

    def __init__(self, work: Path, baseurl: str, gpgkey: str | None) -> None:
        assert shutil.which("dnf"), "dnf is required (apt-get install dnf)"
        self.work = work
        for sub in ("root", "reposd", "cache"):
            (work / sub).mkdir(parents=True, exist_ok=True)
        check = f"repo_gpgcheck=1\ngpgkey={gpgkey}\n" if gpgkey else "repo_gpgcheck=0\n"
        (work / "reposd" / "t.repo").write_text(
            f"[t]\nname=t\nbaseurl={baseurl}\nenabled=1\ngpgcheck=0\n{check}metadata_expire=0\n")

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = ["dnf", "-y", "--refresh", f"--installroot={self.work}/root", f"--setopt=reposdir={self.work}/reposd",
                f"--setopt=cachedir={self.work}/cache", "--setopt=install_weak_deps=False",
                "--setopt=keepcache=False", "--releasever=1", "--disableplugin=*", *args]
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=240, env=DNF_ENV,
                                  stdin=subprocess.DEVNULL)
        finally:
            self.stop_agents()
        if check and proc.returncode != 0:
            raise AssertionError(f"dnf {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc

    def install(self, *packages: str) -> None:
        self.run("install", *packages)

    def installed(self, name: str) -> bytes | None:
        path = self.work / "root" / "usr" / "share" / name / "payload.txt"
        return path.read_bytes() if path.is_file() else None

    def stop_agents(self) -> None:
        """librepo imports the key into a keyring of its own and leaves a gpg-agent on it."""
        for ring in list(self.work.rglob("pubring")):
            if ring.is_dir():
                for args in (["--kill", "gpg-agent"], ["--remove-socketdir"]):
                    subprocess.run(["gpgconf", "--homedir", str(ring), *args], capture_output=True, timeout=30,
                                   check=False)
