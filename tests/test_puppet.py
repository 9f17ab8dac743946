"""Puppet Forge end to end: the real `puppet module install` 7.23 and r10k 3.15 (Debian) against real
depot processes (hosted, group, and a proxy in front of a second depot); the herd test uses the
counting static upstream."""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from depot_process import DepotProcess
from http_util import get_many

PUPPET, R10K = shutil.which("puppet"), shutil.which("r10k")
ADMIN = ("admin", DepotProcess.ADMIN_PASSWORD)


def make_module(slug: str, version: str, deps: tuple[str, ...] = (), payload: str = "") -> bytes:
    """A Forge module tarball: <slug>-<version>/metadata.json and a manifest."""
    top = f"{slug}-{version}"
    meta = {"name": slug, "version": version, "author": "depot", "summary": "test", "license": "Apache-2.0",
            "source": "none", "dependencies": [{"name": d, "version_requirement": ">= 1.0.0"} for d in deps]}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in ((f"{top}/metadata.json", json.dumps(meta).encode()),
                           (f"{top}/manifests/init.pp", f"class {slug.split('-')[1]} {{}}\n# {payload}\n".encode())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DEPOT_", "PUPPET", "R10K"))}
    env["HOME"] = str(home)
    return env


def module_install(tmp: Path, repository: str, slug: str) -> list[str]:
    """`puppet module install <slug> --module_repository <repository>` into a fresh target: the
    installed module directories."""
    assert PUPPET, "puppet is missing: apt-get install puppet (tests/clients/puppet.apt)"
    work = tmp / f"pm-{time.monotonic_ns()}"
    (work / "home").mkdir(parents=True)
    dirs = [f"--{d}dir={work / d}" for d in ("conf", "code", "var", "log")]
    proc = subprocess.run([PUPPET, "module", "install", slug, "--module_repository", repository,
                           "--target-dir", str(work / "target"), *dirs], env=_env(work / "home"),
                          capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, f"puppet module install failed:\n{proc.stdout}\n{proc.stderr}"
    return sorted(os.listdir(work / "target"))


def r10k_install(tmp: Path, baseurl: str, puppetfile: str) -> list[str]:
    """`r10k puppetfile install` with `forge: {baseurl}` in r10k.yaml: the deployed modules."""
    assert R10K, "r10k is missing: apt-get install r10k (tests/clients/puppet.apt)"
    work = tmp / f"rk-{time.monotonic_ns()}"
    (work / "home").mkdir(parents=True)
    (work / "r10k.yaml").write_text(f"forge:\n  baseurl: '{baseurl}'\ncachedir: '{work / 'cache'}'\n")
    (work / "Puppetfile").write_text(puppetfile)
    proc = subprocess.run([R10K, "puppetfile", "install", "--config", str(work / "r10k.yaml"),
                           "--moduledir", str(work / "modules")], cwd=work, env=_env(work / "home"),
                          capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, f"r10k failed:\n{proc.stdout}\n{proc.stderr}"
    return sorted(os.listdir(work / "modules"))


def publish(url: str, body: bytes, **kw: Any) -> requests.Response:
    return requests.post(f"{url}/v3/releases", files={"file": ("module.tar.gz", body)}, timeout=60, **kw)


@pytest.fixture
def depot(depot_factory: Any) -> DepotProcess:
    return depot_factory({"pp-local": {"format": "puppet", "type": "hosted"},
                          "pp": {"format": "puppet", "type": "group", "members": ["pp-local"],
                                 "deploy_to": "pp-local"}})


def test_publish_then_puppet_and_r10k_install_from_hosted_and_group(depot: DepotProcess, tmp_path: Path) -> None:
    base = make_module("depot-base", "1.0.0")
    assert publish(f"{depot.url}/pp", base).status_code == 201                        # through the group
    assert publish(f"{depot.url}/pp-local", make_module("depot-base", "1.1.0")).status_code == 201
    assert publish(f"{depot.url}/pp-local", make_module("depot-app", "2.0.0", ("depot-base",))).status_code == 201
    page = requests.get(f"{depot.url}/pp-local/v3/releases", params={"module": "depot-base", "limit": 1},
                        timeout=10).json()
    assert [r["version"] for r in page["results"]] == ["1.1.0"] and page["pagination"]["total"] == 2
    nxt = requests.get(f"{depot.url}/pp-local{page['pagination']['next']}", timeout=10).json()
    assert [r["version"] for r in nxt["results"]] == ["1.0.0"] and nxt["pagination"]["next"] is None
    release = requests.get(f"{depot.url}/pp-local/v3/releases/depot-base-1.0.0", timeout=10).json()
    assert release["file_uri"] == "/v3/files/depot-base-1.0.0.tar.gz" and release["created_at"]
    assert release["file_sha256"] == hashlib.sha256(base).hexdigest()
    assert release["file_md5"] == hashlib.md5(base).hexdigest()  # noqa: S324
    through_group = requests.get(f"{depot.url}/pp/v3/files/depot-base-1.0.0.tar.gz", timeout=10)
    assert through_group.content == base and through_group.headers["X-Cache"] == "HIT"     # stored: never a MISS
    for repo in ("pp-local", "pp"):
        assert module_install(tmp_path, f"{depot.url}/{repo}", "depot-app") == ["app", "base"]
        assert r10k_install(tmp_path, f"{depot.url}/{repo}",
                            "mod 'depot-app', '2.0.0'\nmod 'depot-base', :latest\n") == ["app", "base"]


def test_bad_modules_are_refused_and_nothing_stored(depot: DepotProcess) -> None:
    no_meta = io.BytesIO()
    with tarfile.open(fileobj=no_meta, mode="w:gz") as tar:
        info = tarfile.TarInfo("x/manifests/init.pp")
        tar.addfile(info, io.BytesIO(b""))
    for body, why in [(b"garbage", "not a gzipped tar"), (b"\x1f\x8b\x08\x00garbage", "not a valid"),
                      (no_meta.getvalue(), "no metadata.json"), (make_module("depot-bad", "one"), "semantic version")]:
        bad = publish(f"{depot.url}/pp-local", body)
        assert bad.status_code == 400 and why in bad.json()["errors"][0], bad.text
        assert bad.json()["message"] == "400 Bad Request"
    assert requests.get(f"{depot.url}/pp-local/v3/modules/depot-bad", timeout=10).status_code == 404
    assert requests.get(f"{depot.url}/pp-local/v3/releases", params={"module": "depot-bad"},
                        timeout=10).json()["results"] == []
    assert publish(f"{depot.url}/pp-local", make_module("depot-fixed", "1.0.0")).status_code == 201
    again = publish(f"{depot.url}/pp-local", make_module("depot-fixed", "1.0.0", payload="other"))
    assert again.status_code == 409 and again.json()["errors"]


def test_proxy_in_front_of_a_second_depot_then_upstream_stopped(depot_factory: Any, tmp_path: Path) -> None:
    upstream = depot_factory({"pp": {"format": "puppet", "type": "hosted"}}, name="up")
    for body in (make_module("depot-base", "1.0.0"), make_module("depot-app", "2.0.0", ("depot-base",))):
        assert publish(f"{upstream.url}/pp", body).status_code == 201
    front = depot_factory({"remote": {"format": "puppet", "type": "proxy", "upstream": f"{upstream.url}/pp"},
                           "grp": {"format": "puppet", "type": "group", "members": ["remote"]}}, name="front")
    for round_ in range(2):
        since = len(front.log())
        assert module_install(tmp_path, f"{front.url}/remote", "depot-app") == ["app", "base"]
        if round_ == 1:
            lines = [line for line in front.log()[since:].splitlines() if "depot.access" in line]
            assert len(lines) == 4 and all(line.endswith('"HIT"') for line in lines), lines
    upstream.stop()
    assert module_install(tmp_path, f"{front.url}/remote", "depot-app") == ["app", "base"]
    assert module_install(tmp_path, f"{front.url}/grp", "depot-app") == ["app", "base"]
    assert r10k_install(tmp_path, f"{front.url}/grp", "mod 'depot-app', '2.0.0'\nmod 'depot-base', '1.0.0'\n") \
        == ["app", "base"]


def test_twenty_concurrent_clients_on_one_uncached_file(upstream: Any, depot_factory: Any) -> None:
    body = make_module("depot-herd", "1.0.0", payload=os.urandom(200_000).hex())
    release = {"version": "1.0.0", "module": {"slug": "depot-herd"}, "metadata": {"name": "depot-herd"},
               "file_uri": "/v3/files/depot-herd-1.0.0.tar.gz", "file_sha256": hashlib.sha256(body).hexdigest(),
               "created_at": "2024-01-02 03:04:05 -0800"}
    bad = {**release, "version": "1.0.1", "file_uri": "/v3/files/depot-herd-1.0.1.tar.gz", "file_sha256": "0" * 64}
    upstream.put("v3/releases", json.dumps({"pagination": {"next": None}, "results": [release, bad]}).encode())
    upstream.put("v3/files/depot-herd-1.0.0.tar.gz", body)
    upstream.put("v3/files/depot-herd-1.0.1.tar.gz", body)
    depot = depot_factory({"remote": {"format": "puppet", "type": "proxy", "upstream": upstream.url}})
    url = f"{depot.url}/remote/v3/files/depot-herd-1.0.0.tar.gz"
    assert requests.get(f"{depot.url}/remote/v3/modules/depot-herd", timeout=10).json()["current_release"]["version"] \
        == "1.0.1"
    upstream.mode("/v3/files/depot-herd-1.0.0.tar.gz", "slow", headers_delay=1.5, chunk=8192, delay=0.01)
    try:
        results = get_many(url, 20)
    finally:
        upstream.mode("/v3/files/depot-herd-1.0.0.tar.gz", "normal")
    assert {r.status for r in results} == {200} and {r.body for r in results} == {body}
    assert upstream.count("/v3/files/depot-herd-1.0.0.tar.gz") == 1
    # a file whose bytes do not match the release's file_sha256 is never served whole
    try:
        mismatch = requests.get(f"{depot.url}/remote/v3/files/depot-herd-1.0.1.tar.gz", timeout=20)
        assert mismatch.status_code != 200 or mismatch.content != body
    except requests.RequestException:
        pass
    assert requests.get(f"{depot.url}/remote/v3/files/depot-herd-9.0.0.tar.gz", timeout=10).status_code == 404


def test_anonymous_publish_gets_a_challenge_and_a_read_token_cannot_publish(depot_factory: Any) -> None:
    secure = depot_factory({"pp": {"format": "puppet", "type": "hosted"}}, secure=True)
    anonymous = publish(f"{secure.url}/pp", make_module("depot-base", "1.0.0"))
    assert anonymous.status_code == 401 and anonymous.headers["WWW-Authenticate"].startswith("Bearer")
    read = secure.run_cli("token", "create", "--repo", "pp", "--perm", "read").stdout.strip().splitlines()[-1]
    denied = publish(f"{secure.url}/pp", make_module("depot-base", "1.0.0"), headers={"Authorization": f"Bearer {read}"})
    assert denied.status_code == 403 and denied.json()["errors"]
    assert publish(f"{secure.url}/pp", make_module("depot-base", "1.0.0"), auth=ADMIN).status_code == 201


def test_warm_from_a_puppetfile_then_install_without_the_upstream(depot_factory: Any, tmp_path: Path) -> None:
    upstream = depot_factory({"pp": {"format": "puppet", "type": "hosted"}}, name="up")
    for body in (make_module("depot-base", "1.0.0"), make_module("depot-app", "2.0.0", ("depot-base",))):
        assert publish(f"{upstream.url}/pp", body).status_code == 201
    front = depot_factory({"remote": {"format": "puppet", "type": "proxy", "upstream": f"{upstream.url}/pp"}},
                          name="front")
    puppetfile = tmp_path / "Puppetfile"
    puppetfile.write_text("forge 'https://forge.example'\nmod 'depot-app', '2.0.0'\nmod 'depot/base', '1.0.0'\n")
    warmed = front.run_cli("warm", "remote", str(puppetfile), "--url", front.url, check=False)
    assert warmed.returncode == 0 and "2 fetched" in warmed.stdout, warmed.stdout + warmed.stderr
    upstream.stop()
    assert r10k_install(tmp_path, f"{front.url}/remote", puppetfile.read_text().split("\n", 1)[1]) == ["app", "base"]


def test_policy_hides_denied_releases_and_refuses_their_files(depot_factory: Any, tmp_path: Path) -> None:
    upstream = depot_factory({"pp": {"format": "puppet", "type": "hosted"}}, name="up")
    for version in ("1.0.0", "1.1.0"):
        assert publish(f"{upstream.url}/pp", make_module("depot-base", version)).status_code == 201
    front = depot_factory({"remote": {"format": "puppet", "type": "proxy", "upstream": f"{upstream.url}/pp"}},
                          extra={"policy": {"deny": ["depot-base@>=1.1"]}}, name="front")
    listed = requests.get(f"{front.url}/remote/v3/releases", params={"module": "depot-base"}, timeout=10).json()
    assert [r["version"] for r in listed["results"]] == ["1.0.0"]
    refused = requests.get(f"{front.url}/remote/v3/files/depot-base-1.1.0.tar.gz", timeout=10)
    assert refused.status_code == 403 and "depot-base@>=1.1" in refused.json()["errors"][0]
    assert module_install(tmp_path, f"{front.url}/remote", "depot-base") == ["base"]
