"""OCI under load, against a Debian docker-registry upstream: a 300 MiB layer pulled by 8
clients at once (depot's memory stays flat, one upstream GET), 10 concurrent `skopeo copy`
runs of an uncached image (one upstream GET per blob; plus a regression test of the stall that
showed), and a chunked upload whose PATCH is cut mid-chunk and then resumed from the range the
registry reports."""
from __future__ import annotations

import asyncio
import hashlib
import json
import os
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urljoin, urlsplit

import aiohttp
import pytest
import requests

from depot.cache.flight import Flights, wait_remote
from depot_process import DepotProcess
from oci_fixtures import OCI_CONFIG, OCI_MANIFEST, Layout, digest_of, layer_tgz
from test_oci import SKOPEO, Registry, host, index_digest, skopeo

MiB = 2**20
BIG_LAYER = 300 * MiB
BIG_CLIENTS = 8
# "depot's RSS stays under 150 MB" (MB = 10**6 bytes), checked as: every process's VmRSS, and
# the PSS summed over master and workers. Summed VmRSS counts the pages the forked workers share
# with the master three times: it is ~144 MB before any request, so it cannot carry the bound;
# its growth during the download (a tenth of the layer at most) shows nothing is buffered.
RSS_LIMIT_MB = 150
GROWTH_LIMIT = 30 * MiB
SKOPEO_COPIES = 10
OCI_TAR = "application/vnd.oci.image.layer.v1.tar"


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    up = Registry(tmp_path_factory.mktemp("registry"))
    yield up
    up.stop()


@pytest.fixture(scope="module")
def depot(tmp_path_factory: pytest.TempPathFactory, registry: Registry) -> Iterator[DepotProcess]:
    repos = {"hub": {"format": "oci", "type": "proxy", "upstream": registry.url},
             "hosted": {"format": "oci", "type": "hosted"}}
    process = DepotProcess(tmp_path_factory.mktemp("depot"), repos, workers=2)
    yield process
    process.stop()


# ---------------------------------------------------------------- helpers
def random_file(path: Path, size: int) -> str:
    """Write `size` random bytes to `path` in 4 MiB blocks; returns the sha256 digest."""
    hasher = hashlib.sha256()
    with path.open("wb") as out:
        left = size
        while left:
            block = os.urandom(min(left, 4 * MiB))
            out.write(block)
            hasher.update(block)
            left -= len(block)
    return "sha256:" + hasher.hexdigest()


def upload_blob(base: str, image: str, data: Any, digest: str) -> None:
    """A monolithic upload (POST, then PUT with the body, streamed when `data` is a file)."""
    started = requests.post(f"{base}/v2/{image}/blobs/uploads/", timeout=30)
    assert started.status_code == 202, started.text
    location = urljoin(base + "/", started.headers["Location"])
    sep = "&" if "?" in location else "?"
    done = requests.put(f"{location}{sep}digest={digest}", data=data, timeout=120,
                        headers={"Content-Type": "application/octet-stream"})
    assert done.status_code == 201, done.text


def push_single_layer_image(base: str, image: str, layer: Path, layer_digest: str) -> None:
    """Push `layer` (streamed from disk), a config and a manifest tagged `v1` to a registry."""
    with layer.open("rb") as body:
        upload_blob(base, image, body, layer_digest)
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [layer_digest]}}).encode()
    upload_blob(base, image, config, digest_of(config))
    manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                           "config": {"mediaType": OCI_CONFIG, "digest": digest_of(config),
                                      "size": len(config)},
                           "layers": [{"mediaType": OCI_TAR, "digest": layer_digest,
                                       "size": layer.stat().st_size}]}).encode()
    put = requests.put(f"{base}/v2/{image}/manifests/v1", data=manifest, timeout=30,
                       headers={"Content-Type": OCI_MANIFEST})
    assert put.status_code == 201, put.text


def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants (by parent PID, from /proc)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parents.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry))
    found, todo = [pid], [pid]
    while todo:
        kids = parents.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


def proc_kib(pid: int, field: str, source: str = "status") -> int:
    """A `field:  N kB` line of /proc/<pid>/<source> in bytes (0 if the process is gone)."""
    try:
        for line in Path(f"/proc/{pid}/{source}").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def rss_bytes(pid: int) -> int:
    """VmRSS of one process in bytes."""
    return proc_kib(pid, "VmRSS")


def pss_bytes(pid: int) -> int:
    """Proportional set size: pages shared with the other workers counted once in the sum."""
    return proc_kib(pid, "Pss", "smaps_rollup")


