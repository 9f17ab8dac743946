"""Hit-path benchmark: depot's cache hits against nginx serving the same files from disk.

One run, same machine, same files (1 KiB, 1 MiB, 100 MiB):

* nginx (Debian package) with a private config: ``sendfile on``, ``worker_processes N``;
* a static upstream (tests/upstream.py) and depot ``--workers N`` with a generic proxy
  repository pointing at it, warmed with one GET per file (a second GET must say
  ``X-Cache: HIT`` and return the same bytes);
* ``wrk`` runs interleaved depot/nginx/depot/nginx for each size; medians are reported with
  the ratio depot/nginx against the targets from DESIGN.md;
* depot's RSS (master + children, ``VmRSS``) while 8 clients download the 100 MiB file.

Run from the repository root::

    .venv/bin/python bench/hit_throughput.py [--depot .venv/bin/depot] [--duration 5]
        [--rounds 3] [--workers 2] [--nginx-only]

Every process it starts is stopped by PID and its temporary directory removed at the end.
"""
from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "tests"))
from upstream import start_upstream  # noqa: E402

MiB = 1 << 20
SIZES: list[tuple[str, str, int, float]] = [      # label, file name, bytes, target ratio
    ("1 KiB", "f1k.bin", 1024, 0.40),              # targets of issue #12 (depot's defaults)
    ("1 MiB", "f1m.bin", MiB, 0.80),
    ("100 MiB", "f100m.bin", 100 * MiB, 0.95),
]
RSS_TARGET_MIB = 20
BY_BYTES_FROM = 16 * MiB
RSS_CLIENTS = 8


def say(msg: str) -> None:
    """A progress line."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


class BenchError(RuntimeError):
    """A problem that ends the benchmark with a clear message."""


# --------------------------------------------------------------------------- processes

@dataclass
class Proc:
    """A process this benchmark started, stopped by its PID only."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path | None = None

    @property
    def pid(self) -> int:
        return self.popen.pid

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        """Signal the process, wait, and kill it if it lingers."""
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=timeout)

    def log_tail(self, lines: int = 20) -> str:
        """The end of the process log, for error messages."""
        if self.log is None or not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def spawn(name: str, argv: list[str], log: Path, cwd: Path | None = None) -> Proc:
    """Start `argv` with stdout and stderr in `log`."""
    with log.open("wb") as out:
        popen = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, cwd=cwd)
    return Proc(name, popen, log)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def children_of(pid: int) -> list[int]:
    """All descendants of `pid` (scan of /proc by parent PID)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        kids = parents.get(todo.pop(), [])
        found.extend(kids)
        todo.extend(kids)
    return found


def rss_kib(pids: list[int]) -> int:
    """Sum of VmRSS (KiB) over `pids` that still exist."""
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
                    break
        except OSError:
            pass
    return total


def wait_http(port: int, path: str, proc: Proc, timeout: float = 30.0) -> None:
    """Poll GET `path` until it answers 200; fail early if `proc` died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise BenchError(f"{proc.name} exited with {proc.popen.returncode}:\n"
                             f"{proc.log_tail()}")
        try:
            status, _, _ = http_get(port, path, timeout=2)
            if status == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise BenchError(f"{proc.name} not ready on :{port}{path} after {timeout:.0f}s:\n"
                     f"{proc.log_tail()}")


