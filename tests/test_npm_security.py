"""npm security and robustness (issue 10): group member permissions, version removal and reuse,
verified refetches, per-repository upstream data, upload limits, all-or-nothing publishes,
offline `npm ci` from either packument variant, Host-independent cache keys.

Real depot processes on loopback, a counting static upstream and upstream depots; the real npm
CLI where it is the client that matters (offline ci), raw HTTP elsewhere.
"""
from __future__ import annotations

import asyncio
import base64
import errno
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from depot_process import DepotProcess, free_port
from npm_fixtures import NpmCli, installed_version, integrity_of, make_package, new_project, npm_path, static_packument
from test_npm import call, login
from upstream import Upstream, start_upstream

ADMIN = ("admin", DepotProcess.ADMIN_PASSWORD)
JSON = {"Content-Type": "application/json"}


def basic(creds: tuple[str, str] | None) -> dict[str, str]:
    if creds is None:
        return {}
    return {"Authorization": "Basic " + base64.b64encode(":".join(creds).encode()).decode()}


def publish_body(name: str, version: str, data: bytes) -> bytes:
    """What `npm publish` sends for one version whose tarball is `data`."""
    integrity, shasum = integrity_of(data)
    return json.dumps({
        "_id": name, "name": name, "dist-tags": {"latest": version},
        "versions": {version: {"name": name, "version": version,
                               "dist": {"integrity": integrity, "shasum": shasum}}},
        "_attachments": {f"{name}-{version}.tgz": {"data": base64.b64encode(data).decode(),
                                                   "length": len(data)}}}).encode()


def put(url: str, body: bytes, creds: tuple[str, str] | None = ADMIN) -> tuple[int, dict[str, Any]]:
    status, _, raw = call("PUT", url, body, {**JSON, **basic(creds)})
    return status, json.loads(raw or b"{}")