class RssSampler:
    """Samples the summed VmRSS of a process tree every `interval` seconds in a thread."""

    def __init__(self, pids: list[int], interval: float = 0.05) -> None:
        self.pids = pids
        self.interval = interval
        self.peak_total = 0
        self.peak_pss = 0
        self.peak_each: dict[int, int] = {pid: 0 for pid in pids}
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            sizes = {pid: rss_bytes(pid) for pid in self.pids}
            self.peak_total = max(self.peak_total, sum(sizes.values()))
            self.peak_pss = max(self.peak_pss, sum(pss_bytes(pid) for pid in self.pids))
            for pid, size in sizes.items():
                self.peak_each[pid] = max(self.peak_each[pid], size)
            self.samples += 1
            self._stop.wait(self.interval)

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


async def hash_get(session: aiohttp.ClientSession, url: str) -> tuple[int, str, int, str]:
    """GET `url`, hashing the body as it streams; (status, sha256 digest, length, X-Cache)."""
    hasher = hashlib.sha256()
    size = 0
    async with session.get(url) as resp:
        async for chunk in resp.content.iter_chunked(MiB):
            hasher.update(chunk)
            size += len(chunk)
        return resp.status, "sha256:" + hasher.hexdigest(), size, resp.headers.get("X-Cache", "")


def hash_get_many(url: str, count: int, timeout: float) -> list[tuple[int, str, int, str]]:
    """`count` concurrent hashed GETs of `url`, each on its own connection."""
    async def run() -> list[tuple[int, str, int, str]]:
        connector = aiohttp.TCPConnector(limit=0, force_close=True)
        async with aiohttp.ClientSession(connector=connector, auto_decompress=False,
                                         timeout=aiohttp.ClientTimeout(total=timeout)) as session:
            return await asyncio.gather(*(hash_get(session, url) for _ in range(count)))
    return asyncio.run(run())


# ---------------------------------------------------------------- 1. a 300 MiB layer, 8 clients
def test_big_layer_by_8_clients_flat_memory_one_upstream_get(depot, registry, tmp_path):
    layer = tmp_path / "layer.tar"
    digest = random_file(layer, BIG_LAYER)
    push_single_layer_image(registry.url, "test/huge", layer, digest)
    layer.unlink()
    assert depot.proc is not None
    pids = process_tree(depot.proc.pid)
    assert len(pids) == 3, f"expected a master and 2 workers, found {pids}"
    url = f"{depot.url}/v2/hub/test/huge/blobs/{digest}"
    before = {pid: rss_bytes(pid) for pid in pids}
    started = time.monotonic()
    with RssSampler(pids) as rss:
        results = hash_get_many(url, BIG_CLIENTS, timeout=50)
    seconds = time.monotonic() - started
    mb = {pid: (round(before[pid] / 1e6, 1), round(peak / 1e6, 1)) for pid, peak in rss.peak_each.items()}
    print(f"\n{BIG_CLIENTS} x {BIG_LAYER // MiB} MiB in {seconds:.1f}s, {rss.samples} samples; depot "
          f"peak RSS sum {rss.peak_total / 1e6:.1f} MB, PSS sum {rss.peak_pss / 1e6:.1f} MB; "
          f"per pid (before, peak) MB: {mb}")
    assert rss.samples >= 10
    assert [(status, got, size) for status, got, size, _ in results] == \
        [(200, digest, BIG_LAYER)] * BIG_CLIENTS
    assert "MISS" in {cache for *_, cache in results}
    assert max(rss.peak_each.values()) < RSS_LIMIT_MB * 10**6
    assert rss.peak_pss < RSS_LIMIT_MB * 10**6
    assert rss.peak_total - sum(before.values()) < GROWTH_LIMIT
    assert registry.gets(f"/v2/test/huge/blobs/{digest}") == 1