def http_get(port: int, path: str, timeout: float = 60.0) -> tuple[int, dict[str, str], str]:
    """GET on 127.0.0.1:`port`; returns status, headers and the sha256 of the body."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        digest = hashlib.sha256()
        while block := resp.read(MiB):
            digest.update(block)
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, digest.hexdigest()
    finally:
        conn.close()


# --------------------------------------------------------------------------- servers

def make_files(root: Path) -> dict[str, str]:
    """Create the benchmark files under `root`; returns name -> sha256."""
    root.mkdir(parents=True, exist_ok=True)
    sums = {}
    for _, name, size, _ in SIZES:
        digest = hashlib.sha256()
        with (root / name).open("wb") as f:
            left = size
            while left:
                block = os.urandom(min(left, 4 * MiB))
                f.write(block)
                digest.update(block)
                left -= len(block)
        (root / name).chmod(0o644)
        sums[name] = digest.hexdigest()
    return sums


NGINX_CONF = """\
worker_processes {workers};
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    default_type application/octet-stream;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {files};
        location / {{ }}
    }}
}}
"""


def start_nginx(nginx: str, work: Path, files: Path, workers: int) -> tuple[Proc, int]:
    """nginx in the foreground (daemon off) with a private config; returns (proc, port)."""
    d = work / "nginx"
    d.mkdir()
    port = free_port()
    conf = d / "nginx.conf"
    conf.write_text(NGINX_CONF.format(workers=workers, d=d, port=port, files=files))
    proc = spawn("nginx", [nginx, "-c", str(conf), "-e", str(d / "error.log")],
                 d / "stdout.log")
    proc.log = d / "error.log"
    wait_http(port, "/" + SIZES[0][1], proc)
    return proc, port


DEPOT_CONF = """\
access_log: {access_log}   # default true (depot's defaults); --no-access-log: like nginx's `access_log off`
repositories:
  bench:
    format: generic
    type: proxy
    upstream: "{upstream}/"