def add_user(depot: DepotProcess, user: str, password: str) -> tuple[str, str]:
    done = subprocess.run(depot.command("user", "add", user, "--password-stdin"), input=password + "\n",
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return user, password


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    npm_path()
    return tmp_path_factory.mktemp("npm-security")


@pytest.fixture(scope="module")
def guarded(work: Path) -> Iterator[DepotProcess]:
    """A secure depot: a private hosted repository behind an anonymously readable group."""
    repos = {
        "npm-priv": {"format": "npm", "type": "hosted", "anonymous_read": False,
                     "access": {"writer": "write", "deleter": "delete", "reader": "read"}},
        "npm-pub": {"format": "npm", "type": "hosted", "anonymous_read": True},
        "npm": {"format": "npm", "type": "group", "members": ["npm-priv", "npm-pub"], "deploy_to": "npm-priv",
                "anonymous_read": True},
    }
    process = DepotProcess(work / "guarded", repos, secure=True)
    yield process
    process.stop()


# ---------------------------------------------------------------------------- item 1

def test_private_packument_is_not_readable_through_the_group_write_query(guarded: DepotProcess) -> None:
    users = {u: add_user(guarded, u, f"{u}-password-123") for u in ("stranger", "reader")}
    assert put(f"{guarded.url}/npm-priv/secret-pkg", publish_body("secret-pkg", "1.0.0", b"secret"))[0] == 201
    url = f"{guarded.url}/npm/secret-pkg"
    for who in (None, users["stranger"]):
        plain, _, _ = call("GET", url, headers=basic(who))
        status, _, body = call("GET", url + "?write=true", headers=basic(who))
        assert plain == 404 and status in (401, 404), (who, plain, status, body)
        assert b"secret" not in body and b"1.0.0" not in body
    status, _, body = call("GET", url + "?write=true", headers=basic(users["reader"]))
    assert status == 200 and "1.0.0" in json.loads(body)["versions"]


# ---------------------------------------------------------------------------- item 2

def test_removing_versions_needs_delete_and_version_numbers_are_never_reused(guarded: DepotProcess) -> None:
    writer = add_user(guarded, "writer", "writer-password-123")
    deleter = add_user(guarded, "deleter", "deleter-password-123")
    url = f"{guarded.url}/npm-priv/keep-pkg"
    for version in ("1.0.0", "1.1.0"):
        assert put(url, publish_body("keep-pkg", version, f"v{version}".encode()), writer)[0] == 201
    doc = json.loads(call("GET", url, headers=basic(writer))[2])

    status, _ = put(url, json.dumps({"versions": {}}).encode(), writer)
    fewer = {**doc, "versions": {"1.0.0": doc["versions"]["1.0.0"]}}
    status_rev, _ = put(f"{url}/-rev/{doc['_rev']}", json.dumps(fewer).encode(), writer)
    assert status == 403 and status_rev == 403
    assert sorted(json.loads(call("GET", url, headers=basic(writer))[2])["versions"]) == ["1.0.0", "1.1.0"]

    status, _ = put(f"{url}/-rev/{doc['_rev']}", json.dumps(fewer).encode(), deleter)
    assert status == 200
    audit = json.loads(call("GET", f"{guarded.url}/-/api/audit?limit=50", headers=basic(ADMIN))[2])
    last = [r for r in audit if (r.get("path") or "").endswith(f"/-rev/{doc['_rev']}") and r.get("result") == "ok"]
    assert last and last[-1]["action"] == "delete", last

    status, answer = put(url, publish_body("keep-pkg", "1.1.0", b"different bytes"), writer)
    assert status == 403 and "never reused" in answer["error"]
    assert put(url, publish_body("keep-pkg", "1.1.0", b"v1.1.0"), writer)[0] == 201     # the same bytes
    status, _, tarball = call("GET", f"{url}/-/keep-pkg-1.1.0.tgz", headers=basic(writer))
    assert status == 200 and tarball == b"v1.1.0"


# ---------------------------------------------------------------------------- items 5 and 6

@pytest.fixture(scope="module")
def static(work: Path) -> Iterator[Upstream]:
    server = start_upstream(work / "static")
    yield server
    server.stop()


def test_refetch_after_eviction_is_verified(work: Path) -> None:
    """A tarball whose blob was evicted is fetched again only with the bytes of its first fetch,
    even when the upstream now publishes other bytes under that version (and a packument that
    agrees with them), and even across a restart."""
    up = DepotProcess(work / "evict-up", {"npm-local": {"format": "npm", "type": "hosted", "allow_overwrite": True}})
    repos = {"npm-remote": {"format": "npm", "type": "proxy", "upstream": f"{up.url}/npm-local", "metadata_ttl": 1}}
    depot = DepotProcess(work / "evicting", repos, extra={"cache": {"max_size": "6KiB", "memory_item_max": "1KiB"}})
    try:
        good = {name: os.urandom(3000) for name in ("evict-a", "evict-b")}
        for name, data in good.items():
            assert put(f"{up.url}/npm-local/{name}", publish_body(name, "1.0.0", data))[0] == 201
        url = f"{depot.url}/npm-remote/evict-a/-/evict-a-1.0.0.tgz"
        assert call("GET", url)[2] == good["evict-a"]
        tampered = b"tampered" + good["evict-a"][8:]
        assert put(f"{up.url}/npm-local/evict-a", publish_body("evict-a", "1.0.0", tampered))[0] == 201
        assert call("GET", f"{depot.url}/npm-remote/evict-b/-/evict-b-1.0.0.tgz")[2] == good["evict-b"]
        time.sleep(1.5)                        # eviction runs after the store; metadata expires
        for attempt in range(3):
            if attempt == 2:
                depot.restart()
            try:
                status, headers, body = call("GET", url)
            except Exception as exc:  # noqa: BLE001 - a cut body is a refusal too
                status, headers, body = 0, {}, repr(exc).encode()
            assert body != tampered and headers.get("X-Cache") != "HIT", (attempt, status, headers)
        assert "evicted" in depot.log()
    finally:
        depot.stop()
        up.stop()


def test_proxies_of_different_upstreams_never_share_tarball_data(work: Path) -> None:
    ups = [DepotProcess(work / f"twin-up{i}", {"npm-local": {"format": "npm", "type": "hosted"}})
           for i in (1, 2)]
    try:
        data = {i: f"twin from upstream {i}".encode() * (i * 10) for i in (1, 2)}
        for i, up in enumerate(ups, 1):
            assert put(f"{up.url}/npm-local/twin", publish_body("twin", "1.0.0", data[i]))[0] == 201
        repos = {f"p{i}": {"format": "npm", "type": "proxy", "upstream": f"{up.url}/npm-local"}
                 for i, up in enumerate(ups, 1)}
        depot = DepotProcess(work / "twin-down", repos)
        try:
            for first, second in ((1, 2), (2, 1)):
                for i in (first, second):                            # both packuments, then both tarballs
                    call("GET", f"{depot.url}/p{i}/twin", headers={"Accept": "application/json"})
            for i in (1, 2):
                status, headers, body = call("GET", f"{depot.url}/p{i}/twin/-/twin-1.0.0.tgz")
                assert status == 200 and body == data[i], (i, status, headers, len(body))
        finally:
            depot.stop()
    finally:
        for up in ups:
            up.stop()


# ---------------------------------------------------------------------------- item 9

def test_npm_publish_honours_max_upload(work: Path) -> None:
    depot = DepotProcess(work / "limited", {"npm-local": {"format": "npm", "type": "hosted", "max_upload": "1MiB"}})
    try:
        url = f"{depot.url}/npm-local/bulky"
        for size in (3 * 2**20, int(1.5 * 2**20)):          # refused while reading / once decoded
            status, answer = put(url, publish_body("bulky", "1.0.0", os.urandom(size)))
            assert status == 413 and "error" in answer, (size, status, answer)
        assert call("GET", url)[0] == 404
        assert put(url, publish_body("bulky", "1.0.0", os.urandom(2**19)))[0] == 201
    finally:
        depot.stop()


# ---------------------------------------------------------------------------- item 10

def test_failed_publish_records_nothing(tmp_path: Path) -> None:
    """ENOSPC while the new document is written (after the tarball blob): nothing is recorded,
    and the same publish succeeds once space is back.

    Injected in an in-process server built by the app factory: the blob store's put_bytes
    fails for the second blob of the publish (the document), as a full disk would.
    """
    from aiohttp.test_utils import TestClient, TestServer

    from depot.proxy import app as app_module
    from depot.proxy.config import load

    (tmp_path / "depot.yaml").write_text(json.dumps({
        "listen": f"127.0.0.1:{free_port()}", "data_dir": str(tmp_path / "data"), "open_access": True,
        "repositories": {"npm-local": {"format": "npm", "type": "hosted"}}}))
    config = load(tmp_path / "depot.yaml", env={})

    async def scenario() -> None:
        app = app_module.build_app(config)
        async with TestClient(TestServer(app)) as client:
            services = app[app_module.SERVICES]
            real, calls = services.blobs.put_bytes, []

            async def full_disk(data: bytes, *rest: Any) -> Any:
                calls.append(len(data))
                if len(calls) == 2:
                    raise OSError(errno.ENOSPC, "No space left on device")
                return await real(data, *rest)
            services.blobs.put_bytes = full_disk
            body = publish_body("spacey", "1.0.0", b"the tarball bytes")
            failed = await client.put("/npm-local/spacey", data=body, headers=JSON)
            assert failed.status >= 500 and len(calls) == 2
            assert await services.catalog.list("npm-local") == []         # no orphan tarball row
            services.blobs.put_bytes = real
            retried = await client.put("/npm-local/spacey", data=body, headers=JSON)
            assert retried.status == 201, await retried.text()
            got = await client.get("/npm-local/spacey/-/spacey-1.0.0.tgz")
            assert got.status == 200 and await got.read() == b"the tarball bytes"
    asyncio.run(scenario())


# ---------------------------------------------------------------------------- item 13

def test_offline_npm_ci_without_resolved_urls(work: Path) -> None:
    """`npm install <pkg>` online, upstream gone, `npm ci` (lockfile without resolved URLs) works:
    whichever packument variant npm asks for is rendered from the one document stored."""
    up = DepotProcess(work / "offline-up", {"npm-local": {"format": "npm", "type": "hosted"}})
    down = DepotProcess(work / "offline-down", {"npm-remote": {
        "format": "npm", "type": "proxy", "upstream": f"{up.url}/npm-local", "metadata_ttl": 1}},
        extra={"upstream": {"retries": 0, "connect_timeout": 2}})
    try:
        publisher = NpmCli(work / "offline-pub", f"{up.url}/npm-local/", token=login(f"{up.url}/npm-local/")[1])
        publisher.ok("publish", cwd=make_package(work / "offline-src", "offpkg", "1.0.0"))
        client = NpmCli(work / "offline-client", f"{down.url}/npm-remote/", token=login(f"{down.url}/npm-remote/")[1])
        project = new_project(work / "offline-proj", {})
        client.ok("install", "offpkg", "--omit-lockfile-registry-resolved", cwd=project)
        lock = json.loads((project / "package-lock.json").read_text())
        assert "resolved" not in lock["packages"]["node_modules/offpkg"]
        up.stop()
        shutil.rmtree(project / "node_modules")
        client.clear_cache()
        client.ok("ci", "--omit-lockfile-registry-resolved", cwd=project)
        assert installed_version(project, "offpkg") == "1.0.0"
    finally:
        down.stop()
        up.stop()


# ---------------------------------------------------------------------------- item 15

def test_host_header_is_not_part_of_the_packument_cache_key(work: Path, static: Upstream) -> None:
    data = b"hosty tarball"
    static.put("hosty", json.dumps(static_packument("hosty", {"1.0.0": data}, f"{static.url}/tarballs")).encode())
    depot = DepotProcess(work / "hosts", {"npm-remote": {"format": "npm", "type": "proxy", "upstream": static.url}})
    try:
        for i in range(12):
            host = f"mirror{i}.example:{depot.port}"
            accept = "application/vnd.npm.install-v1+json" if i % 2 else "application/json"
            status, _, body = call("GET", f"{depot.url}/npm-remote/hosty", headers={"Host": host, "Accept": accept})
            assert status == 200
            tarball = json.loads(body)["versions"]["1.0.0"]["dist"]["tarball"]
            assert tarball == f"http://{host}/npm-remote/hosty/-/hosty-1.0.0.tgz"
        assert static.count("/hosty") == 1
        evil = 'x.example","injected":"1'
        status, _, body = call("GET", f"{depot.url}/npm-remote/hosty", headers={"Host": evil})
        assert status == 400 or "injected" not in json.loads(body)
    finally:
        depot.stop()

