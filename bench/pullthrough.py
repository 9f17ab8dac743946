"""Pull-through benchmark: depot's proxy repositories against nginx ``proxy_cache``, every format
of issues #14 (Maven, Go, Cargo), #15 (RubyGems, Composer, NuGet, Conan) and #17 (Debian, RPM,
Conda), one harness; the formats are rows of bench/pullthrough_trees.py.

Per format, in one run on the same machine:

* a counting static upstream (tests/upstream.py) serves a generated tree of the format: the index
  documents a client reads, and ``--files`` package files of mixed sizes;
* in front of it, depot (``--workers``) with a proxy repository of that format, and nginx
  (``worker_processes`` alike) with ``proxy_cache`` + ``proxy_cache_lock`` (the generic caching peer);
* cold x1: one client reads the index documents, then every file, from an empty cache;
* cold xC: ``--clients`` clients at once do the same against another empty cache; the upstream's
  request counts say how often each file was fetched (depot must fetch each once);
* warm: once filled (every depot answer must say ``X-Cache: HIT``), ``wrk`` cycles over all the
  paths for ``--duration`` seconds (``--connections``).

Rounds alternate depot and nginx (order flipped every round); medians and the depot/nginx ratios
(of times: nginx/depot, so > 1 means depot is faster; of throughput: depot/nginx) are printed.

Run from the repository root::

    .venv/bin/python bench/pullthrough.py [--only maven,go] [--files 40] [--rounds 3]
        [--clients 8] [--workers 2] [--duration 5] [--json out.json]

Every process is stopped by PID and the temporary directory removed at the end.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import pwd
import random
import shutil
import statistics
import sys
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))
from hit_throughput import (BenchError, Proc, cpu_seconds, free_port, run_guarded, run_wrk, say,  # noqa: E402
                            spawn, wait_http)
from pullthrough_trees import TREES, Pair, Tree  # noqa: E402  (puts tests/ on sys.path)
from depot_process import DepotProcess  # noqa: E402
from upstream import Upstream, start_upstream  # noqa: E402

KiB, MiB = 1024, 1 << 20
SIZES = [8 * KiB, 40 * KiB, 120 * KiB, 300 * KiB, 700 * KiB, 1500 * KiB, 3 * MiB]   # cycled over the files
TTL = 3600                    # metadata TTL (depot) and proxy_cache_valid (nginx): warm runs are pure hits

NGINX_CONF = """\
{user}worker_processes {workers};
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    proxy_cache_path {d}/cache levels=1:2 keys_zone=bench:20m max_size=4g inactive=1h use_temp_path=off;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    upstream origin {{ server {upstream}; keepalive 32; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_cache bench;
            proxy_cache_valid 200 {ttl}s;
            proxy_cache_valid 404 10s;
            proxy_ignore_headers Cache-Control Expires;
            proxy_cache_lock on;
            proxy_cache_lock_timeout 60s;
            proxy_cache_use_stale error timeout updating;
        }}
    }}
}}
"""


# --------------------------------------------------------------------------- servers

def start_nginx(work: Path, upstream: Upstream, workers: int) -> tuple[Proc, str]:
    """nginx proxy_cache in front of `upstream`; returns (proc, base URL)."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    work.mkdir(parents=True)
    port = free_port()
    # a root master's workers run as `nobody` and could not write the private cache
    user = f"user {pwd.getpwuid(os.geteuid()).pw_name};\n" if os.geteuid() == 0 else ""
    conf = work / "nginx.conf"
    conf.write_text(NGINX_CONF.format(user=user, workers=workers, d=work, port=port, ttl=TTL,
                                      upstream=f"127.0.0.1:{upstream.port}"))
    proc = spawn("nginx", [nginx, "-c", str(conf), "-e", str(work / "error.log")], work / "stdout.log")
    proc.log = work / "error.log"
    try:
        wait_http(port, "/_control/counts", proc, timeout=30)
    except BaseException:
        proc.stop()
        raise
    return proc, f"http://127.0.0.1:{port}"


@dataclass
class Server:
    """A proxy under test: where its paths live and how to stop it."""

    kind: str
    base: str                       # URL prefix the depot/nginx paths are appended to
    handle: Any

    def stop(self) -> None:
        self.handle.stop()

    def pid(self) -> int:
        """The server's main process (its workers are its descendants)."""
        return int(self.handle.pid if self.kind == "nginx" else self.handle.proc.pid)


