"""Install benchmark: real npm and pip installs through depot vs through a peer proxy.

Same machine, same run, same local upstream (never the public internet):

* npm: an upstream depot with a hosted npm repository, filled with ``--packages`` generated
  packages (some depending on others) published with the real npm CLI. Proxies: a depot npm
  proxy repository and verdaccio 6 (installed with npm into a private directory), both
  pointing at that upstream. Client: ``npm install`` of every package into a fresh project
  with a fresh private ``--cache``.
* RubyGems and Composer (bench/install_gemcomposer.py): an upstream depot with a hosted
  repository of generated packages; depot proxy vs nginx ``proxy_cache``; ``bundle install`` and
  ``composer install`` with fresh private homes and caches.
* PyPI: a static PEP 503 tree of generated hatchling wheels + sdists served by the counting
  test upstream (tests/upstream.py). Proxies: a depot pypi proxy repository and proxpi
  (installed with pip into a private venv). Client: ``pip --isolated --no-cache-dir install
  --target <fresh dir>`` of every project.
* NuGet and Conan (bench/install_nuget_conan.py): an upstream depot (NuGet) or a real
  conan_server (Conan); peer: nginx proxy_cache in front of the same upstream; clients:
  NuGet.exe 5.8 ``restore`` of a packages.config, ``conan install`` with a fresh CONAN_HOME.

Phases, each measured for depot and the peer:

* cold x1: first install through a proxy with an empty cache (a fresh proxy each round);
* cold xC: ``--clients`` concurrent installs against a fresh proxy (empty cache); the
  upstream's request counts during this phase show whether the proxy fetched each file once;
* warm x1: installs once the cache is filled;
* warm xC: ``--clients`` concurrent installs against the warm proxy.

Every phase runs ``--rounds`` times per server, depot and peer interleaved (the order flips
every round); the table shows medians of wall seconds and of the server's CPU seconds
(``/proc/PID/stat`` of the server and its children), and upstream requests per run.

Run from the repository root::

    .venv/bin/python bench/install_bench.py [--packages 30] [--rounds 3] [--clients 8]
        [--only npm|pypi|nuget|conan|rubygems|composer] [--workers 1] [--tools-dir DIR]

``--tools-dir`` keeps verdaccio/proxpi installs between runs (default: inside the temporary
directory, removed at the end). Every process is stopped by PID and the temporary directory
removed at the end.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

sys.path.insert(0, str(Path(__file__).resolve().parent))
import install_setup as setup  # noqa: E402
from hit_throughput import BenchError, children_of, run_guarded, say  # noqa: E402
from depot_process import DepotProcess  # noqa: E402  (tests/ is on sys.path via install_setup)
from npm_fixtures import NpmCli  # noqa: E402
from upstream import Upstream, start_upstream  # noqa: E402

INSTALL_TIMEOUT = 600.0
ACCESS_RE = re.compile(r'"(GET|HEAD) (\S+) HTTP/[\d.]+" (\d{3}) .*"([A-Z-]*)"\s*$')


class Stoppable(Protocol):
    """Anything this benchmark started and must stop."""

    def stop(self) -> None: ...


@dataclass
class Server:
    """A running proxy under test: its client URL and how to stop it."""

    kind: str                                  # "depot" or the peer's name
    url: str
    handle: Stoppable
    pid: int
    depot: DepotProcess | None = None

    def stop(self) -> None:
        """Stop the process (by the PID we started)."""
        self.handle.stop()

    def cpu_seconds(self) -> float:
        """user + system CPU seconds of the server process and its children so far."""
        return sum(cpu_of(pid) for pid in [self.pid, *children_of(self.pid)])


@dataclass
class Phase:
    """One measured phase: seconds per run and upstream request counts, per server kind."""

    name: str
    seconds: dict[str, list[float]] = field(default_factory=dict)
    cpu: dict[str, list[float]] = field(default_factory=dict)
    upstream: dict[str, Counter[str]] = field(default_factory=dict)
    xcache: dict[str, Counter[str]] = field(default_factory=dict)

    def median(self, kind: str, what: str = "seconds") -> float | None:
        """Median wall seconds (or `what="cpu"`: server CPU seconds) of `kind`'s runs."""
        runs = getattr(self, what).get(kind, [])
        return statistics.median(runs) if runs else None


