"""Operations: `depot export` / `depot import` (hosted content and config) and `depot warm`.

Real depot processes, a counting static upstream, curl, pip and npm, all on 127.0.0.1.
"""
from __future__ import annotations

import base64
import hashlib
import io
import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest

from depot_process import DepotProcess
from http_util import get
from upstream import Upstream

GENERIC_FILES = {
    "tools/1.0/tool.tgz": b"\x1f\x8b" + bytes(range(256)) * 4000,      # ~1 MiB, binary
    "tools/1.0/tool.tgz.sha256": b"abc  tool.tgz\n",
    "docs/readme.txt": b"hello depot\n",
    "docs/copy-of-readme.txt": b"hello depot\n",                        # same blob, two paths
    "empty.bin": b"",
}


def curl() -> str:
    found = shutil.which("curl")
    assert found, "curl is missing: apt-get install -y curl"
    return found


def curl_put(url: str, data: bytes, tmp: Path) -> None:
    source = tmp / "upload.bin"
    source.write_bytes(data)
    out = subprocess.run([curl(), "-sS", "-f", "-T", str(source), url], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


def curl_get(url: str) -> bytes:
    out = subprocess.run([curl(), "-sS", "-f", url], capture_output=True, timeout=60)
    assert out.returncode == 0, (url, out.stderr)
    return out.stdout


def hosted(depot_factory: Any, name: str) -> DepotProcess:
    return depot_factory({"files": {"format": "generic", "type": "hosted"},
                          "other": {"format": "generic", "type": "hosted"}}, name=name)


# --------------------------------------------------------------------- export / import

def test_export_import_round_trip_generic(depot_factory: Any, tmp_path: Path) -> None:
    source = hosted(depot_factory, "source")
    for path, data in GENERIC_FILES.items():
        curl_put(f"{source.url}/files/{path}", data, tmp_path)
    curl_put(f"{source.url}/other/x.txt", b"other repository", tmp_path)
    backup = tmp_path / "backup"
    done = source.run_cli("export", str(backup))                  # while the server runs
    assert "export:" in done.stderr and "files" in done.stderr     # progress
    assert f"{len(GENERIC_FILES) + 1} files" in done.stdout
    manifest = json.loads((backup / "manifest.json").read_text())
    assert {f["path"] for f in manifest["files"] if f["repo"] == "files"} == set(GENERIC_FILES)
    for item in manifest["files"]:
        assert hashlib.sha256((backup / "blobs" / item["sha256"]).read_bytes()).hexdigest() == item["sha256"]
    assert len(list((backup / "blobs").iterdir())) == len(GENERIC_FILES)   # the shared blob once
    assert (backup / "config" / "depot.yaml").read_text() == source.config_path.read_text()

    target = hosted(depot_factory, "target")                       # empty data dir, running
    restored = target.run_cli("import", str(backup))
    assert "restored" in restored.stdout and "verify:" in restored.stderr and "import:" in restored.stderr
    for path, data in GENERIC_FILES.items():
        assert curl_get(f"{target.url}/files/{path}") == data, path
    assert curl_get(f"{target.url}/other/x.txt") == b"other repository"
    again = target.run_cli("import", str(backup))                 # idempotent
    assert f"0 files restored, {len(GENERIC_FILES) + 1} already present, 0 conflicts" in again.stdout


def test_export_one_repository_and_restore_config(depot_factory: Any, tmp_path: Path) -> None:
    source = hosted(depot_factory, "source")
    curl_put(f"{source.url}/files/a.txt", b"A", tmp_path)
    curl_put(f"{source.url}/other/b.txt", b"B", tmp_path)
    backup = tmp_path / "backup"
    source.run_cli("export", str(backup), "--repo", "other")
    manifest = json.loads((backup / "manifest.json").read_text())
    assert [(f["repo"], f["path"]) for f in manifest["files"]] == [("other", "b.txt")]
    assert source.run_cli("export", str(backup), check=False).returncode == 1   # never over an export
    fresh_config = tmp_path / "restored" / "depot.yaml"
    data = tmp_path / "restored" / "data"
    out = subprocess.run(source.command("import", str(backup))[:-4] + ["--config", str(fresh_config),
                         "--data", str(data)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert fresh_config.read_text() == source.config_path.read_text()
    assert "1 files restored" in out.stdout


def test_import_verifies_every_blob_before_writing(depot_factory: Any, tmp_path: Path) -> None:
    source = hosted(depot_factory, "source")
    curl_put(f"{source.url}/files/good.txt", b"good" * 100, tmp_path)
    curl_put(f"{source.url}/files/bad.txt", b"soon corrupt" * 100, tmp_path)
    backup = tmp_path / "backup"
    source.run_cli("export", str(backup))
    bad = next(f for f in json.loads((backup / "manifest.json").read_text())["files"] if f["path"] == "bad.txt")
    blob = backup / "blobs" / bad["sha256"]
    blob.write_bytes(blob.read_bytes()[:-1] + b"X")
    target = hosted(depot_factory, "target")
    out = target.run_cli("import", str(backup), check=False)
    assert out.returncode == 1 and "does not match its sha256" in out.stderr and "nothing was written" in out.stderr
    assert get(f"{target.url}/files/good.txt").status == 404       # not even the sound file
    assert not list((target.data_dir / "blobs" / "sha256").iterdir())


# ---------------------------------------------------------------------------- warm

def warm(depot: DepotProcess, repo: str, listing: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return depot.run_cli("warm", repo, str(listing), "--url", depot.url, *extra, check=False)


def test_warm_generic_paths_then_hits(depot_factory: Any, upstream: Upstream, tmp_path: Path) -> None:
    paths = [f"dist/pkg-{i}.bin" for i in range(12)] + ["big/blob.bin"]
    for i, path in enumerate(paths):
        upstream.put(path, bytes([i]) * (3_000_000 if path.startswith("big") else 10_000 + i))
    depot = depot_factory({"remote": {"format": "generic", "type": "proxy", "upstream": upstream.url}})
    listing = tmp_path / "paths.txt"
    listing.write_text("# what CI needs\n" + "\n".join(paths) + "\n\n/dist/pkg-0.bin\n")
    first = warm(depot, "remote", listing, "--jobs", "4")
    assert first.returncode == 0, first.stderr
    assert f"{len(paths)} fetched, 0 already cached, 0 failed" in first.stdout
    assert f"warm remote: {len(paths)}/{len(paths)} files" in first.stderr and "/s" in first.stderr
    counts = upstream.counts()
    assert all(counts.get(f"GET /{p}") == 1 for p in paths), counts
    for path in paths:
        answer = get(f"{depot.url}/remote/{path}")
        assert answer.status == 200 and answer.headers["X-Cache"] == "HIT", path
    second = warm(depot, "remote", listing)
    assert f"0 fetched, {len(paths)} already cached, 0 failed" in second.stdout
    assert upstream.counts() == counts                              # nothing went upstream again
    listing.write_text("dist/pkg-1.bin\nnot/there.bin\n")
    third = warm(depot, "remote", listing)
    assert third.returncode == 1 and "1 failed" in third.stdout and "not/there.bin: HTTP 404" in third.stderr


def test_warm_refuses_a_list_of_another_format(depot_factory: Any, upstream: Upstream, tmp_path: Path) -> None:
    depot = depot_factory({"remote": {"format": "generic", "type": "proxy", "upstream": upstream.url}})
    lock = tmp_path / "package-lock.json"
    lock.write_text(json.dumps({"lockfileVersion": 3, "packages": {}}))
    out = warm(depot, "remote", lock)
    assert out.returncode == 2 and "generic repository" in out.stderr
    gosum = tmp_path / "go.sum"
    gosum.write_text("golang.org/x/text v0.3.0 h1:abc=\n")
    out = warm(depot, "remote", gosum)
    assert out.returncode == 0 and "no go format" in out.stdout                # skipped with a message
    assert warm(depot, "nope", lock).returncode == 2


# ------------------------------------------------------------------- warm: pypi and npm

CLEAN_ENV = {k: v for k, v in __import__("os").environ.items()
             if not k.startswith(("PIP_", "UV_", "TWINE_", "DEPOT_"))}


def access_lines(depot: DepotProcess, since: int) -> list[str]:
    return [line for line in depot.log()[since:].splitlines() if "depot.access" in line]


def pip_install(index: str, target: Path, *args: str) -> None:
    out = subprocess.run([sys.executable, "-m", "pip", "--isolated", "--no-cache-dir", "--disable-pip-version-check",
                          "install", "--index-url", index, "--no-compile", "--target", str(target), *args],
                         capture_output=True, text=True, env=CLEAN_ENV, timeout=120, stdin=subprocess.DEVNULL)
    assert out.returncode == 0, out.stdout + out.stderr


def test_warm_requirements_then_pip_sees_only_hits(depot_factory: Any, upstream: Upstream, tmp_path: Path) -> None:
    from pypi_fixtures import build_many, write_simple_project
    dists = build_many(tmp_path / "build", [("dpt-wleaf", "1.0", ()), ("dpt-wleaf", "2.0", ()),
                                            ("Dpt.WMid", "1.0", ("dpt-wleaf>=1.0",))])
    write_simple_project(upstream.root, "dpt-wleaf", dists[("dpt-wleaf", "1.0")].files + dists[("dpt-wleaf", "2.0")].files)
    write_simple_project(upstream.root, "dpt-wmid", dists[("dpt-wmid", "1.0")].files)
    depot = depot_factory({"pypi-remote": {"format": "pypi", "type": "proxy", "upstream": upstream.url + "/simple/"}})
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("# pip freeze\nDpt.WMid==1.0 \\\n    --hash=sha256:0000\ndpt-wleaf==1.0 ; python_version >= '3'\n"
                            "-i https://example.invalid/simple\nunpinned>=1\n")
    out = warm(depot, "pypi-remote", requirements, "--jobs", "3")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "8 fetched, 0 already cached, 0 failed" in out.stdout      # 2 pages + 2 x (wheel, .metadata, sdist)
    assert "not pinned with ==, skipped: unpinned>=1" in out.stderr
    files = {k for k in upstream.counts() if k.startswith("GET /packages/")}
    assert files and not any("2.0" in k for k in files), files            # only the pinned version
    before = upstream.counts()
    mark = len(depot.log())
    pins = tmp_path / "pins.txt"                      # what pip itself reads: no fake hash, no foreign index
    pins.write_text("Dpt.WMid==1.0\ndpt-wleaf==1.0\n")
    pip_install(f"{depot.url}/pypi-remote/simple/", tmp_path / "site", "-r", str(pins))
    assert upstream.counts() == before                                    # nothing went upstream
    lines = [l for l in access_lines(depot, mark) if "/pypi-remote/" in l]
    assert lines and all(l.endswith('"HIT"') for l in lines), lines


def npm_tarball(name: str, version: str, deps: dict[str, str] | None = None) -> bytes:
    """A real npm package tarball (package/package.json, package/index.js)."""
    files = {"package/package.json": json.dumps({"name": name, "version": version, "main": "index.js",
                                                 "license": "MIT", "dependencies": deps or {}}).encode(),
             "package/index.js": f"module.exports = {json.dumps(name)};\n".encode()}
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for member, data in files.items():
            info = tarfile.TarInfo(member)
            info.size, info.mtime, info.mode = len(data), 1_700_000_000, 0o644
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_warm_package_lock_then_npm_ci_sees_only_hits(depot_factory: Any, upstream: Upstream, tmp_path: Path) -> None:
    from npm_fixtures import NpmCli, installed_version, new_project, static_packument
    packages = {"wa": ("1.0.0", {"wb": "^1.0.0"}), "wb": ("1.0.0", {}), "@wsc/wc": ("2.0.0", {"wb": "^1.0.0"})}
    for name, (version, deps) in packages.items():
        data = npm_tarball(name, version, deps)
        doc = static_packument(name, {version: data}, f"{upstream.url}/tarballs")
        doc["versions"][version]["dependencies"] = deps
        upstream.put(name, json.dumps(doc).encode())
        upstream.put(f"tarballs/{name.rsplit('/', 1)[-1]}-{version}.tgz", data)
    depot = depot_factory({"npm-remote": {"format": "npm", "type": "proxy", "upstream": upstream.url}})
    client = NpmCli(tmp_path / "npm-home", f"{depot.url}/npm-remote/")
    project = new_project(tmp_path / "project", {"wa": "1.0.0", "@wsc/wc": "2.0.0"})
    client.ok("install", "--package-lock-only", cwd=project)              # the lockfile CI would commit
    lock = json.loads((project / "package-lock.json").read_text())
    del lock["packages"]["node_modules/wb"]["resolved"]                  # found through the packument
    (project / "package-lock.json").write_text(json.dumps(lock, indent=2))

    depot.stop()                                                          # a fresh appliance, same address
    shutil.rmtree(depot.data_dir)
    depot.start()
    upstream.reset()
    out = warm(depot, "npm-remote", project / "package-lock.json", "--jobs", "4")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "6 fetched, 0 already cached, 0 failed" in out.stdout          # 3 packuments + 3 tarballs
    before = upstream.counts()
    assert sum(v for k, v in before.items() if k.startswith("GET /tarballs/")) == 3, before
    mark = len(depot.log())
    client.clear_cache()
    client.ok("ci", cwd=project)
    assert installed_version(project, "@wsc/wc") == "2.0.0" and installed_version(project, "wb") == "1.0.0"
    assert upstream.counts() == before
    lines = [l for l in access_lines(depot, mark) if "/npm-remote/" in l]
    assert len(lines) >= 3 and all(l.endswith('"HIT"') for l in lines), lines