def start_server(kind: str, fmt: str, tree: Tree, upstream: Upstream, work: Path, workers: int) -> Server:
    """A fresh depot proxy repository (empty cache) or a fresh nginx proxy_cache."""
    if kind == "nginx":
        proc, url = start_nginx(work, upstream, workers)
        return Server(kind, url + "/", proc)
    repo = {"format": fmt, "type": "proxy", "upstream": upstream.url + tree.upstream_suffix,
            "metadata_ttl": TTL, **tree.options}
    depot = DepotProcess(work, {"bench": repo}, workers=workers)
    return Server(kind, f"{depot.url}/bench/", depot)


def paths_of(kind: str, pairs: list[Pair]) -> list[str]:
    return [depot if kind == "depot" else up for depot, up in pairs]


# --------------------------------------------------------------------------- clients

async def one_client(session: aiohttp.ClientSession, base: str, meta: list[str], files: list[str],
                     xcache: Counter[str]) -> int:
    """Read the index documents in order, then every file; returns bytes read."""
    total = 0
    for path in meta + files:
        async with session.get(base + path) as resp:
            body = await resp.read()
            if resp.status != 200:
                raise BenchError(f"GET {base}{path}: {resp.status} {body[:300]!r}")
            xcache[resp.headers.get("X-Cache", "-")] += 1
            total += len(body)
    return total


async def clients(base: str, meta: list[str], files: list[str], count: int) -> tuple[float, Counter[str]]:
    """`count` clients at once (each on its own keep-alive connection); wall seconds and X-Cache tally."""
    xcache: Counter[str] = Counter()
    timeout = aiohttp.ClientTimeout(total=600)
    sessions = [aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1), timeout=timeout, trust_env=False)
                for _ in range(count)]
    try:
        t0 = time.monotonic()
        await asyncio.gather(*(one_client(s, base, meta, files, xcache) for s in sessions))
        return time.monotonic() - t0, xcache
    finally:
        await asyncio.gather(*(s.close() for s in sessions))


def wrk_script(work: Path, base: str, paths: list[str]) -> Path:
    """A wrk Lua script cycling over every path (each thread from its own offset)."""
    prefix = urlsplit(base).path
    listed = ",".join(json.dumps(prefix + p) for p in paths)
    script = work / f"paths-{random.randrange(1 << 30)}.lua"
    script.write_text(f"local paths = {{{listed}}}\nlocal i = 0\n"
                      "function setup(thread) thread:set('offset', math.random(#paths)) end\n"
                      "function init(args) i = offset or 0 end\n"
                      "function request() i = i % #paths + 1\n return wrk.format('GET', paths[i]) end\n")
    return script


# --------------------------------------------------------------------------- measuring

@dataclass
class Result:
    """All rounds of one format."""

    fmt: str
    files: int
    file_bytes: int
    cold1: dict[str, list[float]] = field(default_factory=lambda: {"depot": [], "nginx": []})
    coldc: dict[str, list[float]] = field(default_factory=lambda: {"depot": [], "nginx": []})
    warm_rps: dict[str, list[float]] = field(default_factory=lambda: {"depot": [], "nginx": []})
    warm_mibs: dict[str, list[float]] = field(default_factory=lambda: {"depot": [], "nginx": []})
    warm_cpu_us: dict[str, list[float]] = field(default_factory=lambda: {"depot": [], "nginx": []})
    hot_share: list[float] = field(default_factory=list)     # depot warm hits answered by the fast path
    upstream_total: dict[str, list[int]] = field(default_factory=lambda: {"depot": [], "nginx": []})
    upstream_files_max: dict[str, int] = field(default_factory=lambda: {"depot": 0, "nginx": 0})
    notes: list[str] = field(default_factory=list)


def upstream_counts(upstream: Upstream) -> Counter[str]:
    """GETs (plain and conditional) per upstream path since the last reset."""
    counts: Counter[str] = Counter()
    for key, n in upstream.counts().items():
        method, _, rest = key.partition(" ")
        if method in ("GET", "HEAD"):
            counts[rest.removesuffix(" (conditional)").lstrip("/")] += n
    return counts


