"""npm end to end: the real npm CLI against real depot processes (loopback only).

Topology (module scoped, started once):
  up      a depot with a hosted npm repository (`npm-local`): the "public registry"
  static  tests/upstream.py serving hand-made packuments (large document, corrupt tarball)
  down    the depot under test: npm-local (hosted), npm-remote (proxy of up), npm (group of
          both, deploy_to npm-local), static-remote (proxy of static)
"""
from __future__ import annotations

import base64
import http.client
import json
import shutil
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import pytest

from depot_process import DepotProcess
from npm_fixtures import (NpmCli, installed_version, integrity_of, make_package, new_project,
                          npm_path, static_packument)
from upstream import Upstream, start_upstream

TTL = 3.0
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
CORGI = "application/vnd.npm.install-v1+json; q=1.0, application/json; q=0.8"


def call(method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None,
         timeout: float = 30) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) without raising on HTTP errors."""
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with OPENER.open(request, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def login(registry: str, user: str = "admin", password: str = DepotProcess.ADMIN_PASSWORD) -> tuple[int, str]:
    """`npm login --auth-type=legacy` as an HTTP call: (status, token)."""
    status, _, body = call("PUT", f"{registry.rstrip('/')}/-/user/org.couchdb.user:{user}",
                           json.dumps({"name": user, "password": password}).encode(),
                           {"Content-Type": "application/json"})
    return status, json.loads(body).get("token", "") if status == 201 else ""


# ---------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    npm_path()  # fail loudly, never skip, without npm
    return tmp_path_factory.mktemp("npm")


@pytest.fixture(scope="module")
def up(work: Path) -> Iterator[DepotProcess]:
    process = DepotProcess(work / "up", {"npm-local": {"format": "npm", "type": "hosted"}})
    yield process
    process.stop()


@pytest.fixture(scope="module")
def static(work: Path) -> Iterator[Upstream]:
    server = start_upstream(work / "static")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def down(work: Path, up: DepotProcess, static: Upstream) -> Iterator[DepotProcess]:
    repos = {
        "npm-local": {"format": "npm", "type": "hosted"},
        "npm-remote": {"format": "npm", "type": "proxy", "upstream": f"{up.url}/npm-local",
                       "metadata_ttl": TTL, "negative_ttl": 30},
        "npm": {"format": "npm", "type": "group", "members": ["npm-local", "npm-remote"],
                "deploy_to": "npm-local"},
        "static-remote": {"format": "npm", "type": "proxy", "upstream": static.url,
                          "metadata_ttl": 300},
    }
    process = DepotProcess(work / "down", repos, extra={"upstream": {"retries": 0, "connect_timeout": 2}})
    yield process
    process.stop()


@pytest.fixture(scope="module")
def publisher(work: Path, up: DepotProcess) -> NpmCli:
    """npm configured for the upstream depot's hosted repository."""
    registry = f"{up.url}/npm-local/"
    return NpmCli(work / "npm-up", registry, token=login(registry)[1])


@pytest.fixture(scope="module")
def client(work: Path, down: DepotProcess) -> NpmCli:
    """npm configured for the group of the depot under test."""
    registry = f"{down.url}/npm/"
    return NpmCli(work / "npm-down", registry, token=login(registry)[1])


@pytest.fixture(scope="module")
def seeded(work: Path, publisher: NpmCli) -> dict[str, Path]:
    """dtiny@1.0.0 and @acme/scoped@1.0.0 (depends on dtiny) published upstream with npm."""
    src = work / "src"
    publisher.ok("publish", cwd=make_package(src, "dtiny", "1.0.0"))
    publisher.ok("publish", "--access", "public",
                 cwd=make_package(src, "@acme/scoped", "1.0.0", deps={"dtiny": "^1.0.0"}))
    return {"src": src}


# ---------------------------------------------------------------------------- 1. publish, install, ci

def test_publish_install_and_ci_from_fresh_store(work: Path, seeded: dict[str, Path], client: NpmCli,
                                                  down: DepotProcess, up: DepotProcess) -> None:
    project = new_project(work / "proj-ci", {})
    up_log_before = len(up.log())
    client.ok("install", "@acme/scoped", cwd=project)
    assert installed_version(project, "@acme/scoped") == "1.0.0"
    # one upstream packument fetch per package: its tarball's miss reuses the packument's fill
    upstream_gets = [line for line in up.log()[up_log_before:].splitlines() if '"GET /npm-local/dtiny ' in line]
    assert len(upstream_gets) == 1, upstream_gets
    assert installed_version(project, "dtiny") == "1.0.0"
    lock = json.loads((project / "package-lock.json").read_text())
    for entry in lock["packages"].values():
        if "resolved" in entry:
            assert entry["resolved"].startswith(f"{down.url}/npm/"), entry

    # npm ci with that lockfile against a fresh data dir (same address), through the proxy
    down.stop()
    shutil.rmtree(down.data_dir)
    down.start()
    client.write_userconfig(login(client.registry)[1])     # tokens lived in the old data dir
    shutil.rmtree(project / "node_modules")
    client.clear_cache()
    client.ok("ci", cwd=project)
    assert installed_version(project, "dtiny") == "1.0.0"
    assert "MISS" in down.log().split("listening pid=")[-1]


