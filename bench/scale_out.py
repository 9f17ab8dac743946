"""Scale-out benchmark: depot nodes on one PostgreSQL and one Ceph RGW (started here, stopped by PID).

    .venv/bin/python bench/scale_out.py [--big-mib 100] [--fill-mib 200] [--clients 30]

1. cache hits of 1 MiB and BIG MiB blobs from 1 node vs 3 nodes, through depot streaming (without
   and with `storage.local_cache`, the node-local disk tier) and through `storage.redirect: true`
   (followed by the client), against the same bytes read straight from Ceph with obstore (the
   client depot uses) in the same run;
2. a cold fill of FILL MiB by CLIENTS clients spread over 3 nodes vs on 1 node: upstream GETs and
   time to last byte;
3. peak RSS per node (VmHWM of each depot process, workers included).
"""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import scale_services  # noqa: E402
from depot_process import DepotProcess  # noqa: E402
from upstream import start_upstream  # noqa: E402

MiB = 1024 * 1024


def nodes(count: int, work: Path, pg: Any, ceph: Any, url: str, prefix: str, upstream: Any,
          redirect: bool = False, local_cache: bool = False) -> list[DepotProcess]:
    storage: dict[str, Any] = {"kind": "s3", "endpoint": ceph.endpoint, "bucket": "bench", "prefix": prefix,
                               "access_key": ceph.access_key, "secret_key": ceph.secret_key, "redirect": redirect}
    if local_cache:
        storage["local_cache"] = {"max_size": "2GiB"}
    repos = {"local": {"format": "generic", "type": "hosted"},
             "remote": {"format": "generic", "type": "proxy", "upstream": upstream.url + "/"}}
    return [DepotProcess(work / f"{prefix}-{i}-{uuid.uuid4().hex[:4]}", repos, workers=2,
                         extra={"storage": storage, "database": {"url": url}, "access_log": False})
            for i in range(count)]


