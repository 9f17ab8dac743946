"""Operations: `depot export` / `depot import` (hosted content and config) and `depot warm`.

Real depot processes, a counting static upstream, docker-registry, curl, twine, pip, npm and skopeo,
all on 127.0.0.1.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

from depot_process import DepotProcess
from http_util import get
from upstream import Upstream

CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_", "TWINE_", "DEPOT_"))}
PYPI_JSON = "application/vnd.pypi.simple.v1+json"
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


def test_export_import_round_trip_pypi_npm_oci(depot_factory: Any, tmp_path: Path) -> None:
    from npm_fixtures import NpmCli, make_package
    from oci_fixtures import hello_layout
    from pypi_fixtures import build_dist
    from test_oci import ALL_TYPES, skopeo
    repos = {"pypi-local": {"format": "pypi", "type": "hosted"}, "npm-local": {"format": "npm", "type": "hosted"},
             "oci-local": {"format": "oci", "type": "hosted"}}
    source = depot_factory(repos, name="source")
    built, _, _ = hello_layout(tmp_path / "layout")
    skopeo("copy", "--all", "--dest-tls-verify=false", f"oci:{built.root}:multi",
           f"docker://127.0.0.1:{source.port}/oci-local/test/hello:multi")
    dist = build_dist(tmp_path / "build", "dpt-backup", "1.0")
    twine = [str(Path(sys.executable).parent / "twine"), "upload", "--repository-url", f"{source.url}/pypi-local/",
             "-u", "admin", "-p", DepotProcess.ADMIN_PASSWORD, "--non-interactive", "--disable-progress-bar"]
    out = subprocess.run(twine + [str(dist.wheel), str(dist.sdist)], capture_output=True, text=True, timeout=60,
                         env=CLEAN_ENV)
    assert out.returncode == 0, out.stdout + out.stderr
    token = source.run_cli("token", "create", "--user", "admin", "--perm", "admin").stdout.strip().splitlines()[-1]
    publisher = NpmCli(tmp_path / "npm-home", f"{source.url}/npm-local/", token=token)
    publisher.ok("publish", "--access", "public", cwd=make_package(tmp_path / "src", "@bk/pkg", "1.2.3"))
    backup = tmp_path / "backup"
    source.run_cli("export", str(backup))
    target = depot_factory(repos, name="target")
    assert target.run_cli("import", str(backup)).returncode == 0

    def same(path: str, accept: str | None = None) -> bytes:
        headers = {"Accept": accept} if accept else None
        old, new = get(f"{source.url}{path}", headers=headers), get(f"{target.url}{path}", headers=headers)
        assert old.status == new.status == 200, (path, old.status, new.status)
        assert new.body == old.body.replace(source.url.encode(), target.url.encode()), path
        return old.body

    page = json.loads(same("/pypi-local/simple/dpt-backup/", PYPI_JSON))
    assert {f["filename"] for f in page["files"]} == {dist.wheel.name, dist.sdist.name}
    for item in page["files"]:
        body = same(_resolve("/pypi-local/simple/dpt-backup/" + item["url"]))
        assert body in (dist.wheel.read_bytes(), dist.sdist.read_bytes())
    packument = json.loads(same("/npm-local/@bk%2fpkg"))
    tarball = packument["versions"]["1.2.3"]["dist"]["tarball"].removeprefix(source.url)
    assert same(tarball)[:2] == b"\x1f\x8b"
    index = json.loads(same("/v2/oci-local/test/hello/manifests/multi", ALL_TYPES))
    for child in index["manifests"]:
        manifest = json.loads(same(f"/v2/oci-local/test/hello/manifests/{child['digest']}", ALL_TYPES))
        for blob in [manifest["config"], *manifest["layers"]]:
            assert hashlib.sha256(same(f"/v2/oci-local/test/hello/blobs/{blob['digest']}")).hexdigest() \
                == blob["digest"].split(":")[1]


def _resolve(path: str) -> str:
    """/a/b/c/../../d -> /a/d (relative links of a simple page)."""
    from posixpath import normpath
    return normpath(path.split("#", 1)[0])


# ---------------------------------------------------------------------------- warm

def test_warm_plans_parse_every_list_kind() -> None:
    from depot.registry import warm_plans as wp
    pins, notes = wp.pinned_requirements("A_B==1.0 --hash=sha256:00 \\\n  --hash=sha256:11\nc[x]===2.0b1; os_name == 'posix'\n"
                                         "d>=1\ne==1.*\n-r other.txt\nf @ https://x/f.whl\n# c\n")
    assert pins == [("a-b", "1.0"), ("c", "2.0b1")]
    assert len(notes) == 4
    v1 = {"lockfileVersion": 1, "dependencies": {"a": {"version": "1.0.0", "resolved": "https://r/a/-/a-1.0.0.tgz",
                                                      "dependencies": {"b": {"version": "2.0.0"}}}}}
    assert sorted(wp.npm_lock_entries(v1)) == [("a", "1.0.0", "https://r/a/-/a-1.0.0.tgz"), ("b", "2.0.0", None)]
    v3 = {"lockfileVersion": 3, "packages": {
        "": {"name": "root"}, "node_modules/@s/x": {"version": "1.0.0", "resolved": "https://r/@s/x/-/x-1.0.0.tgz"},
        "node_modules/a/node_modules/y": {"version": "3.0.0"}, "node_modules/l": {"link": True, "resolved": "l"},
        "node_modules/g": {"version": "1.0.0", "resolved": "git+ssh://git@h/g.git"}}}
    jobs, notes = wp.plan_npm("http://d/n", json.dumps(v3))
    urls = sorted(j.url for j in jobs)
    assert urls == ["http://d/n/@s%2fx", "http://d/n/@s/x/-/x-1.0.0.tgz", "http://d/n/y"] and len(notes) == 1
    packument = {"versions": {"3.0.0": {"dist": {"tarball": "https://elsewhere/y.tgz"}}}}
    assert [j.url for j in wp.npm_tarballs("http://d/n", "y", ["3.0.0"], json.dumps(packument).encode(), "")] \
        == ["http://d/n/y/-/y-3.0.0.tgz"]
    jobs, _ = wp.plan_go("http://d/go", "github.com/Azure/go v1.2.0 h1:x=\ngithub.com/Azure/go v1.2.0/go.mod h1:y=\n")
    assert [j.url for j in jobs] == [f"http://d/go/github.com/!azure/go/@v/v1.2.0{s}" for s in (".info", ".mod", ".zip")] \
        + ["http://d/go/github.com/!azure/go/@v/v1.2.0.mod"]
    assert wp.parse_image("localhost:5000/lib/a") == ("localhost:5000/lib/a", "latest")
    assert wp.parse_image("lib/a:1.2") == ("lib/a", "1.2") and wp.parse_image("a@sha256:ab") == ("a", "sha256:ab")
    page = b'<a href="../../f/x-1.0-py3-none-any.whl#sha256=00" data-core-metadata="sha256=11">x</a>' \
           b'<a href="../../f/x-2.0.tar.gz">x</a>'
    assert [j.url for j in wp.pypi_files("1.0", page, "http://d/p/simple/x/")] == \
        ["http://d/p/f/x-1.0-py3-none-any.whl", "http://d/p/f/x-1.0-py3-none-any.whl.metadata"]
    assert wp.detect("package-lock.json", "{}", "generic") == "npm" and wp.detect("list.txt", "a", "pypi") == "requirements"


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
    from depot.registry import FORMATS
    if "go" in FORMATS:
        assert out.returncode == 2 and "generic repository" in out.stderr
    else:
        assert out.returncode == 0 and "no go format" in out.stdout            # skipped with a message
    assert warm(depot, "nope", lock).returncode == 2


# ------------------------------------------------------------------- warm: pypi and npm

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
    client.userconfig.write_text("")                                      # anonymous: proxies are readable
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
    # 3 packuments + 3 tarballs, every one warmed; with --jobs 4 a job may find its file filled a
    # moment before by another job's request (counted as cached), so the split is not fixed
    counts = re.search(r"(\d+) fetched, (\d+) already cached, 0 failed", out.stdout)
    assert counts and int(counts[1]) + int(counts[2]) == 6 and int(counts[1]) >= 5, out.stdout
    before = upstream.counts()
    assert sum(v for k, v in before.items() if k.startswith("GET /tarballs/")) == 3, before
    mark = len(depot.log())
    client.clear_cache()
    client.ok("ci", cwd=project)
    assert installed_version(project, "@wsc/wc") == "2.0.0" and installed_version(project, "wb") == "1.0.0"
    assert upstream.counts() == before
    lines = [l for l in access_lines(depot, mark) if "/npm-remote/" in l]
    assert len(lines) >= 3 and all(l.endswith('"HIT"') for l in lines), lines


def test_warm_image_list_then_skopeo_sees_only_hits(depot_factory: Any, tmp_path: Path) -> None:
    from oci_fixtures import hello_layout
    from test_oci import Registry, skopeo                     # the docker-registry upstream of the OCI tests
    (tmp_path / "registry").mkdir()
    registry = Registry(tmp_path / "registry")
    try:
        built, _, _ = hello_layout(tmp_path / "layout")
        up = f"docker://127.0.0.1:{registry.port}/test/hello"
        skopeo("copy", "--all", "--dest-tls-verify=false", f"oci:{built.root}:multi", f"{up}:multi")
        skopeo("copy", "--dest-tls-verify=false", f"oci:{built.root}:v1", f"{up}:v1")
        depot = depot_factory({"hub": {"format": "oci", "type": "proxy", "upstream": registry.url}})
        images = tmp_path / "images.txt"
        images.write_text("test/hello:multi\ntest/hello:v1   # the single-arch tag\n")
        out = warm(depot, "hub", images, "--jobs", "4")
        assert out.returncode == 0, out.stdout + out.stderr
        # multi: index, 2 manifests, 2 configs, shared base + 2 layers; v1: manifest, config, layer
        assert "11 fetched, 0 already cached, 0 failed" in out.stdout, out.stdout
        upstream_gets = len(re.findall(r'"GET /v2/test/hello/', registry.log_path.read_text(errors="replace")))
        mark = len(depot.log())
        skopeo("copy", "--all", "--src-tls-verify=false", f"docker://127.0.0.1:{depot.port}/hub/test/hello:multi",
               f"oci:{tmp_path}/pulled:multi")
        after = len(re.findall(r'"GET /v2/test/hello/', registry.log_path.read_text(errors="replace")))
        assert after == upstream_gets
        lines = [l for l in access_lines(depot, mark) if "/v2/hub/" in l]
        assert lines and all(l.endswith('"HIT"') for l in lines), lines
    finally:
        registry.stop()


def test_warm_with_credentials_on_a_secured_depot(depot_factory: Any, tmp_path: Path) -> None:
    depot = depot_factory({"files": {"format": "generic", "type": "hosted"}}, secure=True)
    auth = f"admin:{DepotProcess.ADMIN_PASSWORD}"
    source = tmp_path / "f.txt"
    source.write_bytes(b"secret build input")
    put = subprocess.run([curl(), "-sS", "-f", "-u", auth, "-T", str(source), f"{depot.url}/files/f.txt"],
                         capture_output=True, text=True, timeout=60)
    assert put.returncode == 0, put.stderr
    listing = tmp_path / "paths.txt"
    listing.write_text("f.txt\n")
    anonymous = warm(depot, "files", listing)
    assert anonymous.returncode != 0 and ("401" in anonymous.stderr or "401" in anonymous.stdout)
    command = depot.command("warm", "files", str(listing), "--url", depot.url, "--user", "admin",
                            "--password-env", "WARM_SECRET")
    out = subprocess.run(command, capture_output=True, text=True, timeout=60,
                         env={**CLEAN_ENV, "WARM_SECRET": DepotProcess.ADMIN_PASSWORD})
    assert out.returncode == 0 and "0 failed" in out.stdout, out.stdout + out.stderr