# ---------------------------------------------------------------- 2. 10 concurrent skopeo copies
def test_ten_concurrent_skopeo_copies_one_upstream_get_per_blob(depot, registry, tmp_path):
    built = Layout(tmp_path / "layout")
    desc = built.image({"app.bin": os.urandom(3 * MiB)}, shared=layer_tgz({"base.bin": os.urandom(3 * MiB)}))
    built.tag(desc, "v1")
    skopeo("copy", "--dest-tls-verify=false", f"oci:{built.root}:v1",
           f"docker://127.0.0.1:{registry.port}/test/many:v1")
    manifest = json.loads(built.read(desc["digest"]))
    blobs = [manifest["config"]["digest"], *(layer["digest"] for layer in manifest["layers"])]
    assert all(registry.gets(f"/v2/test/many/blobs/{d}") == 0 for d in blobs)

    source = f"docker://{host(depot)}/hub/test/many:v1"
    started = time.monotonic()
    copies = [subprocess.Popen([SKOPEO, "copy", "--src-tls-verify=false", source, f"oci:{tmp_path}/o{i}:v1"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
              for i in range(SKOPEO_COPIES)]
    failures = []
    for copy in copies:
        try:
            _, err = copy.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            copy.kill()
            _, err = copy.communicate(timeout=10)
        if copy.returncode != 0:
            failures.append(err)
    assert failures == []
    assert time.monotonic() - started < 30, "a copy stalled (the single-flight wait must not hang)"
    assert {index_digest(tmp_path / f"o{i}", "v1") for i in range(SKOPEO_COPIES)} == {desc["digest"]}
    assert {d: registry.gets(f"/v2/test/many/blobs/{d}") for d in blobs} == {d: 1 for d in blobs}
    assert registry.gets("/v2/test/many/manifests/v1") == 1


def test_waiter_does_not_stall_on_a_lock_holder_that_publishes_nothing(tmp_path):
    """Regression (seen as one `skopeo copy` in 10 taking 75 s): a worker took the lock of a
    key, found the entry already stored and let go without publishing a flight, while a request
    in another worker waited for a state newer than the previous flight's until wait_timeout."""
    flights = Flights(tmp_path)
    fid = Flights.flight_id("hub", "test/many/manifests/v1@all")
    lock = flights.try_lead(fid)
    assert lock is not None
    flights.finish(flights.start(fid), lock, "done")          # the previous flight, finished
    holder = flights.try_lead(fid)                            # a new lock holder, silent
    assert holder is not None
    try:
        started = time.monotonic()
        state = asyncio.run(wait_remote(flights, fid, time.time() + 0.01, timeout=30))
        assert state is None and time.monotonic() - started < 2
    finally:
        os.close(holder)


# ---------------------------------------------------------------- 3. an interrupted PATCH
def upload_range(location: str) -> str:
    status = requests.get(location, timeout=10)
    assert status.status_code == 204, status.text
    return status.headers["Range"]


def cut_patch(location: str, chunk: bytes, announced: int, start: int) -> None:
    """Send a PATCH announcing `announced` bytes, send only `chunk`, wait until the registry
    has stored all of it, then close the connection mid-body."""
    url = urlsplit(location)
    head = (f"PATCH {url.path} HTTP/1.1\r\nHost: {url.netloc}\r\n"
            f"Content-Type: application/octet-stream\r\nContent-Length: {announced}\r\n"
            f"Content-Range: {start}-{start + announced - 1}\r\n\r\n").encode()
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        sock.sendall(head + chunk)
        want = f"0-{start + len(chunk) - 1}"
        deadline = time.monotonic() + 10
        while upload_range(location) != want:
            assert time.monotonic() < deadline, f"the registry never reached {want}"
            time.sleep(0.02)
        sock.shutdown(socket.SHUT_RDWR)


def test_chunked_upload_interrupted_patch_resumes_from_reported_range(depot):
    v2 = f"{depot.url}/v2/hosted/test/resumed"
    data = os.urandom(3 * MiB + 12345)
    started = requests.post(f"{v2}/blobs/uploads/", timeout=10)
    assert started.status_code == 202
    location = urljoin(depot.url, started.headers["Location"])
    first = requests.patch(location, data=data[:MiB], headers={"Content-Range": f"0-{MiB - 1}"}, timeout=10)
    assert first.status_code == 202 and first.headers["Range"] == f"0-{MiB - 1}"

    cut_at = MiB + 700_000                    # the second chunk announces 2 MiB, 700000 bytes arrive
    cut_patch(location, data[MiB:cut_at], 2 * MiB, MiB)
    time.sleep(0.3)                           # the server has noticed the cut; nothing more arrives
    assert upload_range(location) == f"0-{cut_at - 1}"

    retry_whole = requests.patch(location, data=data[MiB:3 * MiB], timeout=10,
                                 headers={"Content-Range": f"{MiB}-{3 * MiB - 1}"})
    assert retry_whole.status_code == 416 and retry_whole.headers["Range"] == f"0-{cut_at - 1}"
    resumed = requests.patch(location, data=data[cut_at:3 * MiB], timeout=10,
                             headers={"Content-Range": f"{cut_at}-{3 * MiB - 1}"})
    assert resumed.status_code == 202 and resumed.headers["Range"] == f"0-{3 * MiB - 1}"
    done = requests.put(f"{location}?digest={digest_of(data)}", data=data[3 * MiB:], timeout=10,
                        headers={"Content-Range": f"{3 * MiB}-{len(data) - 1}"})
    assert done.status_code == 201, done.text
    assert done.headers["Docker-Content-Digest"] == digest_of(data)
    assert requests.get(f"{v2}/blobs/{digest_of(data)}", timeout=10).content == data
    assert requests.get(location, timeout=10).status_code == 404
