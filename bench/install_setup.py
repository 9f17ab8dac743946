"""Fixtures and peer servers for bench/install_bench.py (loopback only, no public internet).

* npm: ~N generated packages published with the real npm CLI to a hosted npm repository of
  an upstream depot; the peer is verdaccio 6, installed with npm into a private directory.
* PyPI: ~N generated wheels + sdists (hatchling, ``python -m build --no-isolation``) laid out
  as a static PEP 503 tree served by the counting test upstream (tests/upstream.py); the peer
  is proxpi, installed with pip into a private venv.

Every process started here is a ``Proc`` (bench/hit_throughput.py) that the caller stops by PID.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import venv
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
sys.path.insert(0, str(REPO_ROOT / "tests"))
sys.path.insert(0, str(BENCH_DIR))
from hit_throughput import BenchError, Proc, free_port, say, spawn, wait_http  # noqa: E402
from npm_fixtures import NpmCli, make_package  # noqa: E402
from pypi_fixtures import build_many, write_simple_project  # noqa: E402

VERDACCIO_SPEC = "verdaccio@6"
PROXPI_SPEC = "proxpi"
METADATA_TTL = 300                     # seconds; same for depot and the peers


def dep_indices(i: int) -> list[int]:
    """Earlier packages that package `i` depends on: a small DAG (i//2 and i//3)."""
    return sorted({j for j in (i // 2, i // 3) if j < i})


def npm_names(count: int) -> list[str]:
    """The npm package names of the benchmark set."""
    return [f"ibench-pkg-{i:02d}" for i in range(count)]


def pypi_names(count: int) -> list[str]:
    """The PyPI project names (normalised) of the benchmark set."""
    return [f"ibench-py-{i:02d}" for i in range(count)]


def _filler(name: str, size: int) -> str:
    """Deterministic JavaScript-ish text so tarballs are not trivially tiny."""
    line = f"// {name}: filler line for the install benchmark, nothing to see here\n"
    return (line * (size // len(line) + 1))[:size]


def _wait_or_stop(proc: Proc, port: int, path: str) -> None:
    """Wait until `proc` answers 200 on `path`; stop it (by PID) when it does not."""
    try:
        wait_http(port, path, proc, timeout=60)
    except BaseException:
        proc.stop()
        raise


# --------------------------------------------------------------------------- npm

def publish_npm_set(work: Path, registry: str, token: str, count: int) -> list[str]:
    """Generate `count` packages (some depending on others) and `npm publish` them."""
    names = npm_names(count)
    src = work / "npm-src"
    dirs = []
    for i, name in enumerate(names):
        deps = {names[j]: "^1.0.0" for j in dep_indices(i)}
        pkgdir = make_package(src, name, "1.0.0", deps=deps)
        (pkgdir / "lib.js").write_text(_filler(name, 8 * 1024 + 97 * i))
        dirs.append(pkgdir)
    publishers = [NpmCli(work / f"npm-publisher-{k}", registry, token=token) for k in range(4)]

    def publish(item: tuple[int, Path]) -> None:
        """`npm publish` one package directory (publishers taken round robin)."""
        publishers[item[0] % len(publishers)].ok("publish", cwd=item[1])

    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=len(publishers)) as pool:
        list(pool.map(publish, enumerate(dirs)))
    say(f"npm: published {count} packages with npm in {time.monotonic() - t0:.1f}s")
    return names


def install_verdaccio(tools: Path) -> Path:
    """verdaccio 6 via npm into `tools/verdaccio` (node-fetch override); returns its binary."""
    home = tools / "verdaccio"
    binary = home / "node_modules" / ".bin" / "verdaccio"
    if binary.exists():
        return binary
    home.mkdir(parents=True, exist_ok=True)
    (home / "package.json").write_text(json.dumps({
        "name": "depot-bench-peer", "version": "1.0.0", "private": True,
        "overrides": {"node-fetch": "2.7.0"}}) + "\n")
    say(f"installing {VERDACCIO_SPEC} with npm into {home} (about a minute)")
    try:
        proc = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--cache",
                               str(tools / "npm-cache"), VERDACCIO_SPEC], cwd=home,
                              capture_output=True, text=True, timeout=600,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BenchError(f"cannot install verdaccio with npm: {exc}") from exc
    if proc.returncode != 0 or not binary.exists():
        raise BenchError(f"cannot install verdaccio ({VERDACCIO_SPEC}) with npm "
                         f"(rc {proc.returncode}):\n{proc.stderr[-2000:]}")
    return binary


VERDACCIO_CONF = """\
storage: {storage}
auth:
  htpasswd: {{file: {htpasswd}, max_users: 100}}
uplinks:
  up: {{url: "{upstream}", maxage: {ttl}s, timeout: 60s, max_fails: 100}}
packages:
  '**': {{access: $all, publish: $all, proxy: up}}
listen: 127.0.0.1:{port}
web: {{enable: false}}
log: {{type: stdout, format: pretty, level: warn}}
"""


def start_verdaccio(binary: Path, work: Path, upstream: str) -> tuple[Proc, str]:
    """A verdaccio proxying `upstream` with empty storage in `work`; returns (proc, registry URL)."""
    work.mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf = work / "config.yaml"
    conf.write_text(VERDACCIO_CONF.format(storage=work / "storage", htpasswd=work / "htpasswd",
                                          upstream=upstream.rstrip("/") + "/",
                                          ttl=METADATA_TTL, port=port))
    proc = spawn("verdaccio", [str(binary), "-c", str(conf)], work / "verdaccio.log", cwd=work)
    _wait_or_stop(proc, port, "/-/ping")
    return proc, f"http://127.0.0.1:{port}/"


# --------------------------------------------------------------------------- PyPI

def build_pypi_set(work: Path, root: Path, count: int) -> list[str]:
    """Build `count` projects (some depending on others) into a static PEP 503 tree at `root`."""
    names = pypi_names(count)
    specs = [(name, "1.0", tuple(f"{names[j]}>=1.0" for j in dep_indices(i)))
             for i, name in enumerate(names)]
    t0 = time.monotonic()
    dists = build_many(work / "pypi-build", specs)
    for name in names:
        write_simple_project(root, name, dists[(name, "1.0")].files)
    say(f"pypi: built {count} wheels + sdists with hatchling in {time.monotonic() - t0:.1f}s")
    return names


def install_proxpi(tools: Path) -> Path:
    """proxpi via pip into the private venv `tools/proxpi-venv`; returns that venv's python."""
    home = tools / "proxpi-venv"
    python = home / "bin" / "python"
    check = [str(python), "-c", "import proxpi.server"]
    if python.exists() and subprocess.run(check, capture_output=True, timeout=60).returncode == 0:
        return python
    say(f"installing {PROXPI_SPEC} with pip into {home}")
    try:
        venv.create(home, with_pip=True, clear=True)
        proc = subprocess.run([str(python), "-m", "pip", "install", "-q",
                               "--disable-pip-version-check", PROXPI_SPEC],
                              capture_output=True, text=True, timeout=600,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError) as exc:
        raise BenchError(f"cannot install proxpi with pip: {exc}") from exc
    if proc.returncode != 0 or subprocess.run(check, capture_output=True, timeout=60).returncode:
        raise BenchError(f"cannot install proxpi ({PROXPI_SPEC}) with pip "
                         f"(rc {proc.returncode}):\n{proc.stderr[-2000:]}")
    return python


def start_proxpi(python: Path, work: Path, upstream_simple: str) -> tuple[Proc, str]:
    """proxpi (flask server) proxying `upstream_simple` with an empty cache; returns (proc, index URL)."""
    work.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PROXPI_", "PIP_"))}
    env.update({"PROXPI_INDEX_URL": upstream_simple, "PROXPI_CACHE_DIR": str(work / "cache"),
                "PROXPI_INDEX_TTL": str(METADATA_TTL), "PROXPI_LOGGING_LEVEL": "WARNING",
                "NO_PROXY": "*", "no_proxy": "*"})
    flask = python.parent / "flask"
    argv = [str(flask), "--app", "proxpi.server", "run", "--host", "127.0.0.1",
            "--port", str(port), "--with-threads"]
    with (work / "proxpi.log").open("wb") as out:
        popen = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env,
                                 stdin=subprocess.DEVNULL, cwd=work)
    proc = Proc("proxpi", popen, work / "proxpi.log")
    _wait_or_stop(proc, port, "/health")
    return proc, f"http://127.0.0.1:{port}/index/"
