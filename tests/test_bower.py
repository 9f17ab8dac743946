"""Bower end to end: the real bower 1.8 (npm) against real depot processes (hosted, group, and a
proxy in front of a second depot); the herd test uses the counting static upstream."""
from __future__ import annotations

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

VENV_BOWER = Path(__file__).resolve().parent.parent / ".venv" / "bin" / "bower"
BOWER = shutil.which("bower") or (str(VENV_BOWER) if VENV_BOWER.exists() else None)
ADMIN = ("admin", DepotProcess.ADMIN_PASSWORD)


def make_package(name: str, version: str, payload: bytes = b"") -> bytes:
    """A bower tarball package: bower.json and one script, under a top directory like GitHub's."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for file, data in ((f"{name}-{version}/bower.json", json.dumps({"name": name, "version": version,
                                                                         "main": "index.js"}).encode()),
                           (f"{name}-{version}/index.js", b"// " + name.encode() + b" " + version.encode()
                            + b"\n" + payload)):
            info = tarfile.TarInfo(file)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def bower_install(tmp: Path, registry: str, name: str) -> str:
    """`bower install <name>` in a fresh project and HOME (no bower cache); the installed index.js."""
    assert BOWER, "bower is missing: bash tests/clients/bower.sh"
    work = tmp / f"b-{time.monotonic_ns()}"
    (work / "home").mkdir(parents=True)
    (work / ".bowerrc").write_text(json.dumps({"registry": registry, "interactive": False,
                                               "storage": {"packages": str(work / "cache"),
                                                           "registry": str(work / "regcache")}}))
    env = {k: v for k, v in os.environ.items() if not k.lower().startswith(("npm_", "bower_", "depot_"))}
    env.update({"HOME": str(work / "home"), "CI": "true"})
    proc = subprocess.run([BOWER, "install", name, "--allow-root", "--config.interactive=false"], cwd=work,
                          env=env, capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, f"bower install {name} failed:\n{proc.stdout}\n{proc.stderr}"
    return (work / "bower_components" / name / "index.js").read_text()


def upload(url: str, body: bytes, **kw: Any) -> requests.Response:
    return requests.put(url, data=body, timeout=60, **kw)


@pytest.fixture
def depot(depot_factory: Any) -> DepotProcess:
    return depot_factory({"bower-local": {"format": "bower", "type": "hosted"},
                          "bower": {"format": "bower", "type": "group", "members": ["bower-local"],
                                    "deploy_to": "bower-local"}})


def test_upload_then_bower_install_from_hosted_and_group(depot: DepotProcess, tmp_path: Path) -> None:
    for version in ("1.0.0", "1.2.0"):
        put = upload(f"{depot.url}/bower/archives/tinylib/{version}.tar.gz", make_package("tinylib", version))
        assert put.status_code == 201, put.text
    lookup = requests.get(f"{depot.url}/bower-local/packages/tinylib", timeout=10).json()
    assert lookup == {"name": "tinylib", "url": f"{depot.url}/bower-local/archives/tinylib/1.2.0.tar.gz"}
    archive = requests.get(lookup["url"], timeout=10)
    assert archive.headers["Content-Type"] == "application/x-gzip"
    for repo in ("bower-local", "bower"):
        assert "tinylib 1.2.0" in bower_install(tmp_path, f"{depot.url}/{repo}", "tinylib")
    # a git registration is answered as it is, saying depot does not cache it
    reg = requests.post(f"{depot.url}/bower/packages", data={"name": "gitlib", "url": "https://git.example/x.git"},
                        timeout=10)
    assert reg.status_code == 201
    git = requests.get(f"{depot.url}/bower/packages/gitlib", timeout=10).json()
    assert git["url"] == "https://git.example/x.git" and "cannot cache" in git["depot_note"]
    missing = requests.get(f"{depot.url}/bower/packages/nothere", timeout=10)
    assert missing.status_code == 404 and "not found" in missing.json()["error"]


def test_bad_archives_are_refused_and_nothing_stored(depot: DepotProcess) -> None:
    for body, why in [(b"not a tarball", "not a gzipped tar"), (b"\x1f\x8b\x08\x00garbage", "not a valid"),
                      (make_package("otherlib", "1.0.0"), "bower.json names")]:
        bad = upload(f"{depot.url}/bower-local/archives/badlib/1.0.0.tar.gz", body)
        assert bad.status_code == 400 and why in bad.json()["error"], bad.text
    assert requests.get(f"{depot.url}/bower-local/packages/badlib", timeout=10).status_code == 404
    assert requests.get(f"{depot.url}/bower-local/archives/badlib/1.0.0.tar.gz", timeout=10).status_code == 404
    url = f"{depot.url}/bower-local/archives/fixed/1.0.0.tar.gz"
    body = make_package("fixed", "1.0.0")
    assert upload(url, body).status_code == 201 and upload(url, body).status_code == 200
    assert upload(url, make_package("fixed", "1.0.0", b"other")).status_code == 409


def test_proxy_in_front_of_a_second_depot_then_upstream_stopped(depot_factory: Any, tmp_path: Path) -> None:
    upstream = depot_factory({"bower": {"format": "bower", "type": "hosted"}}, name="up")
    assert upload(f"{upstream.url}/bower/archives/relay/2.0.0.tar.gz",
                  make_package("relay", "2.0.0", os.urandom(25_000).hex().encode())).status_code == 201
    front = depot_factory({"remote": {"format": "bower", "type": "proxy", "upstream": f"{upstream.url}/bower",
                                      "metadata_ttl": 1},
                           "grp": {"format": "bower", "type": "group", "members": ["remote"]}}, name="front")
    lookup = requests.get(f"{front.url}/grp/packages/relay", timeout=10).json()
    assert lookup["url"] == f"{front.url}/grp/archives/relay/2.0.0.tar.gz"
    for round_ in range(2):
        since = len(front.log())
        assert "relay 2.0.0" in bower_install(tmp_path, f"{front.url}/remote", "relay")
        if round_ == 1:
            lines = [line for line in front.log()[since:].splitlines() if "depot.access" in line and "/remote/" in line]
            assert len(lines) == 2 and lines[-1].endswith('"HIT"'), lines          # the archive
            assert lines[0].endswith(('"HIT"', '"REVALIDATED"')), lines             # the lookup (metadata_ttl 1)
    upstream.stop()
    time.sleep(1.2)
    assert "relay 2.0.0" in bower_install(tmp_path, f"{front.url}/remote", "relay")
    assert "relay 2.0.0" in bower_install(tmp_path, f"{front.url}/grp", "relay")


def test_twenty_concurrent_clients_on_one_uncached_archive(upstream: Any, depot_factory: Any) -> None:
    body = make_package("herd", "1.0.0", os.urandom(200_000).hex().encode())
    upstream.put("packages/herd", json.dumps({"name": "herd", "url": f"{upstream.url}/dl/herd-1.0.0.tar.gz"}).encode())
    upstream.put("dl/herd-1.0.0.tar.gz", body)
    upstream.put("packages/gitty", json.dumps({"name": "gitty", "url": "git://example.invalid/gitty.git"}).encode())
    depot = depot_factory({"remote": {"format": "bower", "type": "proxy", "upstream": upstream.url}})
    lookup = requests.get(f"{depot.url}/remote/packages/herd", timeout=10).json()
    assert lookup["url"] == f"{depot.url}/remote/archives/herd/herd-1.0.0.tar.gz"
    upstream.mode("/dl/herd-1.0.0.tar.gz", "slow", headers_delay=1.5, chunk=8192, delay=0.01)
    try:
        results = get_many(lookup["url"], 20)
    finally:
        upstream.mode("/dl/herd-1.0.0.tar.gz", "normal")
    assert {r.status for r in results} == {200} and {r.body for r in results} == {body}
    assert upstream.count("/dl/herd-1.0.0.tar.gz") == 1
    git = requests.get(f"{depot.url}/remote/packages/gitty", timeout=10).json()
    assert git["url"] == "git://example.invalid/gitty.git" and "cannot cache" in git["depot_note"]
    # only the archive the upstream's lookup names can be fetched through the proxy
    assert requests.get(f"{depot.url}/remote/archives/herd/other.tar.gz", timeout=10).status_code == 404


def test_anonymous_publish_gets_a_challenge_and_a_read_token_cannot_publish(depot_factory: Any) -> None:
    secure = depot_factory({"bower": {"format": "bower", "type": "hosted"}}, secure=True)
    url = f"{secure.url}/bower/archives/tinylib/1.0.0.tar.gz"
    anonymous = upload(url, make_package("tinylib", "1.0.0"))
    assert anonymous.status_code == 401 and anonymous.headers["WWW-Authenticate"].startswith("Basic")
    read = secure.run_cli("token", "create", "--repo", "bower", "--perm", "read").stdout.strip().splitlines()[-1]
    denied = upload(url, make_package("tinylib", "1.0.0"), headers={"Authorization": f"Bearer {read}"})
    assert denied.status_code == 403 and denied.json()["error"]
    assert upload(url, make_package("tinylib", "1.0.0"), auth=ADMIN).status_code == 201


def test_policy_refuses_a_lookup_whose_source_is_denied(depot_factory: Any, tmp_path: Path) -> None:
    """A lookup names one source, so a hidden one leaves nothing to resolve: the lookup itself is the
    403 naming the rule (bower reports it), and so is the archive; other packages pass."""
    upstream = depot_factory({"bower": {"format": "bower", "type": "hosted"}}, name="up")
    for name, version in (("relay", "1.0.0"), ("relay", "2.0.0"), ("other", "1.0.0")):
        assert upload(f"{upstream.url}/bower/archives/{name}/{version}.tar.gz",
                      make_package(name, version)).status_code == 201
    front = depot_factory({"remote": {"format": "bower", "type": "proxy", "upstream": f"{upstream.url}/bower"},
                           "grp": {"format": "bower", "type": "group", "members": ["remote"]}},
                          extra={"policy": {"deny": ["relay@>=2"]}}, name="front")
    for repo in ("remote", "grp"):
        refused = requests.get(f"{front.url}/{repo}/packages/relay", timeout=10)
        assert refused.status_code == 403 and "relay@>=2" in refused.json()["error"], repo
        assert refused.headers["X-Depot-Policy"] == "deny matches relay@>=2"
    archive = requests.get(f"{front.url}/remote/archives/relay/2.0.0.tar.gz", timeout=10)
    assert archive.status_code == 403 and "relay@>=2" in archive.json()["error"]
    assert "other 1.0.0" in bower_install(tmp_path, f"{front.url}/remote", "other")
    with pytest.raises(AssertionError, match="403"):
        bower_install(tmp_path, f"{front.url}/remote", "relay")