"""


def start_depot(depot: str, work: Path, upstream_url: str, workers: int,
                access_log: bool = True, name: str = "depot") -> tuple[Proc, int]:
    """depot serve with one generic proxy repository `bench`; returns (proc, port)."""
    d = work / name
    d.mkdir()
    (d / "depot.yaml").write_text(DEPOT_CONF.format(upstream=upstream_url,
                                                    access_log="true" if access_log else "false"))
    port = free_port()
    proc = spawn("depot", [depot, "serve", "--config", str(d / "depot.yaml"), "--data",
                           str(d / "data"), "--listen", f"127.0.0.1:{port}",
                           "--workers", str(workers)], d / "depot.log", cwd=d)
    wait_http(port, "/-/healthz", proc, timeout=60)
    return proc, port


def warm_depot(port: int, sums: dict[str, str]) -> None:
    """One GET per file to fill the cache, then a GET that must be a byte-exact HIT."""
    for label, name, _, _ in SIZES:
        status, _, _ = http_get(port, f"/bench/{name}")
        if status != 200:
            raise BenchError(f"warm-up GET /bench/{name} answered {status}")
        status, headers, digest = http_get(port, f"/bench/{name}")
        cache = headers.get("x-cache", "<none>")
        if status != 200 or not cache.upper().startswith("HIT") or digest != sums[name]:
            raise BenchError(f"second GET /bench/{name}: status {status}, X-Cache {cache}, "
                             f"body {'ok' if digest == sums[name] else 'DIFFERENT'}")
        say(f"depot warm: {label} -> X-Cache {cache}, body matches")


# --------------------------------------------------------------------------- measuring

@dataclass
class WrkResult:
    """One wrk run."""

    rps: float
    mibs: float                               # wrk Transfer/sec: bytes read, partial bodies too
    errors: str = ""
    requests: int = 0
    cpu_us: float = 0.0                       # server CPU (user+system, all its processes) per request


def run_wrk(url: str, args: argparse.Namespace, script: Path | None = None) -> WrkResult:
    """`wrk` against `url` (wrapped in `timeout`), with a Lua `script` if given; parses
    Requests/sec and error lines."""
    argv = ["timeout", str(args.duration + 30), "wrk", f"-t{args.threads}",
            f"-c{args.connections}", f"-d{args.duration}s", "--timeout", "30s",
            *(["-s", str(script)] if script else []), url]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=args.duration + 60)
    m = re.search(r"Requests/sec:\s*([\d.]+)", out.stdout)
    if out.returncode != 0 or not m:
        raise BenchError(f"wrk failed (rc {out.returncode}): {out.stdout}{out.stderr}")
    errors = [line.strip() for line in out.stdout.splitlines()
              if line.strip().startswith(("Socket errors", "Non-2xx"))]
    t = re.search(r"Transfer/sec:\s*([\d.]+)([KMGT]?)B", out.stdout)
    scale = {"": 1 / MiB, "K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 * 1024}
    mibs = float(t.group(1)) * scale[t.group(2)] if t else 0.0
    n = re.search(r"(\d+) requests in", out.stdout)
    return WrkResult(float(m.group(1)), mibs, "; ".join(errors), int(n.group(1)) if n else 0)


def cpu_seconds(pid: int) -> float:
    """utime + stime of `pid` and its descendants (0 for processes gone)."""
    total = 0.0
    for p in [pid, *children_of(pid)]:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


@dataclass
class SizeResult:
    """All runs for one file size."""

    label: str
    size: int
    target: float
    depot: list[WrkResult] = field(default_factory=list)
    nginx: list[WrkResult] = field(default_factory=list)
    base: list[WrkResult] = field(default_factory=list)       # --baseline-depot, when given
    errors: list[str] = field(default_factory=list)

    @property
    def by_bytes(self) -> bool:
        """Big files complete few requests per run: compare bytes/s, not requests/s."""
        return self.size >= BY_BYTES_FROM

    def basis(self, server: str) -> list[float]:
        """The per-round figures the ratio is computed on."""
        runs: list[WrkResult] = getattr(self, server)
        return [r.mibs if self.by_bytes else r.rps for r in runs]


def measure(ports: dict[str, int], args: argparse.Namespace,
            pids: dict[str, int] | None = None) -> list[SizeResult]:
    """Interleave depot/nginx runs (`rounds` each) for every size."""
    results = []
    for label, name, size, target in SIZES:
        if args.sizes and label not in args.sizes:
            continue
        res = SizeResult(label, size, target)
        for rnd in range(1, args.rounds + 1):
            for server in ("depot", "base", "nginx"):
                if server not in ports:
                    continue
                path = f"/{name}" if server == "nginx" else f"/bench/{name}"
                cpu0 = cpu_seconds(pids[server]) if pids else 0.0
                r = run_wrk(f"http://127.0.0.1:{ports[server]}{path}", args)
                if pids and r.requests:
                    r.cpu_us = (cpu_seconds(pids[server]) - cpu0) / r.requests * 1e6
                getattr(res, server).append(r)
                if r.errors:
                    res.errors.append(f"{server} round {rnd}: {r.errors}")
                say(f"{label:>7} round {rnd}/{args.rounds} {server}: {r.rps:,.1f} req/s, "
                    f"{r.mibs:,.1f} MiB/s, {r.cpu_us:,.1f} CPU us/req (load {os.getloadavg()[0]:.1f})"
                    f"{'  ' + r.errors if r.errors else ''}")
        results.append(res)
    return results


@dataclass
class RssResult:
    """depot's summed RSS (KiB) around concurrent big downloads."""

    before: int
    peak: int
    after: int
    pids: int
    seconds: float
    failures: int
    samples: int