def test_group_publish_goes_to_deploy_to_and_merges(work: Path, seeded: dict[str, Path], client: NpmCli,
                                                    down: DepotProcess, up: DepotProcess) -> None:
    src = seeded["src"]
    client.ok("publish", "--access", "public", cwd=make_package(src, "@acme/local", "1.0.0",
                                                                  deps={"dtiny": "^1.0.0"}))
    status, _, _ = call("GET", f"{up.url}/npm-local/@acme%2flocal")
    assert status == 404                         # not the upstream: the group's deploy_to
    status, _, body = call("GET", f"{down.url}/npm-local/@acme%2flocal")
    assert status == 200 and "1.0.0" in json.loads(body)["versions"]

    # a version of dtiny only in hosted merges with the upstream's versions; hosted wins tags
    client.ok("publish", "--tag", "local", cwd=make_package(src, "dtiny", "9.0.0"))
    doc = json.loads(call("GET", f"{down.url}/npm/dtiny", headers={"Accept": CORGI})[2])
    assert {"1.0.0", "9.0.0"} <= set(doc["versions"])
    assert doc["dist-tags"]["local"] == "9.0.0" and doc["dist-tags"]["latest"] == "1.0.0"
    assert doc["versions"]["9.0.0"]["dist"]["tarball"] == f"{down.url}/npm/dtiny/-/dtiny-9.0.0.tgz"
    assert doc["versions"]["1.0.0"]["dist"]["tarball"] == f"{down.url}/npm/dtiny/-/dtiny-1.0.0.tgz"

    project = new_project(work / "proj-group", {})
    client.ok("install", "@acme/local", cwd=project)
    assert installed_version(project, "@acme/local") == "1.0.0"
    assert installed_version(project, "dtiny") == "1.0.0"


def test_dist_tags_deprecate_unpublish_search(seeded: dict[str, Path], client: NpmCli,
                                             down: DepotProcess) -> None:
    src = seeded["src"]
    for version in ("2.0.0", "2.1.0"):
        client.ok("publish", cwd=make_package(src, "dlocal", version, keywords=["depot-findme"]))
    client.ok("dist-tag", "add", "dlocal@2.0.0", "stable")
    tags = client.ok("dist-tag", "ls", "dlocal").stdout
    assert "stable: 2.0.0" in tags and "latest: 2.1.0" in tags
    client.ok("dist-tag", "rm", "dlocal", "stable")
    assert "stable" not in client.ok("dist-tag", "ls", "dlocal").stdout

    client.ok("deprecate", "dlocal@2.0.0", "use 2.1")
    assert client.ok("view", "dlocal@2.0.0", "deprecated").stdout.strip() == "use 2.1"
    client.ok("deprecate", "dlocal@2.0.0", "")
    assert client.ok("view", "dlocal@2.0.0", "deprecated").stdout.strip() == ""

    client.ok("unpublish", "dlocal@2.1.0", "--force")
    view = client.ok("view", "dlocal", "versions", "dist-tags", "--json").json()
    assert view["versions"] in (["2.0.0"], "2.0.0") and view["dist-tags"]["latest"] == "2.0.0"
    status, _, _ = call("GET", f"{down.url}/npm/dlocal/-/dlocal-2.1.0.tgz")
    assert status == 404

    again = client.run("publish", "--force", cwd=make_package(src, "dlocal", "2.0.0"))
    assert again.returncode != 0 and "E403" in again.stderr
    status, _, body = call("GET", f"{down.url}/npm/no-such-package-here")
    assert status == 404 and "error" in json.loads(body)

    found = client.ok("search", "depot-findme", "--json").json()
    assert [o["name"] for o in found] == ["dlocal"]
    client.ok("unpublish", "dlocal", "--force")                 # the whole package
    assert call("GET", f"{down.url}/npm/dlocal")[0] == 404
    assert call("GET", f"{down.url}/npm/dlocal/-/dlocal-2.0.0.tgz")[0] == 404
    assert client.ok("whoami").stdout.strip() == "admin"
    status, token = login(client.registry)
    assert status == 201 and token
    assert login(client.registry, password="wrong")[0] == 401