def run_round(fmt: str, tree: Tree, upstream: Upstream, work: Path, args: argparse.Namespace,
              res: Result, kinds: list[str], rnd: int) -> None:
    """One round: cold x1, cold xC and warm for each kind, in the order given."""
    for kind in kinds:
        meta, files = paths_of(kind, tree.meta), paths_of(kind, tree.files)
        server = start_server(kind, fmt, tree, upstream, work / f"{kind}-{rnd}-1", args.workers)
        try:
            upstream.reset()
            seconds, _ = asyncio.run(clients(server.base, meta, files, 1))
            res.cold1[kind].append(seconds)
        finally:
            server.stop()
        server = start_server(kind, fmt, tree, upstream, work / f"{kind}-{rnd}-c", args.workers)
        try:
            upstream.reset()
            seconds, _ = asyncio.run(clients(server.base, meta, files, args.clients))
            res.coldc[kind].append(seconds)
            counts = upstream_counts(upstream)
            res.upstream_total[kind].append(sum(counts.values()))
            per_file = max((counts.get(up, 0) for _, up in tree.files), default=0)
            res.upstream_files_max[kind] = max(res.upstream_files_max[kind], per_file)
            _, tally = asyncio.run(clients(server.base, meta, files, 1))
            if kind == "depot" and set(tally) != {"HIT"}:
                res.notes.append(f"round {rnd}: depot warm pass X-Cache {dict(tally)}")
            hot0, cpu0 = hot_hits(server), cpu_seconds(server.pid())
            r = run_wrk(server.base, args, wrk_script(work, server.base, meta + files))
            res.warm_cpu_us[kind].append((cpu_seconds(server.pid()) - cpu0) / max(r.requests, 1) * 1e6)
            if kind == "depot":
                res.hot_share.append((hot_hits(server) - hot0) / max(r.requests, 1))
            res.warm_rps[kind].append(r.rps)
            res.warm_mibs[kind].append(r.mibs)
            if r.errors:
                res.notes.append(f"round {rnd} {kind} wrk: {r.errors}")
        finally:
            server.stop()
        say(f"{fmt} round {rnd} {kind}: cold x1 {res.cold1[kind][-1]:.2f}s, cold x{args.clients} "
            f"{res.coldc[kind][-1]:.2f}s (upstream GETs {res.upstream_total[kind][-1]}, max per file "
            f"{per_file}), warm {res.warm_rps[kind][-1]:,.0f} req/s {res.warm_mibs[kind][-1]:,.0f} MiB/s "
            f"(load {os.getloadavg()[0]:.1f})")
        shutil.rmtree(work / f"{kind}-{rnd}-1", ignore_errors=True)
        shutil.rmtree(work / f"{kind}-{rnd}-c", ignore_errors=True)


def hot_hits(server: Server) -> float:
    """depot_hot_hits_total of a depot (all repositories); 0 for nginx."""
    if server.kind != "depot":
        return 0.0
    base = server.base.rsplit("/bench/", 1)[0]
    with urllib.request.urlopen(base + "/-/metrics", timeout=30) as resp:
        text = resp.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("depot_hot_hits_total{"))


def run_format(fmt: str, work: Path, args: argparse.Namespace, started: list[Any]) -> Result:
    """Build the format's tree, start its upstream, measure every round."""
    root = work / fmt / "tree"
    root.mkdir(parents=True)
    upstream = start_upstream(root)
    started.append(upstream)
    sizes = [SIZES[i % len(SIZES)] for i in range(args.files)]
    tree = TREES[fmt](root, upstream.url, sizes)
    res = Result(fmt, len(tree.files), sum((root / up).stat().st_size for _, up in tree.files))
    say(f"{fmt}: {len(tree.meta)} index documents, {len(tree.files)} files, {res.file_bytes / MiB:.1f} MiB")
    for rnd in range(1, args.rounds + 1):
        kinds = ["depot", "nginx"] if rnd % 2 else ["nginx", "depot"]
        run_round(fmt, tree, upstream, work / fmt, args, res, kinds, rnd)
    upstream.stop()
    started.remove(upstream)
    return res


# --------------------------------------------------------------------------- reporting