def measure_rss(depot: Proc, port: int, args: argparse.Namespace) -> RssResult:
    """RSS of depot master + children while RSS_CLIENTS curls fetch the 100 MiB file."""
    pids = [depot.pid, *children_of(depot.pid)]
    before = rss_kib(pids)
    samples: list[int] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            samples.append(rss_kib(pids))
            stop.wait(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    url = f"http://127.0.0.1:{port}/bench/{SIZES[-1][1]}"
    argv = ["curl", "-sS", "--noproxy", "*", "--max-time", "300",
            "-w", "%{http_code} %{size_download}\\n"] + ["-o", "/dev/null"] * args.rss_repeat
    if args.rss_rate:
        argv += ["--limit-rate", args.rss_rate]
    argv += [url] * args.rss_repeat
    t0 = time.monotonic()
    sampler.start()
    with ExitStack() as stack:
        curls = [stack.enter_context(subprocess.Popen(argv, stdout=subprocess.PIPE, text=True))
                 for _ in range(RSS_CLIENTS)]
        outs = [c.communicate(timeout=320)[0] for c in curls]
    seconds = time.monotonic() - t0
    stop.set()
    sampler.join()
    ok = f"200 {SIZES[-1][2]}"
    failures = sum(line.strip() != ok for out in outs for line in out.splitlines())
    failures += sum(len(out.splitlines()) != args.rss_repeat for out in outs)
    time.sleep(0.5)
    return RssResult(before, max([before, *samples]), rss_kib(pids), len(pids), seconds,
                     failures, len(samples))


# --------------------------------------------------------------------------- reporting

def fmt_ratio(res: SizeResult) -> tuple[str, str, str]:
    """(ratio of medians, median of per-round ratios, verdict) for one size."""
    depot, nginx = res.basis("depot"), res.basis("nginx")
    if not depot or not nginx or not statistics.median(nginx):
        return "-", "-", "-"
    ratio = statistics.median(depot) / statistics.median(nginx)
    paired = statistics.median([d / n for d, n in zip(depot, nginx) if n] or [0.0])
    return f"{ratio:.2f}x", f"{paired:.2f}x", "ok" if ratio >= res.target else "BELOW"


def print_table(results: list[SizeResult], args: argparse.Namespace) -> None:
    """Medians per size with ratio and target."""
    def med(runs: list[WrkResult], attr: str) -> str:
        xs = [getattr(r, attr) for r in runs]
        return f"{statistics.median(xs):,.{1 if attr == 'mibs' else 0}f}" if xs else "-"

    print()
    print("depot/nginx = ratio of the medians (of req/s; of MiB/s from "
          f"{BY_BYTES_FROM // MiB} MiB up); (paired) = median of the per-round ratios")
    print(f"hit throughput: wrk -t{args.threads} -c{args.connections} -d{args.duration}s, "
          f"{args.rounds} rounds interleaved, medians; depot --workers {args.workers}, "
          f"nginx worker_processes {args.workers}; {os.cpu_count()} CPUs")
    head = ("size", "depot req/s", "nginx req/s", "depot MiB/s", "nginx MiB/s",
            "depot/nginx", "(paired)", "target", "")
    rows = [head]
    for r in results:
        ratio, paired, verdict = fmt_ratio(r)
        rows.append((r.label, med(r.depot, "rps"), med(r.nginx, "rps"), med(r.depot, "mibs"),
                     med(r.nginx, "mibs"), ratio, paired, f">={r.target:.2f}x", verdict))
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    for row in rows:
        print("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in
                        enumerate(zip(row, widths))).rstrip())
    for r in results:
        for e in r.errors:
            print(f"  note {r.label}: {e}")
        if r.depot or r.nginx:
            unit = "MiB/s" if r.by_bytes else "req/s"
            print(f"  runs {r.label} ({unit}): depot {[round(x) for x in r.basis('depot')]}"
                  f" nginx {[round(x) for x in r.basis('nginx')]}")
            cpu = {k: statistics.median([x.cpu_us for x in getattr(r, k)] or [0.0])
                   for k in ("depot", "base", "nginx")}
            if cpu["depot"] and cpu["nginx"]:
                print(f"  server CPU per request {r.label} (median, load-independent): depot {cpu['depot']:,.1f} us, "
                      f"nginx {cpu['nginx']:,.1f} us: nginx/depot {cpu['nginx'] / cpu['depot']:.2f}x")
            if r.base and cpu["base"]:
                base = r.base
                ratio = statistics.median([b.mibs if r.by_bytes else b.rps for b in base]) / \
                    statistics.median(r.basis("nginx"))
                paired = statistics.median([(b.mibs if r.by_bytes else b.rps) / n
                                            for b, n in zip(base, r.basis("nginx")) if n])
                print(f"  baseline depot {r.label}: {[round(b.mibs if r.by_bytes else b.rps) for b in base]}, "
                      f"base/nginx {ratio:.2f}x (paired {paired:.2f}x); CPU {cpu['base']:,.1f} us/req: "
                      f"nginx/base {cpu['nginx'] / cpu['base']:.2f}x")