def parallel_get(urls: list[str]) -> tuple[float, list[float]]:
    """GET all at once; (wall seconds, time to last byte of each)."""
    done: list[float] = [0.0] * len(urls)
    start = time.monotonic()

    def one(i: int, url: str) -> None:
        with requests.get(url, stream=True, timeout=600) as answer:
            for _ in answer.iter_content(MiB):
                pass
            answer.raise_for_status()
        done[i] = time.monotonic() - start
    threads = [threading.Thread(target=one, args=(i, u)) for i, u in enumerate(urls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.monotonic() - start, done


def hit_rate(node_list: list[DepotProcess], path: str, size: int, rounds: int, clients: int = 6) -> float:
    urls = [f"{node_list[i % len(node_list)].url}{path}" for i in range(clients)]
    best = 0.0
    for _ in range(rounds):
        wall, _ = parallel_get(urls)
        best = max(best, clients * size / MiB / wall)
    return best


def direct_rate(ceph: Any, prefix: str, digest: str, size: int, rounds: int, clients: int = 6) -> float:
    from depot.cache.blobs_s3 import S3BlobStore, S3Settings
    store = S3BlobStore(Path(tempfile.mkdtemp()), S3Settings(ceph.endpoint, "bench", access_key=ceph.access_key,
                                                             secret_key=ceph.secret_key, prefix=prefix))

    async def one() -> None:
        async for _ in store.read_chunks(digest, chunk_size=MiB):
            pass

    async def run() -> float:
        start = time.monotonic()
        await asyncio.gather(*(one() for _ in range(clients)))
        return time.monotonic() - start
    return max(clients * size / MiB / asyncio.run(run()) for _ in range(rounds))


def warm_tier(node_list: list[DepotProcess], path: str, digest: str) -> None:
    """One hit per node, then wait until every node's local cache holds the blob."""
    for node in node_list:
        requests.get(node.url + path, timeout=600).raise_for_status()
    deadline = time.monotonic() + 120
    for node in node_list:
        while not (node.data_dir / "blob-cache" / digest[:2] / digest).exists():
            if time.monotonic() > deadline:
                raise RuntimeError(f"{node.url}: the local cache was not filled")
            time.sleep(0.1)


def peak_rss_mib(node: DepotProcess) -> float:
    """VmHWM of the node's processes (the serve process and its workers), the largest."""
    assert node.proc is not None
    pids = [node.proc.pid]
    for task in Path(f"/proc/{node.proc.pid}/task").glob("*"):
        children = (task / "children")
        if children.exists():
            pids += [int(p) for p in children.read_text().split()]
    peak = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                peak = max(peak, int(line.split()[1]))
    return peak / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--big-mib", type=int, default=100)
    parser.add_argument("--fill-mib", type=int, default=200)
    parser.add_argument("--clients", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--hits-only", action="store_true", help="skip the cold fill")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="depot-scale-bench-"))
    pg, ceph = scale_services.start_postgres(), scale_services.start_ceph()
    upstream = start_upstream(work / "up")
    started: list[DepotProcess] = []
    try:
        import hashlib
        url, prefix = pg.new_database(), "b"
        three = nodes(3, work, pg, ceph, url, prefix, upstream)
        one = three[:1]
        redirecting = nodes(1, work, pg, ceph, url, prefix, upstream, redirect=True)
        cached = nodes(3, work, pg, ceph, url, prefix, upstream, local_cache=True)
        started += three + redirecting + cached
        print(f"{'hits':12} {'1 node':>8} {'3 nodes':>8} {'1 +cache':>9} {'3 +cache':>9} {'redirect':>9}"
              f" {'ceph direct':>12}  MiB/s")
        for label, size in (("1 MiB", MiB), (f"{args.big_mib} MiB", args.big_mib * MiB)):
            data = os.urandom(size)
            digest = hashlib.sha256(data).hexdigest()
            path = f"/local/hit-{size}.bin"
            assert requests.put(three[0].url + path, data=data, timeout=600).status_code == 201
            warm_tier(cached, path, digest)
            rounds = args.rounds if size > MiB else args.rounds * 3
            f = (hit_rate(one, path, size, rounds), hit_rate(three, path, size, rounds),
                 hit_rate(cached[:1], path, size, rounds), hit_rate(cached, path, size, rounds),
                 hit_rate(redirecting, path, size, rounds), direct_rate(ceph, prefix, digest, size, rounds))
            print(f"{label:12} {f[0]:8.1f} {f[1]:8.1f} {f[2]:9.1f} {f[3]:9.1f} {f[4]:9.1f} {f[5]:12.1f}"
                  f"   depot/direct {f[0] / f[5]:.2f}x, with local cache {f[2] / f[5]:.2f}x;"
                  f" 3 nodes/1 node {f[1] / f[0]:.2f}x")
        if args.hits_only:
            return
        fill = os.urandom(args.fill_mib * MiB)
        results = {}
        for label, group in (("1 node", one), ("3 nodes", three)):
            name = f"fill-{label[0]}.bin"
            upstream.put(name, fill)
            upstream.mode(f"/{name}", "slow", rate=100 * MiB)
            wall, lasts = parallel_get([f"{group[i % len(group)].url}/remote/{name}" for i in range(args.clients)])
            results[label] = (upstream.count(f"/{name}"), max(lasts))
            print(f"cold fill {args.fill_mib} MiB x {args.clients} clients on {label}: "
                  f"upstream GETs {results[label][0]}, last byte after {results[label][1]:.1f}s")
        print(f"time to last byte, 3 nodes / 1 node: {results['3 nodes'][1] / results['1 node'][1]:.2f}x")
        print("peak RSS per node (MiB): " + ", ".join(f"{peak_rss_mib(n):.0f}" for n in started))
    finally:
        for node in started:
            node.stop()
        upstream.stop()
        scale_services.stop_ceph(ceph)
        scale_services.stop_postgres(pg)


if __name__ == "__main__":
    main()
