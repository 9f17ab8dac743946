"""Real npm packages and an isolated npm CLI for the npm tests (loopback only, no network).

`make_package` writes a tiny package directory; `NpmCli` runs the real `npm` with a private
cache and a private userconfig (so nothing from the machine's ~/.npmrc leaks in) against an
explicit registry; `pack` builds a real tarball with `npm pack`; `static_packument` lays out a
packument and its tarballs for the static test upstream (tests/upstream.py).
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def npm_path() -> str:
    """The npm executable; the npm tests must fail (not skip) when it is missing."""
    found = shutil.which("npm")
    assert found, "npm is not installed: the npm tests need the real npm CLI"
    return found


def make_package(root: Path, name: str, version: str, deps: dict[str, str] | None = None,
                 description: str | None = None, keywords: list[str] | None = None) -> Path:
    """A package directory with package.json and index.js; returns the directory."""
    pkgdir = root / f"src-{name.replace('/', '__').lstrip('@')}-{version}"
    pkgdir.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, Any] = {
        "name": name, "version": version, "main": "index.js", "license": "MIT",
        "description": description or f"depot test package {name}",
        "keywords": keywords or ["depot-test"],
        "dependencies": deps or {},
    }
    (pkgdir / "package.json").write_text(json.dumps(manifest, indent=2) + "\n")
    (pkgdir / "index.js").write_text(f"module.exports = {json.dumps(f'{name}@{version}')};\n")
    (pkgdir / "README.md").write_text(f"# {name}\n\nversion {version}\n")
    return pkgdir


@dataclass
class NpmResult:
    """What a finished npm command printed."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str

    def check(self) -> "NpmResult":
        assert self.returncode == 0, (
            f"npm {' '.join(self.args)} failed rc={self.returncode}\n"
            f"--- stdout\n{self.stdout[-3000:]}\n--- stderr\n{self.stderr[-5000:]}")
        return self

    def json(self) -> Any:
        return json.loads(self.stdout)


class NpmCli:
    """The npm CLI isolated in `home`: its own cache, userconfig, and an explicit registry."""

    def __init__(self, home: Path, registry: str, token: str = "dummy") -> None:
        self.home = Path(home)
        self.home.mkdir(parents=True, exist_ok=True)
        self.cache = self.home / "npm-cache"
        self.registry = registry.rstrip("/") + "/"
        self.userconfig = self.home / "npmrc"
        self.write_userconfig(token)

    def write_userconfig(self, token: str) -> None:
        """`//host:port/<path>/:_authToken=<token>` for the registry, and nothing else.

        npm matches credentials by the registry URL including its path (`/npm/`).
        """
        hostpath = self.registry.split("://", 1)[1].rstrip("/")
        self.userconfig.write_text(f"//{hostpath}/:_authToken={token}\n")

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.lower().startswith("npm_config_") and k not in ("NODE_OPTIONS",)}
        env.update({
            "npm_config_userconfig": str(self.userconfig),
            "npm_config_globalconfig": str(self.home / "global-npmrc"),
            "npm_config_cache": str(self.cache),
            "npm_config_registry": self.registry,
            "npm_config_update_notifier": "false",
            "npm_config_audit": "false",
            "npm_config_fund": "false",
            "npm_config_loglevel": "warn",
            "npm_config_fetch_retries": "0",
            "npm_config_fetch_timeout": "30000",
            "NO_PROXY": "*", "no_proxy": "*",
            "HOME": str(self.home),
        })
        for proxy_var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
            env.pop(proxy_var, None)
        return env

    def run(self, *args: str, cwd: Path | None = None, registry: str | None = None,
            timeout: float = 120) -> NpmResult:
        """Run `npm <args> --registry R --no-audit --no-fund` (not checked)."""
        reg = (registry or self.registry).rstrip("/") + "/"
        argv = [npm_path(), *args, "--registry", reg]
        if args and args[0] in ("install", "i", "ci", "update"):
            argv += ["--no-audit", "--no-fund"]
        proc = subprocess.run(argv, cwd=str(cwd or self.home), env=self.env(), capture_output=True,
                              text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        return NpmResult(list(args), proc.returncode, proc.stdout, proc.stderr)

    def ok(self, *args: str, cwd: Path | None = None, registry: str | None = None) -> NpmResult:
        """Run and assert success."""
        return self.run(*args, cwd=cwd, registry=registry).check()

    def clear_cache(self) -> None:
        shutil.rmtree(self.cache, ignore_errors=True)

    def pack(self, pkgdir: Path, dest: Path) -> Path:
        """`npm pack` a package directory into dest; returns the .tgz."""
        dest.mkdir(parents=True, exist_ok=True)
        result = self.ok("pack", "--pack-destination", str(dest), "--json", cwd=pkgdir)
        return dest / result.json()[0]["filename"]


def new_project(root: Path, deps: dict[str, str]) -> Path:
    """An empty consumer project depending on `deps`."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "package.json").write_text(json.dumps(
        {"name": "consumer", "version": "1.0.0", "private": True, "dependencies": deps}, indent=2))
    return root


def installed_version(project: Path, name: str) -> str:
    """The version of `name` under the project's node_modules."""
    return json.loads((project / "node_modules" / name / "package.json").read_text())["version"]


def integrity_of(data: bytes) -> tuple[str, str]:
    """(`sha512-…`, sha1 hex) as npm records them."""
    return ("sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode(),
            hashlib.sha1(data).hexdigest())


def static_packument(name: str, tarballs: dict[str, bytes], tarball_base: str,
                     padding: int = 0, dep_padding: int = 0) -> dict[str, Any]:
    """A full packument for a static upstream.

    `tarballs` maps version -> tarball bytes; dist.tarball points at
    `{tarball_base}/<file>`. `padding` adds that many bytes of readme-like text per version
    (full document only) and `dep_padding` that many bytes in `engines` (kept in corgi),
    to build large documents.
    """
    bare = name.rsplit("/", 1)[-1]
    versions: dict[str, Any] = {}
    times: dict[str, str] = {"created": "2020-01-01T00:00:00.000Z", "modified": "2024-01-01T00:00:00.000Z"}
    for version, data in tarballs.items():
        integrity, shasum = integrity_of(data)
        manifest: dict[str, Any] = {
            "name": name, "version": version, "description": f"{name} {version}",
            "main": "index.js", "license": "MIT",
            "dist": {"tarball": f"{tarball_base.rstrip('/')}/{bare}-{version}.tgz",
                     "integrity": integrity, "shasum": shasum},
        }
        if padding:
            manifest["readme"] = ("lorem ipsum " * (padding // 12 + 1))[:padding]
            manifest["scripts"] = {"test": "echo ok"}
        if dep_padding:
            manifest["engines"] = {"node": ">=0.10", "x-depot-padding": "p" * dep_padding}
        versions[version] = manifest
        times[version] = "2023-01-01T00:00:00.000Z"
    latest = max(tarballs, key=lambda v: tuple(int(p) for p in v.split("-")[0].split(".")))
    return {"_id": name, "name": name, "dist-tags": {"latest": latest}, "versions": versions,
            "time": times, "description": f"{name} static fixture"}
