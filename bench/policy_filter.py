"""What the supply-chain policy costs on the hit path: a 20 MB npm packument served from cache by a
proxy with a cooldown (filtered) against the same packument from a proxy without rules, same
depot process, same run. Target (issue 18): filtered within 1.2x of unfiltered.

    .venv/bin/python bench/policy_filter.py [--requests 40] [--rounds 3]

Everything runs on 127.0.0.1; the processes it starts are stopped by PID at the end.
"""
from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from depot_process import DepotProcess  # noqa: E402
from upstream import start_upstream  # noqa: E402


def packument(size: int) -> dict[str, object]:
    """About `size` bytes: 400 versions with padding, the newest published an hour ago."""
    now = datetime.now(timezone.utc)
    versions, times = {}, {}
    for i in range(400):
        version = f"1.{i}.0"
        versions[version] = {"name": "big", "version": version, "readme": "x" * (size // 400),
                             "dist": {"tarball": f"http://127.0.0.1/big/-/big-{version}.tgz",
                                      "shasum": "0" * 40}}
        times[version] = (now - timedelta(days=400 - i) if i < 399 else now - timedelta(hours=1)).isoformat()
    return {"name": "big", "dist-tags": {"latest": "1.399.0"}, "versions": versions, "time": times}


def timed_gets(port: int, path: str, count: int) -> float:
    """Seconds for `count` sequential GETs on one keep-alive connection (bodies read whole)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    started = time.perf_counter()
    for _ in range(count):
        conn.request("GET", path, headers={"Accept": "application/json"})
        response = conn.getresponse()
        body = response.read()
        assert response.status == 200 and len(body) > 1_000_000, (response.status, len(body))
    conn.close()
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="depot-policy-bench-") as tmp:
        work = Path(tmp)
        (work / "up").mkdir()
        upstream = start_upstream(work / "up")
        depot = None
        try:
            upstream.put("big", json.dumps(packument(20 * 2**20)).encode())
            repos = {"plain": {"format": "npm", "type": "proxy", "upstream": upstream.url + "/"},
                     "gated": {"format": "npm", "type": "proxy", "upstream": upstream.url + "/",
                               "policy": {"cooldown": "3d"}}}
            depot = DepotProcess(work / "depot", repos)
            port = depot.port
            for repo in repos:                         # fill both caches first
                timed_gets(port, f"/{repo}/big", 2)
            runs: dict[str, list[float]] = {"plain": [], "gated": []}
            for _ in range(args.rounds):
                for repo in ("plain", "gated"):
                    runs[repo].append(args.requests / timed_gets(port, f"/{repo}/big", args.requests))
            plain, gated = statistics.median(runs["plain"]), statistics.median(runs["gated"])
            print(f"20 MB packument from cache, {args.requests} GETs x {args.rounds} rounds (medians):")
            print(f"  unfiltered: {plain:8.1f} req/s")
            print(f"  filtered:   {gated:8.1f} req/s   cost {plain / gated:.2f}x (target <= 1.20x)")
        finally:
            if depot is not None:
                depot.stop()
            upstream.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