def test_audit_is_relayed_upstream_uncached(down: DepotProcess, static: Upstream) -> None:
    url = f"{down.url}/static-remote/-/npm/v1/security/advisories/bulk"
    for _ in range(2):
        call("POST", url, b'{"dtiny":["1.0.0"]}', {"Content-Type": "application/json"})
    assert static.count("/-/npm/v1/security/advisories/bulk", method="POST") == 2


def test_variants_and_hosts_never_mix(seeded: dict[str, Path], down: DepotProcess) -> None:
    """Full vs corgi and one Host vs another are separate cache entries, even on repeat hits."""
    url = f"{down.url}/npm-remote/dtiny"
    other = f"localhost:{down.port}"
    for _ in range(3):
        full = json.loads(call("GET", url, headers={"Accept": "application/json"})[2])
        corgi = json.loads(call("GET", url, headers={"Accept": CORGI})[2])
        renamed = json.loads(call("GET", url, headers={"Accept": CORGI, "Host": other})[2])
        assert "time" in full and "time" not in corgi
        assert corgi["versions"]["1.0.0"]["dist"]["tarball"].startswith(f"{down.url}/npm-remote/")
        assert renamed["versions"]["1.0.0"]["dist"]["tarball"].startswith(f"http://{other}/npm-remote/")


# ---------------------------------------------------------------------------- 2. upstream down

def test_upstream_down_serves_cache(work: Path, seeded: dict[str, Path], client: NpmCli,
                                    down: DepotProcess, up: DepotProcess) -> None:
    project = new_project(work / "proj-offline", {"@acme/scoped": "^1.0.0"})
    client.ok("install", cwd=project)                   # warm the cache
    time.sleep(TTL + 0.5)                               # metadata is now stale
    up.stop()
    try:
        shutil.rmtree(project / "node_modules")
        client.clear_cache()
        client.ok("ci", cwd=project)
        assert installed_version(project, "@acme/scoped") == "1.0.0"
        answers = [call("GET", f"{down.url}/npm/@acme%2fscoped", headers={"Accept": accept})
                   for accept in (CORGI, "application/json")]
        served = [headers.get("X-Cache") for status, headers, _ in answers if status == 200]
        assert served and set(served) == {"STALE"}, [a[:2] for a in answers]   # what npm cached
        fresh = new_project(work / "proj-offline2", {"@acme/scoped": "^1.0.0"})
        client.ok("install", cwd=fresh)                 # no lockfile: needs packuments (stale)
    finally:
        up.start()


# ---------------------------------------------------------------------------- 3. freshness

def test_new_upstream_version_after_ttl_and_hosted_at_once(seeded: dict[str, Path], client: NpmCli,
                                                           publisher: NpmCli, down: DepotProcess) -> None:
    url = f"{down.url}/npm/dtiny"
    call("GET", url, headers={"Accept": CORGI})          # fetched now: fresh for TTL seconds
    started = time.monotonic()
    publisher.ok("publish", cwd=make_package(seeded["src"], "dtiny", "1.1.0"))
    doc = json.loads(call("GET", url, headers={"Accept": CORGI})[2])
    if time.monotonic() - started < TTL - 0.5:
        assert "1.1.0" not in doc["versions"]           # still the cached document
    time.sleep(max(0.0, TTL + 0.5 - (time.monotonic() - started)))
    doc = json.loads(call("GET", url, headers={"Accept": CORGI})[2])
    assert "1.1.0" in doc["versions"]

    # hosted: a 404 is remembered for the proxy member, never for the hosted one
    status, _, _ = call("GET", f"{down.url}/npm/@acme%2ffresh")
    assert status == 404
    client.ok("publish", "--access", "public", cwd=make_package(seeded["src"], "@acme/fresh", "1.0.0"))
    assert client.ok("view", "@acme/fresh", "version").stdout.strip() == "1.0.0"


# ---------------------------------------------------------------------------- 4. large packument

def _probe_health(base: str, stop: threading.Event, worst: list[float]) -> None:
    while not stop.is_set():
        started = time.monotonic()
        call("GET", f"{base}/-/healthz", timeout=10)
        worst.append(time.monotonic() - started)
        time.sleep(0.02)


