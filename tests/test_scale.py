"""Several depot nodes on one PostgreSQL and one Ceph RGW bucket (real components, loopback).

Clients are spread over the nodes by hand (no balancer). curl is the generic format's client.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import uuid
from typing import Any

import pytest
import requests

from depot.cache.blobs_s3 import S3Settings
from depot.cache.storage import open_storage


@pytest.fixture
def cluster(pg_cluster, ceph_rgw, depot_factory, upstream, tmp_path):
    """make(n, workers=1, redirect=False, extra=None, node_ids=None) -> n nodes on a fresh
    database and bucket prefix."""
    url = pg_cluster.new_database()
    prefix = f"n-{uuid.uuid4().hex[:8]}"

    def make(count: int, workers: int = 1, redirect: bool = False, extra: dict | None = None,
             node_ids: list[str | None] | None = None) -> list[Any]:
        storage = {"kind": "s3", "endpoint": ceph_rgw.endpoint, "bucket": "depot", "prefix": prefix,
                   "redirect": redirect, "redirect_min_size": "64KiB"}
        env = {"DEPOT_STORAGE__ACCESS_KEY": ceph_rgw.access_key, "DEPOT_STORAGE__SECRET_KEY": ceph_rgw.secret_key}
        repos = {"local": {"format": "generic", "type": "hosted"},
                 "remote": {"format": "generic", "type": "proxy", "upstream": upstream.url + "/"}}
        more = dict(extra or {})
        repos.update(more.pop("repositories", {}))
        ids = node_ids or [None] * count            # None: the node's metrics say the host name
        return [depot_factory(repos, workers=workers, name=f"node{i}", env=env,
                              extra={"storage": storage, "database": {"url": url}, **more,
                                     **({"node": ids[i]} if ids[i] else {})})
                for i in range(count)]
    make.database_url = url  # type: ignore[attr-defined]
    make.s3 = S3Settings(ceph_rgw.endpoint, "depot", access_key=ceph_rgw.access_key,  # type: ignore[attr-defined]
                         secret_key=ceph_rgw.secret_key, prefix=prefix)
    return make


def _bucket_digests(cluster, tmp_path) -> set[str]:
    """Every blob in the cluster's bucket prefix, listed with depot's own S3 store."""
    storage = open_storage(tmp_path / "lister", "s3", s3=cluster.s3)
    try:
        return {d for d, _, _ in storage.blobs.scan()}
    finally:
        storage.close()


def test_published_on_one_node_is_served_by_another(cluster, tmp_path):
    a, b = cluster(2)
    payload = os.urandom(3 * 1024 * 1024)
    digest = hashlib.sha256(payload).hexdigest()
    put = requests.put(f"{a.url}/local/tools/1.0/tool.bin", data=payload,
                       headers={"X-Checksum-Sha256": digest}, timeout=30)
    assert put.status_code == 201, put.text
    got = requests.get(f"{b.url}/local/tools/1.0/tool.bin", timeout=30)
    assert got.status_code == 200 and got.content == payload
    ranged = requests.get(f"{b.url}/local/tools/1.0/tool.bin", headers={"Range": "bytes=100-199"}, timeout=30)
    assert ranged.status_code == 206 and ranged.content == payload[100:200]
    # nothing under either node's data dir: the blob is in the bucket, the record in PostgreSQL
    for node in (a, b):
        assert not list((node.data_dir / "blobs").rglob(digest))
    assert digest in _bucket_digests(cluster, tmp_path)
    # the same path with other bytes is a conflict on any node
    again = requests.put(f"{b.url}/local/tools/1.0/tool.bin", data=b"other", timeout=30)
    assert again.status_code == 409


def test_proxy_fill_on_one_node_is_a_hit_on_another(cluster, upstream):
    body = os.urandom(2 * 1024 * 1024 + 17)
    upstream.put("pkg/file.tgz", body)
    b, c = cluster(2)
    first = requests.get(f"{b.url}/remote/pkg/file.tgz", timeout=30)
    assert first.status_code == 200 and first.content == body and first.headers["X-Cache"] == "MISS"
    second = requests.get(f"{c.url}/remote/pkg/file.tgz", timeout=30)
    assert second.status_code == 200 and second.content == body and second.headers["X-Cache"] == "HIT"
    assert upstream.count("/pkg/file.tgz") == 1
    # a 404 remembered by one node is remembered by all (negative cache in PostgreSQL)
    assert requests.get(f"{b.url}/remote/pkg/missing.tgz", timeout=30).status_code == 404
    assert requests.get(f"{c.url}/remote/pkg/missing.tgz", timeout=30).status_code == 404
    assert upstream.count("/pkg/missing.tgz") == 1


def test_healthz_reports_database_and_storage(cluster, pg_cluster):
    (node,) = cluster(1)
    answer = requests.get(f"{node.url}/-/healthz", timeout=30)
    assert answer.status_code == 200
    assert "database: ok" in answer.text and "storage: ok" in answer.text


def test_redirect_answers_presigned_urls_for_large_hits(cluster, tmp_path):
    (node,) = cluster(1, redirect=True)
    big, small = os.urandom(256 * 1024), b"tiny"
    for name, data in (("big.bin", big), ("small.txt", small)):
        assert requests.put(f"{node.url}/local/{name}", data=data, timeout=30).status_code == 201
    answer = requests.get(f"{node.url}/local/big.bin", allow_redirects=False, timeout=30)
    assert answer.status_code == 307
    location = answer.headers["Location"]
    assert "X-Amz-Signature=" in location and "/depot/" in location
    assert requests.get(location, timeout=30).content == big
    # curl follows it like any client would
    out = subprocess.run(["curl", "-sSfL", f"{node.url}/local/big.bin"], capture_output=True, timeout=30)
    assert out.returncode == 0 and out.stdout == big
    # small blobs are streamed by depot itself
    direct = requests.get(f"{node.url}/local/small.txt", allow_redirects=False, timeout=30)
    assert direct.status_code == 200 and direct.content == small


MiB = 1024 * 1024


def _fetch_all(urls: list[str], timeout: float = 120) -> list[tuple[int, bytes, float | None, str]]:
    """GET every URL at once: (status, body, time of the first body byte, X-Cache) each."""
    import threading
    import time
    results: list[Any] = [None] * len(urls)

    def one(index: int, url: str) -> None:
        first = None
        parts = []
        try:
            with requests.get(url, stream=True, timeout=timeout) as answer:
                for chunk in answer.iter_content(256 * 1024):
                    if first is None:
                        first = time.monotonic()
                    parts.append(chunk)
                results[index] = (answer.status_code, b"".join(parts), first, answer.headers.get("X-Cache", ""))
        except requests.RequestException as exc:
            results[index] = (0, b"".join(parts), first, type(exc).__name__)
    threads = [threading.Thread(target=one, args=(i, u)) for i, u in enumerate(urls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout + 10)
    return results


def test_one_upstream_get_across_three_nodes(cluster, upstream):
    """60 clients on 3 nodes (2 workers each), one uncached 50 MiB file from a slow upstream:
    exactly one upstream GET, every body right, first bytes everywhere before the upstream ends."""
    import time
    body = os.urandom(50 * MiB)
    upstream.put("big/file.bin", body)
    upstream.mode("/big/file.bin", "slow", rate=10 * MiB)     # about 5 s
    nodes = cluster(3, workers=2)
    urls = [f"{nodes[i % 3].url}/remote/big/file.bin" for i in range(60)]
    started = time.monotonic()
    results = _fetch_all(urls)
    finished = time.monotonic()
    assert upstream.count("/big/file.bin") == 1
    assert all(status == 200 and got == body for status, got, _, _ in results), \
        [(s, len(g), x) for s, g, _, x in results if s != 200 or g != body]
    # streamed while downloading: every client's first bytes arrived well before the last one
    firsts = [first - started for _, _, first, _ in results]
    assert max(firsts) < (finished - started) - 2.0, (max(firsts), finished - started)
    # afterwards a hit on every node, still one upstream GET
    for node in nodes:
        again = requests.get(f"{node.url}/remote/big/file.bin", timeout=60)
        assert again.content == body and again.headers["X-Cache"] == "HIT"
    assert upstream.count("/big/file.bin") == 1


def test_leader_killed_mid_fetch(cluster, upstream, pg_cluster, tmp_path):
    """kill -9 of the leading node: its clients see a cut connection (never a short 200), a
    retry on another node succeeds, at most one more upstream GET, nothing partial stored."""
    import signal
    import threading
    import time
    body = os.urandom(30 * MiB)
    digest = hashlib.sha256(body).hexdigest()
    upstream.put("kill/file.bin", body)
    upstream.mode("/kill/file.bin", "slow", rate=5 * MiB, times=1)     # the first GET: about 6 s
    a, b, c = cluster(3)
    results: dict[str, Any] = {}

    def client(name: str, url: str) -> None:
        results[name] = _fetch_all([url], timeout=60)[0]
    first = threading.Thread(target=client, args=("a", f"{a.url}/remote/kill/file.bin"))
    first.start()
    deadline = time.monotonic() + 10
    while upstream.count("/kill/file.bin") == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    follower = threading.Thread(target=client, args=("b", f"{b.url}/remote/kill/file.bin"))
    follower.start()
    time.sleep(1.5)                      # both mid-body now
    os.killpg(a.proc.pid, signal.SIGKILL)
    a.proc.wait(timeout=10)
    first.join(70)
    follower.join(70)
    for name in ("a", "b"):
        status, got, _, _ = results[name]
        assert got != body and (status == 0 or len(got) < len(body)), (name, status, len(got))
    # nothing partial: no entry, no blob of the body, no other blob either
    import psycopg
    with psycopg.connect(cluster.database_url) as conn:
        assert conn.execute("SELECT count(*) FROM entries").fetchone()[0] == 0
    assert _bucket_digests(cluster, tmp_path) == set()
    retry = requests.get(f"{c.url}/remote/kill/file.bin", timeout=60)
    assert retry.status_code == 200 and retry.content == body
    assert upstream.count("/kill/file.bin") == 2
    assert digest in _bucket_digests(cluster, tmp_path)


def test_eviction_and_gc_with_three_nodes_serving(cluster, upstream, tmp_path):
    """Eviction keeps proxy content under max_size across nodes, `depot gc` (one node at a time,
    the database's lock) removes only unreferenced blobs while all three nodes keep serving."""
    nodes = cluster(3, extra={"cache": {"max_size": "3MiB"}})
    hosted = {f"h{i}.bin": os.urandom(MiB) for i in range(3)}
    for i, (name, data) in enumerate(hosted.items()):
        assert requests.put(f"{nodes[i].url}/local/{name}", data=data, timeout=30).status_code == 201
    proxied = {f"p{i}.bin": os.urandom(MiB) for i in range(6)}
    for i, (name, data) in enumerate(proxied.items()):
        upstream.put(f"evict/{name}", data)
        assert requests.get(f"{nodes[i % 3].url}/remote/evict/{name}", timeout=30).content == data
    import time
    time.sleep(3)                        # the last eviction runs after its fill
    import psycopg
    with psycopg.connect(cluster.database_url) as conn:
        total = conn.execute("SELECT COALESCE(SUM(size), 0) FROM entries").fetchone()[0]
        kept = {r[0].rsplit("/", 1)[-1] for r in conn.execute("SELECT key FROM entries")}
    assert 0 < total <= 3 * MiB and kept < set(proxied)
    # an orphan blob (as left by a crashed publish) is reclaimed; everything referenced stays
    storage = open_storage(tmp_path / "orphan", "s3", s3=cluster.s3)
    try:
        orphan, _ = __import__("asyncio").run(storage.blobs.put_bytes(os.urandom(500_000)))
    finally:
        storage.close()
    node = nodes[0]
    out = subprocess.run(node.command("gc", "--grace", "0s"), capture_output=True, text=True, timeout=120,
                         env={**os.environ, **node.env})
    assert out.returncode == 0, out.stderr
    assert orphan not in _bucket_digests(cluster, tmp_path)
    for name, data in hosted.items():
        for n in nodes:
            assert requests.get(f"{n.url}/local/{name}", timeout=30).content == data
    for name in kept:
        got = requests.get(f"{nodes[2].url}/remote/evict/{name}", timeout=30)
        assert got.content == proxied[name] and got.headers["X-Cache"] == "HIT"
    # an entry evicted by another node is fetched again, never served from a stale memory
    for i, name in enumerate(proxied):
        if name not in kept:
            got = requests.get(f"{nodes[i % 3].url}/remote/evict/{name}", timeout=30)
            assert got.status_code == 200 and got.content == proxied[name], name


def test_killing_a_node_fails_no_request_to_the_others(cluster, upstream):
    """3 clients per node download in a loop for 20 s; one node is killed: no request to the
    surviving nodes fails."""
    import signal
    import threading
    import time
    files = {f"loop/{i}.bin": os.urandom(256 * 1024 + i) for i in range(6)}
    for path, data in files.items():
        upstream.put(path, data)
    nodes = cluster(3, workers=2)
    failures: list[str] = []
    counts = {n.url: 0 for n in nodes}
    stop_at = time.monotonic() + 20

    def loop(node: Any, offset: int) -> None:
        i = offset
        while time.monotonic() < stop_at:
            path = list(files)[i % len(files)]
            i += 1
            try:
                got = requests.get(f"{node.url}/remote/{path}", timeout=30)
                ok = got.status_code == 200 and got.content == files[path]
            except requests.RequestException as exc:
                ok, got = False, exc
            if node is nodes[0]:
                continue                 # the node that gets killed: its failures are expected
            counts[node.url] += 1
            if not ok:
                failures.append(f"{node.url} {path}: {got}")
    threads = [threading.Thread(target=loop, args=(n, k)) for n in nodes for k in range(3)]
    for thread in threads:
        thread.start()
    time.sleep(6)
    os.killpg(nodes[0].proc.pid, signal.SIGKILL)
    for thread in threads:
        thread.join(60)
    assert failures == []
    assert all(counts[n.url] > 20 for n in nodes[1:]), counts


def test_two_nodes_started_at_once_on_an_empty_database(pg_cluster, ceph_rgw, depot_factory, tmp_path):
    """Both create the schema at once without colliding, then serve one catalog."""
    import threading
    url = pg_cluster.new_database()
    storage = {"kind": "s3", "endpoint": ceph_rgw.endpoint, "bucket": f"fresh-{uuid.uuid4().hex[:6]}",
               "access_key": ceph_rgw.access_key, "secret_key": ceph_rgw.secret_key}
    repos = {"local": {"format": "generic", "type": "hosted"}}
    started: list[Any] = []
    errors: list[BaseException] = []

    def start(i: int) -> None:
        try:
            started.append(depot_factory(repos, name=f"twin{i}", workers=2,
                                         extra={"storage": storage, "database": {"url": url}}))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
    threads = [threading.Thread(target=start, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == [] and len(started) == 2
    assert requests.put(f"{started[0].url}/local/x.txt", data=b"one", timeout=30).status_code == 201
    assert requests.get(f"{started[1].url}/local/x.txt", timeout=30).content == b"one"


def test_migrate_a_single_node_store_into_postgresql_and_s3(cluster, depot_factory, upstream, tmp_path):
    """`depot migrate --from-sqlite` moves blobs (sha256 verified) and rows; the nodes then serve
    the hosted files and answer the proxy entries as hits without asking the upstream."""
    upstream.put("mig/dep.tgz", os.urandom(200_000))
    single = depot_factory({"local": {"format": "generic", "type": "hosted"},
                            "remote": {"format": "generic", "type": "proxy", "upstream": upstream.url + "/"}},
                           name="single")
    big, small = os.urandom(12 * MiB), b"hello\n"
    assert requests.put(f"{single.url}/local/big.bin", data=big, timeout=30).status_code == 201
    assert requests.put(f"{single.url}/local/small.txt", data=small, timeout=30).status_code == 201
    dep = requests.get(f"{single.url}/remote/mig/dep.tgz", timeout=30).content
    secret = single.run_cli("token", "create", "--user", "admin", "--perm", "read").stdout.strip().splitlines()[-1]
    single.stop()
    (node,) = cluster(1, extra={"open_access": False, "repositories": {"local": {
        "format": "generic", "type": "hosted", "anonymous_read": False}}})
    env = {**os.environ, **node.env}
    out = subprocess.run(node.command("migrate", "--from-sqlite", str(single.data_dir)),
                         capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "3 blobs copied" in out.stdout and "2 files" in out.stdout and "1 entries" in out.stdout
    assert "1 tokens" in out.stdout
    assert requests.get(f"{node.url}/local/big.bin", timeout=30).status_code == 401
    # the single node's token (and its admin user) moved with the store
    assert requests.get(f"{node.url}/local/big.bin", auth=("admin", secret), timeout=30).content == big
    assert requests.get(f"{node.url}/local/small.txt", auth=("admin", secret), timeout=30).content == small
    hit = requests.get(f"{node.url}/remote/mig/dep.tgz", timeout=30)
    assert hit.content == dep and hit.headers["X-Cache"] == "HIT" and upstream.count("/mig/dep.tgz") == 1
    # run again: nothing to copy, nothing duplicated
    again = subprocess.run(node.command("migrate", "--from-sqlite", str(single.data_dir)),
                           capture_output=True, text=True, timeout=300, env=env)
    assert again.returncode == 0 and "0 blobs copied" in again.stdout and "3 already there" in again.stdout


def test_pip_publish_on_one_node_installs_from_another(cluster, tmp_path):
    """twine uploads to node A, pip installs from node B at once (one catalog, one bucket)."""
    import sys
    from pathlib import Path

    from depot_process import DepotProcess
    from pypi_fixtures import build_dist
    bin_dir = Path(sys.executable).parent
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "TWINE_", "DEPOT_"))}
    a, b = cluster(2, extra={"repositories": {"py": {"format": "pypi", "type": "hosted"}}})
    dist = build_dist(tmp_path, "dpt-scale", "1.0")
    up = subprocess.run([str(bin_dir / "twine"), "upload", "--repository-url", f"{a.url}/py/", "-u", "admin",
                         "-p", DepotProcess.ADMIN_PASSWORD, "--non-interactive", "--disable-progress-bar", str(dist.wheel), str(dist.sdist)],
                        capture_output=True, text=True, env=env, timeout=120)
    assert up.returncode == 0, up.stdout + up.stderr
    target = tmp_path / "t"
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "--no-cache-dir", "--disable-pip-version-check",
                          "--index-url", f"{b.url}/py/simple/", "--trusted-host", "127.0.0.1", "--no-compile",
                          "--target", str(target), "dpt-scale==1.0"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert pip.returncode == 0, pip.stdout + pip.stderr
    assert (target / "dpt_scale" / "__init__.py").read_text() == 'VERSION = "1.0"\n'


def test_skopeo_push_to_one_node_pull_from_another(cluster, tmp_path):
    """An image pushed with skopeo to node A is pulled from node B with the same digests."""
    import json
    import shutil

    from oci_fixtures import hello_layout
    skopeo = shutil.which("skopeo")
    assert skopeo, "skopeo is required (apt-get install -y skopeo)"
    a, b = cluster(2, extra={"repositories": {"images": {"format": "oci", "type": "hosted"}}})
    built, single, _ = hello_layout(tmp_path / "layout")

    def run(*args: str) -> None:
        done = subprocess.run([skopeo, *args], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
    run("copy", "--dest-tls-verify=false", f"oci:{built.root}:v1", f"docker://127.0.0.1:{a.port}/images/hello:v1")
    out = tmp_path / "out"
    run("copy", "--src-tls-verify=false", f"docker://127.0.0.1:{b.port}/images/hello:v1", f"oci:{out}:v1")
    index = json.loads((out / "index.json").read_text())
    assert index["manifests"][0]["digest"] == single["digest"]


def test_npm_publish_on_one_node_installs_from_another(cluster, tmp_path):
    """npm publish to node A, npm install from node B at once."""
    from npm_fixtures import NpmCli, make_package
    a, b = cluster(2, extra={"repositories": {"js": {"format": "npm", "type": "hosted"}}})
    from depot_process import DepotProcess

    login = requests.put(f"{a.url}/js/-/user/org.couchdb.user:admin", timeout=30,
                         json={"name": "admin", "password": DepotProcess.ADMIN_PASSWORD})
    assert login.status_code == 201, login.text
    token = login.json()["token"]        # npm login on node A: the token is the cluster's
    publisher = NpmCli(tmp_path / "npm-a", f"{a.url}/js/", token=token)
    publisher.ok("publish", cwd=make_package(tmp_path / "src", "dscale", "1.0.0"))
    client = NpmCli(tmp_path / "npm-b", f"{b.url}/js/", token=token)
    project = tmp_path / "project"
    project.mkdir()
    (project / "package.json").write_text('{"name": "p", "version": "1.0.0"}')
    client.ok("install", "dscale@1.0.0", cwd=project)
    assert '"version": "1.0.0"' in (project / "node_modules" / "dscale" / "package.json").read_text()


def test_healthz_says_which_component_is_down(ceph_rgw, depot_factory, tmp_path):
    """A node whose database stops answers 503 naming the database; the storage stays ok."""
    import scale_services
    private = scale_services.start_postgres()
    try:
        storage = {"kind": "s3", "endpoint": ceph_rgw.endpoint, "bucket": "health",
                   "access_key": ceph_rgw.access_key, "secret_key": ceph_rgw.secret_key}
        node = depot_factory({"local": {"format": "generic", "type": "hosted"}}, name="lonely",
                             extra={"storage": storage, "database": {"url": private.url}})
        assert requests.get(f"{node.url}/-/healthz", timeout=30).status_code == 200
    finally:
        scale_services.stop_postgres(private)
    answer = requests.get(f"{node.url}/-/healthz", timeout=30)
    assert answer.status_code == 503
    assert "storage: ok" in answer.text and "database: ok" not in answer.text and "database:" in answer.text
