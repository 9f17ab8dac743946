"""Peak RSS of depot nodes moving a 1 GiB blob through S3 (Ceph RGW) and PostgreSQL.

    .venv/bin/python bench/scale_rss.py [--gib 1] [--clients 3] [--workers 2]

Two nodes (`--workers 2` each) on one PostgreSQL and one Ceph RGW (4 GiB memstore), started here
and stopped by PID. Each step moves the whole blob; every body is checked by sha256 as it
streams. After each step the peak RSS (VmHWM) of every depot process is read and then reset
(/proc/PID/clear_refs), so each figure is that step's own peak:

1. hosted PUT of the blob to node A (streamed from a file by the client);
2. CLIENTS clients GET it from node B (a hit from S3), one of them reading slowly;
3. a proxy fill of the blob from a local upstream: CLIENTS clients on node A (one upstream GET);
4. the same file as a hit on node B, CLIENTS clients plus one slow reader.

The reference is each process's peak after start-up and a 1 MiB round trip; a node that
buffered the blob would grow by about the blob's size. Target (issue #13): < 200 MB per node.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import scale_services  # noqa: E402
from depot_process import DepotProcess  # noqa: E402
from upstream import start_upstream  # noqa: E402

MiB = 1024 * 1024
SLOW_RATE = 40 * MiB          # bytes/s of the slow reader (for its first SLOW_BYTES)
SLOW_BYTES = 320 * MiB


def processes(node: DepotProcess) -> list[int]:
    """The node's serve process and its workers."""
    assert node.proc is not None
    pids = [node.proc.pid]
    for task in Path(f"/proc/{node.proc.pid}/task").glob("*"):
        children = task / "children"
        if children.exists():
            pids += [int(p) for p in children.read_text().split()]
    return pids


