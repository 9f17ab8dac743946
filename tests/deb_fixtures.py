"""Debian test helpers: .deb files built with dpkg-deb, and apt-get runs with private state."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Iterable

APT_ENV = {k: v for k, v in os.environ.items() if not k.startswith(("DEPOT_", "http_", "https_", "HTTP_", "HTTPS_"))}


def build_deb(work: Path, name: str, version: str = "1.0", arch: str = "all", payload: bytes = b"") -> Path:
    """A real binary package built by dpkg-deb -b."""
    assert shutil.which("dpkg-deb"), "dpkg-deb is required (apt-get install dpkg)"
    root = work / f"{name}-{version}-{arch}"
    (root / "DEBIAN").mkdir(parents=True, exist_ok=True)
    (root / "DEBIAN" / "control").write_text(
        f"Package: {name}\nVersion: {version}\nArchitecture: {arch}\n"
        f"Maintainer: depot tests <tests@example.invalid>\nDescription: depot test package {name}\n")
    data = root / "usr" / "share" / name
    data.mkdir(parents=True, exist_ok=True)
    (data / "payload").write_bytes(payload or f"{name} {version}\n".encode())
    out = work / f"{name}_{version}_{arch}.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-b", str(root), str(out)], check=True,
                   capture_output=True, timeout=60)
    return out


class Apt:
    """apt-get with a private Dir::State/Dir::Etc/Dir::Cache; never touches the host's packages."""

    def __init__(self, work: Path, lines: Iterable[str], proxy: str | None = None) -> None:
        assert shutil.which("apt-get"), "apt-get is required"
        self.work = work
        for sub in ("lists/partial", "archives/partial", "etc/apt.conf.d", "etc/preferences.d"):
            (work / sub).mkdir(parents=True, exist_ok=True)
        (work / "etc" / "sources.list").write_text("\n".join(lines) + "\n")
        (work / "status").write_text("")
        self.options = [
            "-o", f"Dir::Etc::SourceList={work}/etc/sources.list", "-o", "Dir::Etc::SourceParts=/nonexistent",
            "-o", f"Dir::Etc::Parts={work}/etc/apt.conf.d", "-o", f"Dir::Etc::PreferencesParts={work}/etc/preferences.d",
            "-o", f"Dir::State::Lists={work}/lists", "-o", f"Dir::State::status={work}/status",
            "-o", f"Dir::Cache::Archives={work}/archives", "-o", "Dir::Cache::pkgcache=",
            "-o", "Dir::Cache::srcpkgcache=", "-o", "Acquire::Languages=none", "-o", "APT::Sandbox::User=root",
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