def print_rss(rss: RssResult, args: argparse.Namespace) -> None:
    """Before/peak/after RSS and the growth against the target."""
    growth = (rss.peak - rss.before) / 1024
    rate = f", --limit-rate {args.rss_rate}" if args.rss_rate else ""
    print(f"\ndepot RSS ({rss.pids} processes) during {RSS_CLIENTS} concurrent curl x "
          f"{args.rss_repeat} downloads of 100 MiB{rate} ({rss.seconds:.1f}s, "
          f"{rss.failures} failed, {rss.samples} samples):")
    print(f"  before {rss.before / 1024:.1f} MiB, peak {rss.peak / 1024:.1f} MiB, "
          f"after {rss.after / 1024:.1f} MiB; growth {growth:+.1f} MiB "
          f"(target < {RSS_TARGET_MIB} MiB: {'ok' if growth < RSS_TARGET_MIB else 'ABOVE'})")


def write_json(path: Path, results: list[SizeResult], rss: RssResult | None,
               args: argparse.Namespace) -> None:
    """The raw runs, medians and RSS figures as JSON."""
    doc = {"options": {k: (str(v) if isinstance(v, Path) else v)
                       for k, v in vars(args).items()},
           "cpus": os.cpu_count(), "sizes": [], "rss_kib": asdict(rss) if rss else None}
    for r in results:
        row = asdict(r)
        depot, nginx = r.basis("depot"), r.basis("nginx")
        row["basis"] = "MiB/s" if r.by_bytes else "req/s"
        row["ratio"] = (statistics.median(depot) / statistics.median(nginx)
                        if depot and nginx and statistics.median(nginx) else None)
        doc["sizes"].append(row)
    path.write_text(json.dumps(doc, indent=2) + "\n")
    say(f"results written to {path}")