def test_large_packument_cached_and_loop_responsive(static: Upstream, down: DepotProcess) -> None:
    versions = {f"1.0.{i}": b"x" for i in range(3000)}
    doc = static_packument("bigpkg", versions, f"{static.url}/tarballs", padding=8000, dep_padding=1500)
    body = json.dumps(doc).encode()
    static.put("bigpkg", body)
    print(f"\nlarge packument: {len(body) / 2**20:.1f} MiB, {len(versions)} versions")
    for accept, label in (("application/json", "full"), (CORGI, "corgi")):
        stop, latencies = threading.Event(), []  # type: ignore[var-annotated]
        prober = threading.Thread(target=_probe_health, args=(down.url, stop, latencies))
        prober.start()
        timings = []
        try:
            for _ in range(3):
                started = time.monotonic()
                status, headers, got = call("GET", f"{down.url}/static-remote/bigpkg", headers={"Accept": accept})
                timings.append((headers.get("X-Cache"), round(time.monotonic() - started, 3), len(got)))
                assert status == 200
        finally:
            stop.set()
            prober.join()
        print(f"{label}: {timings}; /-/healthz worst {max(latencies):.3f}s over {len(latencies)}")
        # the corgi variant is derived from the full document already stored: no second fill
        assert [t[0] for t in timings] == (["MISS", "HIT", "HIT"] if label == "full" else ["HIT"] * 3)
        assert max(t[1] for t in timings[1:]) < 2.0
        assert max(latencies) < 2.5                      # generous: shared CI machines
        parsed = json.loads(got)
        assert parsed["versions"]["1.0.7"]["dist"]["tarball"] == \
            f"{down.url}/static-remote/bigpkg/-/bigpkg-1.0.7.tgz"
        assert ("readme" in parsed["versions"]["1.0.7"]) == (label == "full")
    assert static.count("/bigpkg") == 1                 # one upstream document for both variants


# ---------------------------------------------------------------------------- 5. integrity

def test_corrupt_upstream_tarball_is_refused_and_not_cached(work: Path, static: Upstream,
                                                           down: DepotProcess) -> None:
    packer = NpmCli(work / "npm-pack", static.url)
    good = packer.pack(make_package(work / "src-static", "corrupt-pkg", "1.0.0"), work / "packed").read_bytes()
    doc = static_packument("corrupt-pkg", {"1.0.0": good}, f"{static.url}/tarballs")
    static.put("corrupt-pkg", json.dumps(doc).encode())
    bad = bytearray(good)
    bad[len(bad) // 2] ^= 0xFF
    static.put("tarballs/corrupt-pkg-1.0.0.tgz", bytes(bad))
    assert doc["versions"]["1.0.0"]["dist"]["integrity"] == integrity_of(good)[0]

    url = f"{down.url}/static-remote/corrupt-pkg/-/corrupt-pkg-1.0.0.tgz"
    for attempt in range(2):
        try:
            status, headers, body = call("GET", url)
        except (OSError, http.client.HTTPException, ValueError) as exc:   # cut short: IncompleteRead etc.
            status, headers, body = 0, {}, repr(exc).encode()
        assert body != bytes(bad) and headers.get("X-Cache") != "HIT", (attempt, status, headers)
    assert static.count("/tarballs/corrupt-pkg-1.0.0.tgz") == 2      # nothing was cached

    registry = f"{down.url}/static-remote/"
    consumer = NpmCli(work / "npm-static", registry, token=login(registry)[1])
    project = new_project(work / "proj-corrupt", {"corrupt-pkg": "1.0.0"})
    assert consumer.run("install", cwd=project).returncode != 0

    static.put("tarballs/corrupt-pkg-1.0.0.tgz", good)               # upstream repaired
    consumer.clear_cache()
    consumer.ok("install", cwd=project)
    assert installed_version(project, "corrupt-pkg") == "1.0.0"
    status, headers, body = call("GET", url)
    assert status == 200 and body == good and headers.get("X-Cache") == "HIT"


# ---------------------------------------------------------------------------- concurrency

def _publish_body(name: str, version: str) -> bytes:
    data = f"tarball of {name}@{version}".encode()
    integrity, shasum = integrity_of(data)
    return json.dumps({
        "_id": name, "name": name, "dist-tags": {"latest": version},
        "versions": {version: {"name": name, "version": version,
                               "dist": {"integrity": integrity, "shasum": shasum}}},
        "_attachments": {f"{name}-{version}.tgz": {"data": base64.b64encode(data).decode(),
                                                   "length": len(data)}}}).encode()


def test_concurrent_publishes_across_workers_lose_nothing(work: Path) -> None:
    process = DepotProcess(work / "race", {"npm-local": {"format": "npm", "type": "hosted"}}, workers=2)
    try:
        url = f"{process.url}/npm-local/race"
        versions = [f"1.0.{i}" for i in range(30)] + ["1.0.0"]     # one duplicate: exactly one 403
        with ThreadPoolExecutor(12) as pool:
            statuses = list(pool.map(lambda v: call("PUT", url, _publish_body("race", v),
                                                    {"Content-Type": "application/json"})[0], versions))
        assert sorted(statuses).count(201) == 30 and statuses.count(403) == 1, statuses
        doc = json.loads(call("GET", url)[2])
        assert sorted(doc["versions"]) == sorted(set(versions))
        for version in ("1.0.0", "1.0.29"):
            assert call("GET", f"{url}/-/race-{version}.tgz")[0] == 200
    finally:
        process.stop()