def _status(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def peaks(node: DepotProcess, reset: bool = True) -> list[int]:
    """Peak RSS (bytes) of each of the node's processes since the last reset; then reset."""
    found = []
    for pid in processes(node):
        found.append(_status(pid, "VmHWM"))
        if reset:
            Path(f"/proc/{pid}/clear_refs").write_text("5")   # 5: reset the peak RSS to the current RSS
    return found


def write_blob(path: Path, size: int) -> str:
    """A file of random bytes (written in 16 MiB pieces); its sha256."""
    digest = hashlib.sha256()
    with open(path, "wb") as out:
        left = size
        while left:
            piece = os.urandom(min(16 * MiB, left))
            digest.update(piece)
            out.write(piece)
            left -= len(piece)
    return digest.hexdigest()


def file_chunks(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as handle:
        while block := handle.read(4 * MiB):
            yield block


def fetch(url: str, expect: str, slow: bool = False) -> str:
    """GET url, hashing as it streams ("ok" or what went wrong); `slow` reads at SLOW_RATE first."""
    digest, got, start = hashlib.sha256(), 0, time.monotonic()
    try:
        with requests.get(url, stream=True, timeout=900) as answer:
            if answer.status_code != 200:
                return f"status {answer.status_code}"
            for chunk in answer.iter_content(256 * 1024):
                digest.update(chunk)
                got += len(chunk)
                if slow and got < SLOW_BYTES:
                    time.sleep(max(0.0, got / SLOW_RATE - (time.monotonic() - start)))
    except requests.RequestException as exc:
        return type(exc).__name__
    return "ok" if digest.hexdigest() == expect else f"wrong body ({got} bytes)"


def fetch_all(urls: list[str], expect: str, slow_last: bool) -> tuple[float, list[str]]:
    results: list[str] = [""] * len(urls)
    start = time.monotonic()

    def one(index: int, url: str) -> None:
        results[index] = fetch(url, expect, slow=slow_last and index == len(urls) - 1)
    threads = [threading.Thread(target=one, args=(i, u)) for i, u in enumerate(urls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.monotonic() - start, results


def node_pair(work: Path, url: str, ceph: Any, upstream: Any, workers: int) -> list[DepotProcess]:
    storage = {"kind": "s3", "endpoint": ceph.endpoint, "bucket": "rss", "prefix": "r",
               "access_key": ceph.access_key, "secret_key": ceph.secret_key}
    repos = {"local": {"format": "generic", "type": "hosted"},
             "remote": {"format": "generic", "type": "proxy", "upstream": upstream.url + "/"}}
    return [DepotProcess(work / f"node-{name}-{uuid.uuid4().hex[:4]}", repos, workers=workers,
                         extra={"storage": storage, "database": {"url": url}, "access_log": False,
                                "node": name, "cache": {"max_size": "8GiB"}})
            for name in ("a", "b")]


def report(step: str, seconds: float, size: int, nodes: dict[str, list[int]], reference: dict[str, list[int]]) -> None:
    cells = []
    for name, values in nodes.items():
        growth = max(v - r for v, r in zip(values, reference[name], strict=False))
        cells.append(f"{name}: max {max(values) / MiB:6.0f} MiB, sum {sum(values) / MiB:6.0f} MiB,"
                     f" +{growth / MiB:4.0f} MiB")
    print(f"{step:34} {size / MiB / seconds:7.0f} MiB/s   " + " | ".join(cells), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gib", type=float, default=1.0)
    parser.add_argument("--clients", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    size = int(args.gib * 1024 * MiB)
    work = Path(tempfile.mkdtemp(prefix="depot-rss-bench-"))
    # memstore keeps objects in memory: the blob, its multipart upload and its copy must fit
    os.environ["MEM_BYTES"] = str(max(4 * 1024 * MiB, 3 * size + 512 * MiB))
    pg, ceph = scale_services.start_postgres(), scale_services.start_ceph()
    (work / "up").mkdir()
    upstream = start_upstream(work / "up")
    started: list[DepotProcess] = []
    try:
        started = node_pair(work, pg.new_database(), ceph, upstream, args.workers)
        a, b = started
        small = os.urandom(MiB)
        for node in started:          # warm: every worker has imported and served once
            assert requests.put(f"{node.url}/local/warm-{node.port}.bin", data=small, timeout=60).status_code == 201
            for _ in range(4):
                assert requests.get(f"{node.url}/local/warm-{node.port}.bin", timeout=60).content == small
        startup = {"a": peaks(a), "b": peaks(b)}
        reference = {n: [_status(pid, "VmRSS") for pid in processes(node)] for n, node in (("a", a), ("b", b))}
        print(f"blob {size / MiB:.0f} MiB, {args.clients} clients, {args.workers} workers per node"
              " (max: the largest process; sum: the node's processes; +: the largest growth over the reference)")
        for label, figures in (("peak at start + 1 MiB round trips", startup),
                               ("reference (RSS after them)", reference)):
            print(f"{label:34} {'':13}   " + " | ".join(
                f"{n}: max {max(v) / MiB:6.0f} MiB, sum {sum(v) / MiB:6.0f} MiB" for n, v in figures.items()))
        blob = work / "up" / "big.bin"
        expect = write_blob(blob, size)

        start = time.monotonic()
        put = requests.put(f"{a.url}/local/big.bin", data=file_chunks(blob), timeout=900,
                           headers={"X-Checksum-Sha256": expect})
        assert put.status_code == 201, put.text
        report("1. hosted PUT on A", time.monotonic() - start, size, {"a": peaks(a), "b": peaks(b)}, reference)

        seconds, results = fetch_all([f"{b.url}/local/big.bin"] * (args.clients + 1), expect, slow_last=True)
        assert results == ["ok"] * len(results), results
        report(f"2. S3 hit on B x{args.clients}+1 slow", seconds, size * len(results),
               {"a": peaks(a), "b": peaks(b)}, reference)

        seconds, results = fetch_all([f"{a.url}/remote/big.bin"] * args.clients, expect, slow_last=False)
        assert results == ["ok"] * len(results), results
        assert upstream.count("/big.bin") == 1, upstream.count("/big.bin")
        report(f"3. proxy fill on A x{args.clients}", seconds, size * len(results),
               {"a": peaks(a), "b": peaks(b)}, reference)

        seconds, results = fetch_all([f"{b.url}/remote/big.bin"] * (args.clients + 1), expect, slow_last=True)
        assert results == ["ok"] * len(results), results
        report(f"4. proxy hit on B x{args.clients}+1 slow", seconds, size * len(results),
               {"a": peaks(a), "b": peaks(b)}, reference)
        print(f"a node that buffered the blob would grow by {size / MiB:.0f} MiB per transfer")
    finally:
        for node in started:
            node.stop()
        upstream.stop()
        scale_services.stop_ceph(ceph)
        scale_services.stop_postgres(pg)


if __name__ == "__main__":
    main()