# --------------------------------------------------------------------------- main

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command line options."""
    ap = argparse.ArgumentParser(description="depot hit-path throughput against nginx")
    ap.add_argument("--depot", default=str(REPO_ROOT / ".venv/bin/depot"),
                    help="depot executable (default: %(default)s)")
    ap.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    ap.add_argument("--rounds", type=int, default=3, help="runs per server and size")
    ap.add_argument("--workers", type=int, default=2, help="depot --workers / nginx workers")
    ap.add_argument("--threads", type=int, default=2, help="wrk -t")
    ap.add_argument("--connections", type=int, default=16, help="wrk -c")
    ap.add_argument("--rss-repeat", type=int, default=3,
                    help="downloads per curl client in the RSS test")
    ap.add_argument("--rss-rate", default="", help="curl --limit-rate for the RSS test")
    ap.add_argument("--nginx-only", action="store_true",
                    help="measure nginx alone (depot not started)")
    ap.add_argument("--no-access-log", action="store_true",
                    help="turn depot's access log off (default: on, as depot's defaults; nginx's stays off)")
    ap.add_argument("--json", type=Path, help="also write the results to this JSON file")
    ap.add_argument("--sizes", type=lambda v: [x.strip() for x in v.split(",")], default=[],
                    help='measure only these sizes, e.g. "1 KiB,1 MiB" (default: all)')
    ap.add_argument("--no-rss", action="store_true", help="skip the RSS test")
    ap.add_argument("--baseline-depot", help="another depot executable (e.g. the code before a change), "
                    "measured in the same rounds as `base`")
    return ap.parse_args(argv)


def check_tools(args: argparse.Namespace) -> str:
    """Path of nginx; fail clearly when nginx, wrk, curl or depot is missing."""
    nginx = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None)
    missing = [t for t, p in (("nginx", nginx), ("wrk", shutil.which("wrk")),
                              ("curl", shutil.which("curl")),
                              ("timeout", shutil.which("timeout"))) if not p]
    if missing:
        raise BenchError(f"missing {', '.join(missing)}: "
                         f"apt-get install -y {' '.join(missing)}")
    if not args.nginx_only and not os.access(args.depot, os.X_OK):
        raise BenchError(f"depot executable not found at {args.depot} "
                         "(pip install -e . into .venv, pass --depot, or use --nginx-only)")
    assert nginx is not None
    return nginx


def run(args: argparse.Namespace, work: Path, procs: list[Proc]) -> None:
    """Set up servers inside `work`, measure, report. Started processes go to `procs`."""
    nginx = check_tools(args)
    load1 = os.getloadavg()[0]
    if load1 > 0.5:
        say(f"warning: load average {load1:.2f} before starting; other work on this machine "
            "skews the numbers (compare the per-round runs below)")
    files = work / "files"
    say(f"creating files in {files}")
    sums = make_files(files)
    work.chmod(0o755)
    files.chmod(0o755)
    ng, ng_port = start_nginx(nginx, work, files, args.workers)
    procs.append(ng)
    say(f"nginx pid {ng.pid} on 127.0.0.1:{ng_port}")
    ports = {"nginx": ng_port}
    pids = {"nginx": ng.pid}
    depot = None
    if not args.nginx_only:
        up = start_upstream(files)
        procs.append(Proc("upstream", up.proc))
        say(f"upstream pid {up.proc.pid} at {up.url}")
        depot, ports["depot"] = start_depot(args.depot, work, up.url, args.workers, not args.no_access_log)
        procs.append(depot)
        pids["depot"] = depot.pid
        say(f"depot pid {depot.pid} (+{len(children_of(depot.pid))} children) "
            f"on 127.0.0.1:{ports['depot']}")
        warm_depot(ports["depot"], sums)
        if args.baseline_depot:
            base, ports["base"] = start_depot(args.baseline_depot, work, up.url, args.workers,
                                              not args.no_access_log, name="base")
            procs.append(base)
            pids["base"] = base.pid
            warm_depot(ports["base"], sums)
    results = measure(ports, args, pids)
    rss = None
    if depot is not None and not args.no_rss:
        say(f"RSS test: {RSS_CLIENTS} clients x {args.rss_repeat} downloads of 100 MiB")
        rss = measure_rss(depot, ports["depot"], args)
    print_table(results, args)
    if rss is not None:
        print_rss(rss, args)
    if args.json:
        write_json(args.json, results, rss, args)


def stop_tree(proc: Proc) -> None:
    """Stop one of our processes by PID, then any descendants it left (only ours)."""
    kids = children_of(proc.pid) if proc.popen.poll() is None else []
    proc.stop()
    for pid in kids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def run_guarded(name: str, run_fn: Callable[[Path, list[Any]], None], prefix: str,
                errors: tuple[type[BaseException], ...] = (BenchError,)) -> int:
    """Run a benchmark in a fresh temp dir; whatever happens, stop what it started and clean up.

    `run_fn(work, started)` appends everything it starts (objects with .stop()) to `started`.
    """
    work = Path(tempfile.mkdtemp(prefix=prefix))
    started: list[Any] = []
    try:
        run_fn(work, started)
        return 0
    except errors as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        return 130
    finally:
        for item in reversed(started):
            stop_tree(item) if isinstance(item, Proc) else item.stop()
        shutil.rmtree(work, ignore_errors=True)
        say("cleaned up")


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = parse_args(argv)
    return run_guarded("bench", lambda work, procs: run(args, work, procs), "depot-bench-")


if __name__ == "__main__":
    sys.exit(main())