def med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def print_table(results: list[Result], args: argparse.Namespace) -> None:
    """One row per format: medians and depot-vs-nginx ratios (> 1: depot better)."""
    print(f"\npull-through, depot --workers {args.workers} vs nginx proxy_cache (worker_processes "
          f"{args.workers}), {args.rounds} rounds alternated, medians; cold x{args.clients}: "
          f"{args.clients} clients at once; warm: wrk -t{args.threads} -c{args.connections} "
          f"-d{args.duration}s over every path; speed-up = nginx time / depot time, "
          f"warm = depot / nginx req/s; {os.cpu_count()} CPUs")
    head = ("format", "files", "MiB", "cold x1 d/n s", "speed-up", f"cold x{args.clients} d/n s", "speed-up",
            "upstream GETs d/n", "max GETs/file d/n", "warm req/s d/n", "warm ratio", "CPU/req d/n", "hot")
    rows = [head]
    for r in results:
        c1d, c1n, ccd, ccn = med(r.cold1["depot"]), med(r.cold1["nginx"]), med(r.coldc["depot"]), med(r.coldc["nginx"])
        wd, wn = med(r.warm_rps["depot"]), med(r.warm_rps["nginx"])
        rows.append((r.fmt, str(r.files), f"{r.file_bytes / MiB:.1f}", f"{c1d:.2f}/{c1n:.2f}", f"{c1n / c1d:.2f}x",
                     f"{ccd:.2f}/{ccn:.2f}", f"{ccn / ccd:.2f}x",
                     f"{med(r.upstream_total['depot']):.0f}/{med(r.upstream_total['nginx']):.0f}",
                     f"{r.upstream_files_max['depot']}/{r.upstream_files_max['nginx']}",
                     f"{wd:,.0f}/{wn:,.0f}", f"{wd / wn:.2f}x",
                     f"{med(r.warm_cpu_us['depot']):.0f}/{med(r.warm_cpu_us['nginx']):.0f} µs",
                     f"{med(r.hot_share):.0%}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    for row in rows:
        print("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))))
    for r in results:
        for note in r.notes:
            print(f"  note {r.fmt}: {note}")
        if r.upstream_files_max["depot"] > 1:
            print(f"  note {r.fmt}: depot fetched a file {r.upstream_files_max['depot']} times under concurrency")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="depot pull-through vs nginx proxy_cache, per format")
    ap.add_argument("--only", default=",".join(TREES), help="comma-separated formats (default: all)")
    ap.add_argument("--files", type=int, default=40, help="package files per format")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--clients", type=int, default=8, help="concurrent clients of the cold xC phase")
    ap.add_argument("--workers", type=int, default=2, help="depot --workers and nginx worker_processes")
    ap.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    ap.add_argument("--threads", type=int, default=2, help="wrk -t")
    ap.add_argument("--connections", type=int, default=16, help="wrk -c")
    ap.add_argument("--json", type=Path, help="also write the results to this JSON file")
    args = ap.parse_args(argv)
    args.only = [f.strip() for f in args.only.split(",") if f.strip()]
    unknown = [f for f in args.only if f not in TREES]
    if unknown:
        ap.error(f"unknown format(s) {', '.join(unknown)}; known: {', '.join(TREES)}")
    return args


def run(args: argparse.Namespace, work: Path, started: list[Any]) -> None:
    for tool in ("nginx", "wrk"):
        if not (shutil.which(tool) or os.access(f"/usr/sbin/{tool}", os.X_OK)):
            raise BenchError(f"missing {tool}: apt-get install -y {tool}")
    work.chmod(0o755)
    results = []
    for fmt in args.only:
        try:
            results.append(run_format(fmt, work, args, started))
        except Exception as exc:  # one format failing must not hide the others' figures
            say(f"{fmt}: FAILED: {exc}")
            results_failed = Result(fmt, 0, 0, notes=[f"failed: {str(exc)[:500]}"])
            results.append(results_failed)
        for item in [s for s in started if isinstance(s, Upstream)]:
            item.stop()
            started.remove(item)
    print_table([r for r in results if r.files], args)
    for r in results:
        if not r.files:
            print(f"  {r.fmt}: {r.notes[0]}")
    if args.json:
        args.json.write_text(json.dumps([r.__dict__ for r in results], indent=1) + "\n")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_guarded("pullthrough", lambda work, started: run(args, work, started), "depot-pullthrough-",
                       (BenchError,))


if __name__ == "__main__":
    sys.exit(main())