# --------------------------------------------------------------------------- helpers

def timed(action: Callable[[], None]) -> float:
    """Wall seconds of `action()`."""
    t0 = time.monotonic()
    action()
    return time.monotonic() - t0


def run_concurrently(install: Callable[[Path], None], dests: list[Path]) -> float:
    """Run `install(dest)` for every dest at once; wall seconds until the last one finished."""
    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=len(dests)) as pool:
        futures = [pool.submit(install, dest) for dest in dests]
        for future in futures:
            future.result(timeout=INSTALL_TIMEOUT + 30)
    return time.monotonic() - t0


def cpu_of(pid: int) -> float:
    """utime + stime of one process in seconds (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def access_tally(log: str) -> Counter[str]:
    """X-Cache values of depot's access log lines (repository requests only)."""
    tally: Counter[str] = Counter()
    for line in log.splitlines():
        m = ACCESS_RE.search(line) if "depot.access" in line else None
        if m and not m.group(2).startswith("/-/"):
            tally[m.group(4) or "-"] += 1
    return tally


def npm_login(registry: str, password: str) -> str:
    """A token for `admin` from depot's npm login endpoint."""
    url = f"{registry.rstrip('/')}/-/user/org.couchdb.user:admin"
    body = json.dumps({"name": "admin", "password": password}).encode()
    request = urllib.request.Request(url, data=body, method="PUT",
                                     headers={"Content-Type": "application/json"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=30) as resp:
            return json.loads(resp.read())["token"]
    except (urllib.error.URLError, KeyError, ValueError) as exc:
        raise BenchError(f"npm login on the upstream depot failed: {exc}") from exc


def _pid(depot: DepotProcess) -> int:
    assert depot.proc is not None
    return depot.proc.pid


# --------------------------------------------------------------------------- scenarios

class NpmScenario:
    """npm: upstream depot (hosted), depot proxy vs verdaccio, real npm installs."""

    name = "npm"
    peer = "verdaccio"

    def __init__(self, work: Path, tools: Path, args: argparse.Namespace) -> None:
        self.work, self.tools, self.args = work, tools, args
        self.up: DepotProcess | None = None
        self.names: list[str] = []

    def prepare(self) -> None:
        """Install verdaccio, start the upstream depot and publish the package set."""
        self.verdaccio = setup.install_verdaccio(self.tools)
        self.up = DepotProcess(self.work / "upstream",
                               {"npm-local": {"format": "npm", "type": "hosted"}}, workers=1)
        self.registry = f"{self.up.url}/npm-local/"
        say(f"npm: upstream depot pid {self.up.proc.pid if self.up.proc else '?'} at {self.registry}")
        token = npm_login(self.registry, DepotProcess.ADMIN_PASSWORD)
        self.names = setup.publish_npm_set(self.work, self.registry, token, self.args.packages)

    def stop(self) -> None:
        """Stop the upstream (by the PID we started), if it runs."""
        if self.up is not None:
            self.up.stop()

    def start(self, kind: str, work: Path) -> Server:
        """A fresh (empty) depot proxy repository or verdaccio pointing at the upstream."""
        if kind == "depot":
            repos = {"npm-remote": {"format": "npm", "type": "proxy", "upstream": self.registry,
                                    "metadata_ttl": setup.METADATA_TTL}}
            depot = DepotProcess(work, repos, workers=self.args.workers)
            return Server(kind, f"{depot.url}/npm-remote/", depot, _pid(depot), depot)
        proc, url = setup.start_verdaccio(self.verdaccio, work, self.registry)
        return Server(kind, url, proc, proc.pid)

    def install(self, registry: str, dest: Path) -> None:
        """`npm install` of the whole set into a fresh project with a fresh cache."""
        project = dest / "project"
        project.mkdir(parents=True)
        deps = {name: "^1.0.0" for name in self.names}
        (project / "package.json").write_text(json.dumps(
            {"name": "consumer", "version": "1.0.0", "private": True, "dependencies": deps}))
        cli = NpmCli(dest / "home", registry)
        cli.userconfig.write_text("")              # anonymous, like a CI reading a proxy
        result = cli.run("install", cwd=project, timeout=INSTALL_TIMEOUT)
        got = {p.name for p in (project / "node_modules").glob("ibench-pkg-*")}
        if result.returncode != 0 or got != set(self.names):
            raise BenchError(f"npm install via {registry} failed (rc {result.returncode}, "
                             f"{len(got)}/{len(self.names)} packages):\n{result.stderr[-3000:]}")
        shutil.rmtree(dest, ignore_errors=True)

    @property
    def upstream(self) -> DepotProcess:
        """The running upstream depot (after prepare)."""
        assert self.up is not None, "prepare() first"
        return self.up

    def upstream_mark(self) -> int:
        """Where the upstream depot's log ends now."""
        return len(self.upstream.log())

    def upstream_counts(self, mark: int) -> Counter[str]:
        """Requests the upstream depot answered since `mark`: metadata vs tarballs."""
        counts: Counter[str] = Counter()
        for line in self.upstream.log()[mark:].splitlines():
            m = ACCESS_RE.search(line) if "depot.access" in line else None
            if m and m.group(2).startswith("/npm-local/"):
                counts["files" if m.group(2).endswith(".tgz") else "meta"] += 1
        return counts


class PypiScenario:
    """PyPI: static counting upstream, depot proxy vs proxpi, real pip installs."""

    name = "pypi"
    peer = "proxpi"

    def __init__(self, work: Path, tools: Path, args: argparse.Namespace) -> None:
        self.work, self.tools, self.args = work, tools, args
        self.up: Upstream | None = None
        self.names: list[str] = []

    def prepare(self) -> None:
        """Install proxpi, build the project set and start the static upstream."""
        self.proxpi = setup.install_proxpi(self.tools)
        root = self.work / "pypi-upstream"
        self.names = setup.build_pypi_set(self.work, root, self.args.packages)
        self.up = start_upstream(root)
        say(f"pypi: static upstream pid {self.up.proc.pid} at {self.up.url}/simple/")

    def stop(self) -> None:
        """Stop the upstream (by the PID we started), if it runs."""
        if self.up is not None:
            self.up.stop()

    def start(self, kind: str, work: Path) -> Server:
        """A fresh (empty) depot proxy repository or proxpi pointing at the upstream."""
        simple = f"{self.upstream.url}/simple/"
        if kind == "depot":
            repos = {"pypi-remote": {"format": "pypi", "type": "proxy", "upstream": simple,
                                     "metadata_ttl": setup.METADATA_TTL}}
            depot = DepotProcess(work, repos, workers=self.args.workers)
            return Server(kind, f"{depot.url}/pypi-remote/simple/", depot, _pid(depot), depot)
        proc, url = setup.start_proxpi(self.proxpi, work, simple)
        return Server(kind, url, proc, proc.pid)

    def install(self, index: str, dest: Path) -> None:
        """`pip install --target` of the whole set, isolated from the machine's pip config."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "DEPOT_"))}
        env.update({"NO_PROXY": "*", "no_proxy": "*"})
        argv = [sys.executable, "-m", "pip", "--isolated", "--no-cache-dir",
                "--disable-pip-version-check", "install", "--index-url", index,
                "--trusted-host", "127.0.0.1", "--no-compile", "--target", str(dest / "t"),
                *self.names]
        proc = subprocess.run(argv, capture_output=True, text=True, env=env,
                              timeout=INSTALL_TIMEOUT, stdin=subprocess.DEVNULL)
        got = {p.name.split("-")[0] for p in (dest / "t").glob("*.dist-info")}
        want = {n.replace("-", "_") for n in self.names}
        if proc.returncode != 0 or got != want:
            raise BenchError(f"pip install via {index} failed (rc {proc.returncode}, "
                             f"{len(got)}/{len(want)} projects):\n{proc.stderr[-3000:]}")
        shutil.rmtree(dest, ignore_errors=True)

    @property
    def upstream(self) -> Upstream:
        """The running static upstream (after prepare)."""
        assert self.up is not None, "prepare() first"
        return self.up

    def upstream_mark(self) -> int:
        """Reset the upstream's counters (the mark is always 0)."""
        self.upstream.reset()
        return 0

    def upstream_counts(self, mark: int) -> Counter[str]:
        """Requests the static upstream answered since the mark: index/metadata vs files."""
        counts: Counter[str] = Counter()
        for key, n in self.upstream.counts().items():
            method, path = key.split(" ")[:2]
            is_file = (method == "GET" and path.startswith("/packages/")
                       and not path.endswith(".metadata"))
            counts["files" if is_file else "meta"] += n
        return counts


from install_nuget_conan import ConanScenario, NugetScenario  # noqa: E402

Scenario = NpmScenario | PypiScenario | NugetScenario | ConanScenario
SCENARIOS = (NpmScenario, PypiScenario, NugetScenario, ConanScenario)


# --------------------------------------------------------------------------- measuring

class Runner:
    """Runs the phases of one scenario; remembers what it started so it can be stopped."""

    def __init__(self, sc: Scenario, work: Path, args: argparse.Namespace) -> None:
        self.sc, self.work, self.args = sc, work, args
        self.kinds = ("depot", sc.peer)
        self.live: list[Server] = []
        self.seq = 0

    def fresh(self, kind: str) -> Server:
        """Start `kind` with an empty cache in a new directory."""
        self.seq += 1
        server = self.sc.start(kind, self.work / f"{self.sc.name}-{kind}-{self.seq}")
        self.live.append(server)
        return server

    def stop(self, server: Server) -> None:
        """Stop one server this runner started."""
        server.stop()
        self.live.remove(server)

    def stop_all(self) -> None:
        """Stop every server this runner started and that still runs."""
        for server in list(self.live):
            self.stop(server)

    def dests(self, count: int) -> list[Path]:
        """`count` new client directories."""
        self.seq += 1
        return [self.work / f"client-{self.seq}-{i}" for i in range(count)]

    def measure(self, phase: Phase, server: Server, clients: int) -> None:
        """One run of `clients` installs at once; records seconds, upstream counts, X-Cache."""
        mark = self.sc.upstream_mark()
        log_mark = len(server.depot.log()) if server.depot else 0
        cpu0 = server.cpu_seconds()
        if clients == 1:
            seconds = timed(lambda: self.sc.install(server.url, self.dests(1)[0]))
        else:
            seconds = run_concurrently(lambda d: self.sc.install(server.url, d), self.dests(clients))
        cpu = server.cpu_seconds() - cpu0
        up = self.sc.upstream_counts(mark)
        cache = access_tally(server.depot.log()[log_mark:]) if server.depot else Counter()
        phase.seconds.setdefault(server.kind, []).append(seconds)
        phase.cpu.setdefault(server.kind, []).append(cpu)
        phase.upstream.setdefault(server.kind, Counter()).update(up)
        phase.xcache.setdefault(server.kind, Counter()).update(cache)
        say(f"{self.sc.name} {phase.name:<9} {server.kind:<9} {seconds:7.2f}s wall, "
            f"server cpu {cpu:6.2f}s, upstream meta {up['meta']} files {up['files']}"
            f"{'  X-Cache ' + str(dict(cache)) if cache else ''}")

    def order(self, rnd: int) -> tuple[str, ...]:
        """depot first in even rounds, the peer first in odd ones."""
        return self.kinds if rnd % 2 == 0 else self.kinds[::-1]

    def cold_concurrent(self) -> Phase:
        """`clients` installs at once against a fresh (empty) server, `rounds` times each."""
        phase = Phase(f"cold x{self.args.clients}")
        for rnd in range(self.args.rounds):
            for kind in self.order(rnd):
                server = self.fresh(kind)
                self.measure(phase, server, self.args.clients)
                self.stop(server)
        return phase

    def cold_then_warm(self) -> list[Phase]:
        """cold x1 on fresh servers (`rounds` times), then warm x1 and warm xC (`rounds` times
        each) on the last ones."""
        cold, warm = Phase("cold x1"), Phase("warm x1")
        warm_c = Phase(f"warm x{self.args.clients}")
        servers: dict[str, Server] = {}
        for rnd in range(self.args.rounds):
            for kind in self.order(rnd):
                if kind in servers:
                    self.stop(servers.pop(kind))
                servers[kind] = self.fresh(kind)
                self.measure(cold, servers[kind], 1)
        for rnd in range(self.args.rounds):
            for kind in self.order(rnd):
                self.measure(warm, servers[kind], 1)
        for rnd in range(self.args.rounds):
            for kind in self.order(rnd + 1):
                self.measure(warm_c, servers[kind], self.args.clients)
        for server in servers.values():
            self.stop(server)
        return [cold, warm, warm_c]

    def run(self) -> list[Phase]:
        """All phases: cold xC, cold x1, warm x1, warm xC (servers stopped in any case)."""
        try:
            cold_c = self.cold_concurrent()
            cold, warm, warm_c = self.cold_then_warm()
            return [cold, cold_c, warm, warm_c]
        finally:
            self.stop_all()


# --------------------------------------------------------------------------- reporting

def fmt_counts(phase: Phase, kind: str) -> str:
    """`meta+files` upstream requests per run (mean over the phase's runs)."""
    counts, runs = phase.upstream.get(kind), len(phase.seconds.get(kind, []))
    if counts is None or not runs:
        return "-"
    return "+".join(f"{counts[k] / runs:.4g}" for k in ("meta", "files"))


def print_table(results: list[tuple[Scenario, list[Phase]]], args: argparse.Namespace) -> None:
    """scenario, phase, depot s, peer s, peer/depot, upstream requests of each."""
    print()
    print(f"install benchmark: {args.packages} packages, {args.rounds} warm rounds (median), "
          f"{args.clients} concurrent clients, depot --workers {args.workers}, "
          f"{os.cpu_count()} CPUs")
    print("ratio = peer seconds / depot seconds (>1: depot faster); "
          "upstream = requests the upstream saw per run: metadata (index pages, "
          "packuments, .metadata, any HEAD) + file GETs; cpu = server process CPU seconds")
    head = ("scenario", "phase", "depot s", "peer", "peer s", "peer/depot", "target",
            "depot cpu s", "peer cpu s", "upstream depot", "upstream peer")
    rows = [head]
    for sc, phases in results:
        for ph in phases:
            d, p = ph.median("depot"), ph.median(sc.peer)
            dc, pc = ph.median("depot", "cpu"), ph.median(sc.peer, "cpu")
            rows.append((sc.name, ph.name, fmt_num(d), sc.peer, fmt_num(p),
                         f"{p / d:.2f}" if d and p else "-", verdict(ph, d, p),
                         fmt_num(dc), fmt_num(pc),
                         fmt_counts(ph, "depot"), fmt_counts(ph, sc.peer)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    for row in rows:
        print("  ".join(c.ljust(w) if i in (0, 1, 3) else c.rjust(w)
                        for i, (c, w) in enumerate(zip(row, widths))).rstrip())
    print_notes(results, args)


def verdict(phase: Phase, depot: float | None, peer: float | None) -> str:
    """The issue's target: depot >= peer warm (ratio >= 1), faster cold under concurrency."""
    if not depot or not peer or phase.name == "cold x1":
        return "-"
    ratio = peer / depot
    wanted_faster = phase.name.startswith("cold")
    met = ratio > 1.0 if wanted_faster else ratio >= 1.0
    return ("ok" if met else "MISSED") + (" (>1)" if wanted_faster else " (>=1)")


def print_notes(results: list[tuple[Scenario, list[Phase]]], args: argparse.Namespace) -> None:
    """Per-run wall times, X-Cache tallies, single-flight check, machine load."""
    for sc, phases in results:
        for ph in phases:
            runs = {k: [round(s, 2) for s in v] for k, v in ph.seconds.items()}
            print(f"  {sc.name} {ph.name}: wall runs {runs}; depot X-Cache "
                  f"{dict(ph.xcache.get('depot', {}))}")
        cold_c = next(ph for ph in phases if ph.name.startswith("cold x") and ph.name != "cold x1")
        for kind in ("depot", sc.peer):
            files = cold_c.upstream[kind]["files"] / len(cold_c.seconds[kind])
            meta = cold_c.upstream[kind]["meta"] / len(cold_c.seconds[kind])
            print(f"  {sc.name} {kind} cold x{args.clients}: {files / args.packages:.2f} upstream "
                  f"file fetches per file, {meta / args.packages:.2f} metadata requests per "
                  f"package (per run)")
    print(f"  load average at the end: {os.getloadavg()[0]:.2f} (1 min), "
          f"{os.getloadavg()[1]:.2f} (5 min) on {os.cpu_count()} CPUs")
    if args.json:
        write_json(args.json, results, args)


def fmt_num(value: float | None) -> str:
    """Seconds with two decimals, or `-`."""
    return f"{value:.2f}" if value is not None else "-"


def write_json(path: Path, results: list[tuple[Scenario, list[Phase]]],
               args: argparse.Namespace) -> None:
    """The raw runs, CPU seconds, upstream counts and X-Cache tallies as JSON."""
    doc = {"options": {k: str(v) for k, v in vars(args).items()}, "cpus": os.cpu_count(),
           "results": [{"scenario": sc.name, "peer": sc.peer, "phases": [
               {"phase": ph.name, "seconds": ph.seconds, "cpu": ph.cpu,
                "upstream": {k: dict(v) for k, v in ph.upstream.items()},
                "xcache": {k: dict(v) for k, v in ph.xcache.items()}} for ph in phases]}
               for sc, phases in results]}
    path.write_text(json.dumps(doc, indent=2) + "\n")
    say(f"results written to {path}")


# --------------------------------------------------------------------------- main

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command line options."""
    ap = argparse.ArgumentParser(description="npm/pip installs through depot vs verdaccio/proxpi")
    ap.add_argument("--packages", type=int, default=30, help="packages in the set (default 30)")
    ap.add_argument("--rounds", type=int, default=3, help="warm installs per server (median)")
    ap.add_argument("--clients", type=int, default=8, help="concurrent installs (default 8)")
    ap.add_argument("--only", choices=("npm", "pypi", "nuget", "conan", "rubygems", "composer"),
                    help="run one scenario only")
    ap.add_argument("--workers", type=int, default=1, help="depot --workers (default 1)")
    ap.add_argument("--tools-dir", type=Path,
                    help="keep verdaccio/proxpi installs here between runs "
                         "(default: inside the temporary directory)")
    ap.add_argument("--json", type=Path, help="also write the raw results to this JSON file")
    args = ap.parse_args(argv)
    if args.packages < 1 or args.rounds < 1 or args.clients < 1:
        ap.error("--packages, --rounds and --clients must be at least 1")
    return args


def check_tools() -> None:
    """Fail clearly when npm, node or the depot executable is missing."""
    missing = [t for t in ("npm", "node") if not shutil.which(t)]
    if missing:
        raise BenchError(f"missing {', '.join(missing)} (needed for the npm scenario)")
    if not Path(sys.executable).with_name("depot").exists():
        raise BenchError(f"no depot next to {sys.executable}: run with .venv/bin/python "
                         "after pip install -e .")


def run(args: argparse.Namespace, work: Path, started: list[Stoppable]) -> None:
    """Set up each scenario inside `work`, measure, report; upstreams go to `started`."""
    if args.only in (None, "npm"):
        check_tools()
    tools = args.tools_dir.resolve() if args.tools_dir else work / "tools"
    tools.mkdir(parents=True, exist_ok=True)
    load1 = os.getloadavg()[0]
    if load1 > 0.5:
        say(f"warning: load average {load1:.2f} before starting; other work skews the numbers")
    results: list[tuple[Scenario, list[Phase]]] = []
    import install_gemcomposer      # RubyGems and Composer vs nginx proxy_cache (imports this module)
    every = (*SCENARIOS, *install_gemcomposer.SCENARIOS)
    classes = [c for c in every if args.only in (None, c.name)]
    for cls in classes:
        say(f"--- scenario {cls.name}: depot vs {cls.peer}")
        sc = cls(work / cls.name, tools, args)
        started.append(sc)
        sc.prepare()
        results.append((sc, Runner(sc, work / cls.name, args).run()))
        sc.stop()
        started.remove(sc)
    print_table(results, args)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = parse_args(argv)
    return run_guarded("install_bench", lambda work, started: run(args, work, started),
                       "depot-install-bench-", (BenchError, RuntimeError, subprocess.SubprocessError))


if __name__ == "__main__":
    sys.exit(main())
