"""OCI pull-through benchmark: depot against docker-registry (CNCF distribution) in proxy mode.

One run, same machine, same image:

* an upstream docker-registry (filesystem storage, access log on) holding ``test/big:v1`` whose
  single layer is BLOB_MIB MiB of random bytes (uploaded monolithically, streamed from disk);
* a second docker-registry in proxy mode (``proxy: {remoteurl: <upstream>}``, access log off)
  and depot ``--workers N`` with an oci proxy repository ``hub`` (``access_log: false``);
* warm: the cached blob is pulled with ``wrk`` through each, rounds interleaved
  depot/docker-registry, medians in MiB/s and their ratio (target: depot >= docker-registry);
* cold: both proxies are started afresh (empty storage); 10 concurrent clients GET the
  manifest by tag, then 10 concurrent clients GET the blob, through each proxy in turn; the
  upstream's access log tells how many GETs (and HEADs) reached it (target: depot exactly 1
  per blob).

Run from the repository root::

    .venv/bin/python bench/oci_bench.py [--depot .venv/bin/depot] [--duration 5] [--rounds 3]
        [--workers 2] [--clients 10] [--blob-mib 100]

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
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hit_throughput import (BenchError, Proc, WrkResult, children_of, free_port, run_guarded,  # noqa: E402
                            run_wrk, say, spawn, stop_tree, wait_http)

REPO_ROOT = Path(__file__).resolve().parent.parent
MiB = 1 << 20
IMAGE = "test/big"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MANIFEST_ACCEPT = ", ".join((OCI_MANIFEST, "application/vnd.oci.image.index.v1+json",
                             "application/vnd.docker.distribution.manifest.v2+json",
                             "application/vnd.docker.distribution.manifest.list.v2+json"))
SERVERS = ("depot", "docker-registry")


@dataclass
class Image:
    """What was pushed upstream."""

    blob: str                 # sha256:… of the big layer
    size: int
    manifest: str             # sha256:… of the manifest tagged v1


@dataclass
class Server:
    """A proxy under test: its process and the URL prefix of the image."""

    name: str
    proc: Proc
    port: int
    prefix: str               # "/v2/hub/test/big" or "/v2/test/big"

    def blob_path(self, image: Image) -> str:
        return f"{self.prefix}/blobs/{image.blob}"


@dataclass
class ColdResult:
    """One proxy's cold pull by N concurrent clients."""

    seconds: float
    bad_bodies: int
    upstream: dict[str, int] = field(default_factory=dict)   # "blob GET" -> count, …


# --------------------------------------------------------------------------- HTTP

def request(port: int, method: str, path: str, body: object = None,
            headers: dict[str, str] | None = None, timeout: float = 120.0) -> tuple[int, dict[str, str], str]:
    """One request on 127.0.0.1:`port`; (status, lower-cased headers, sha256 of the body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        digest = hashlib.sha256()
        while block := resp.read(MiB):
            digest.update(block)
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, "sha256:" + digest.hexdigest()
    finally:
        conn.close()


def upload(port: int, data: object, digest: str, size: int) -> None:
    """Monolithic blob upload to the upstream: POST a session, PUT the body (a file is streamed)."""
    status, headers, _ = request(port, "POST", f"/v2/{IMAGE}/blobs/uploads/")
    if status != 202:
        raise BenchError(f"upstream upload POST answered {status}")
    location = re.sub(r"^https?://[^/]+", "", headers["location"])
    sep = "&" if "?" in location else "?"
    status, _, _ = request(port, "PUT", f"{location}{sep}digest={digest}", body=data,
                           headers={"Content-Length": str(size), "Content-Type": "application/octet-stream"})
    if status != 201:
        raise BenchError(f"upstream upload PUT of {digest} answered {status}")


def push_image(port: int, work: Path, blob_mib: int) -> Image:
    """A random layer (written to disk in 4 MiB blocks), a config and a manifest tagged v1."""
    layer, hasher = work / "layer.bin", hashlib.sha256()
    with layer.open("wb") as out:
        for _ in range(blob_mib // 4):
            block = os.urandom(4 * MiB)
            out.write(block)
            hasher.update(block)
    blob, size = "sha256:" + hasher.hexdigest(), layer.stat().st_size
    with layer.open("rb") as body:
        upload(port, body, blob, size)
    layer.unlink()
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [blob]}}).encode()
    config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
    upload(port, config, config_digest, len(config))
    manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": config_digest, "size": len(config)},
                           "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                                       "digest": blob, "size": size}]}).encode()
    status, headers, _ = request(port, "PUT", f"/v2/{IMAGE}/manifests/v1", body=manifest,
                                 headers={"Content-Type": OCI_MANIFEST})
    if status != 201:
        raise BenchError(f"upstream manifest PUT answered {status}")
    return Image(blob, size, headers["docker-content-digest"])


# --------------------------------------------------------------------------- servers

def start_registry(binary: str, work: Path, name: str, remote: str | None = None) -> tuple[Proc, int]:
    """docker-registry with filesystem storage; a pull-through cache of `remote` if given.

    The upstream logs every request (counted later); the proxy logs warnings only, like depot
    with `access_log: false`.
    """
    d = work / name
    d.mkdir()
    port = free_port()
    log = {"level": "info", "accesslog": {"disabled": False}} if remote is None else \
        {"level": "warn", "accesslog": {"disabled": True}}
    config = {"version": 0.1, "log": log, "http": {"addr": f"127.0.0.1:{port}"},
              "storage": {"filesystem": {"rootdirectory": str(d / "data")}}}
    if remote is not None:
        config["proxy"] = {"remoteurl": remote}
    (d / "config.yml").write_text(json.dumps(config))
    proc = spawn(name, [binary, "serve", str(d / "config.yml")], d / "registry.log")
    wait_http(port, "/v2/", proc)
    return proc, port


DEPOT_CONF = """\
access_log: false
open_access: true
repositories:
  hub:
    format: oci
    type: proxy
    upstream: "{upstream}"
"""


def start_depot(depot: str, work: Path, name: str, upstream: str, workers: int) -> tuple[Proc, int]:
    """depot serve with one oci proxy repository `hub`; returns (proc, port)."""
    d = work / name
    d.mkdir()
    (d / "depot.yaml").write_text(DEPOT_CONF.format(upstream=upstream))
    port = free_port()
    proc = spawn(name, [depot, "serve", "--config", str(d / "depot.yaml"), "--data", str(d / "data"),
                        "--listen", f"127.0.0.1:{port}", "--workers", str(workers)], d / "depot.log", cwd=d)
    wait_http(port, "/-/healthz", proc, timeout=60)
    wait_http(port, "/v2/", proc)
    return proc, port


def start_proxy(name: str, args: argparse.Namespace, work: Path, upstream_port: int, tag: str,
                procs: list[Proc]) -> Server:
    """A fresh proxy (empty storage) in front of the upstream: depot or docker-registry."""
    remote = f"http://127.0.0.1:{upstream_port}"
    if name == "depot":
        proc, port = start_depot(args.depot, work, f"depot-{tag}", remote, args.workers)
        procs.append(proc)
        say(f"{tag}: depot pid {proc.pid} (+{len(children_of(proc.pid))} workers) on :{port}")
        return Server(name, proc, port, f"/v2/hub/{IMAGE}")
    proc, port = start_registry(args.registry, work, f"registry-proxy-{tag}", remote)
    procs.append(proc)
    say(f"{tag}: docker-registry proxy pid {proc.pid} on :{port}")
    return Server(name, proc, port, f"/v2/{IMAGE}")


def stop(proc: Proc, procs: list[Proc]) -> None:
    """Stop one of our processes (and its children) by PID, and forget it."""
    stop_tree(proc)
    procs.remove(proc)


# --------------------------------------------------------------------------- upstream log

def upstream_counts(log: Path, image: Image) -> dict[str, int]:
    """Requests for the blob and the manifest that the upstream's access log shows."""
    text = log.read_text(errors="replace")

    def count(method: str, path: str) -> int:
        return len(re.findall(rf'"{method} {re.escape(path)} HTTP', text))
    blob, tag, digest = (f"/v2/{IMAGE}/blobs/{image.blob}", f"/v2/{IMAGE}/manifests/v1",
                         f"/v2/{IMAGE}/manifests/{image.manifest}")
    return {"blob GET": count("GET", blob), "blob HEAD": count("HEAD", blob),
            "manifest GET": count("GET", tag) + count("GET", digest),
            "manifest HEAD": count("HEAD", tag) + count("HEAD", digest)}


def delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before.get(k, 0) for k in after}


# --------------------------------------------------------------------------- measuring

def check_warm(server: Server, image: Image) -> None:
    """GET the blob until the proxy has it stored (a byte-exact answer, then a second one)."""
    for attempt in range(2):
        status, headers, digest = request(server.port, "GET", server.blob_path(image))
        if status != 200 or digest != image.blob:
            raise BenchError(f"{server.name}: warm-up GET {attempt + 1} answered {status}, "
                             f"body {'ok' if digest == image.blob else 'DIFFERENT'}")
        time.sleep(1.0)      # docker-registry stores a proxied blob after the first answer
    say(f"{server.name} warm: blob served byte-exact "
        f"(X-Cache {headers.get('x-cache', '-')})")


def measure_warm(servers: dict[str, Server], image: Image, args: argparse.Namespace,
                 upstream_log: Path) -> tuple[dict[str, list[WrkResult]], dict[str, dict[str, int]]]:
    """wrk on the cached blob, rounds interleaved; also the upstream requests each one caused."""
    for server in servers.values():
        check_warm(server, image)
    runs: dict[str, list[WrkResult]] = {name: [] for name in servers}
    caused: dict[str, dict[str, int]] = {name: {} for name in servers}
    for rnd in range(1, args.rounds + 1):
        for name, server in servers.items():
            before = upstream_counts(upstream_log, image)
            r = run_wrk(f"http://127.0.0.1:{server.port}{server.blob_path(image)}", args)
            for key, n in delta(upstream_counts(upstream_log, image), before).items():
                caused[name][key] = caused[name].get(key, 0) + n
            runs[name].append(r)
            say(f"warm round {rnd}/{args.rounds} {name}: {r.mibs:,.1f} MiB/s, {r.rps:.2f} req/s"
                f" (load {os.getloadavg()[0]:.1f}){'  ' + r.errors if r.errors else ''}")
    return runs, caused


def concurrent_gets(port: int, path: str, clients: int, headers: dict[str, str] | None = None,
                    timeout: float = 300.0) -> list[tuple[int, str]]:
    """`clients` simultaneous GETs (one thread and connection each); (status, sha256) each."""
    with ThreadPoolExecutor(clients) as pool:
        futures = [pool.submit(request, port, "GET", path, None, headers, timeout) for _ in range(clients)]
        return [(s, d) for s, _, d in (f.result(timeout=timeout + 10) for f in futures)]


def measure_cold(server: Server, image: Image, clients: int, upstream_log: Path) -> ColdResult:
    """`clients` concurrent GETs of the manifest (by tag), then of the blob, on an empty proxy."""
    before = upstream_counts(upstream_log, image)
    started = time.monotonic()
    manifests = concurrent_gets(server.port, f"{server.prefix}/manifests/v1", clients,
                                {"Accept": MANIFEST_ACCEPT})
    blobs = concurrent_gets(server.port, server.blob_path(image), clients)
    seconds = time.monotonic() - started
    bad = sum(r != (200, image.manifest) for r in manifests) + sum(r != (200, image.blob) for r in blobs)
    time.sleep(1.0)          # let the upstream flush its log lines
    result = ColdResult(seconds, bad, delta(upstream_counts(upstream_log, image), before))
    say(f"cold {server.name}: {clients} clients, {seconds:.1f}s, {bad} bad answers, "
        f"upstream {result.upstream}")
    return result


# --------------------------------------------------------------------------- reporting

def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "-"


def print_table(warm: dict[str, list[WrkResult]], warm_up: dict[str, dict[str, int]],
                cold: dict[str, ColdResult], args: argparse.Namespace) -> None:
    """Warm medians and cold counts, with depot/docker-registry ratios and the targets."""
    med = {name: statistics.median(r.mibs for r in runs) for name, runs in warm.items()}
    d, r = (cold[s] for s in SERVERS)
    paired = [a.mibs / b.mibs for a, b in zip(warm["depot"], warm["docker-registry"]) if b.mibs] or [0.0]
    rows = [("", "depot", "docker-registry", "depot/docker-registry", "target"),
            (f"warm {args.blob_mib} MiB blob, MiB/s (median)", f"{med['depot']:,.1f}",
             f"{med['docker-registry']:,.1f}", ratio(med["depot"], med["docker-registry"]), ">= 1.00x"),
            ("warm: median of per-round ratios", "", "", f"{statistics.median(paired):.2f}x", ""),
            ("warm: upstream requests meanwhile", str(sum(warm_up["depot"].values())),
             str(sum(warm_up["docker-registry"].values())), "", "0"),
            (f"cold {args.clients} clients, seconds", f"{d.seconds:.1f}", f"{r.seconds:.1f}",
             ratio(d.seconds, r.seconds), ""),
            ("cold: bad answers", str(d.bad_bodies), str(r.bad_bodies), "", "0")]
    for key in ("blob GET", "blob HEAD", "manifest GET", "manifest HEAD"):
        rows.append((f"cold: upstream {key}s", str(d.upstream[key]), str(r.upstream[key]),
                     ratio(d.upstream[key], r.upstream[key]), "1" if key == "blob GET" else ""))
    print()
    print(f"OCI pull-through: depot --workers {args.workers} vs docker-registry proxy; wrk -t{args.threads} "
          f"-c{args.connections} -d{args.duration}s, {args.rounds} rounds interleaved; "
          f"{os.cpu_count()} CPUs")
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
    for name, runs in warm.items():
        errors = "; ".join(x.errors for x in runs if x.errors)
        print(f"  warm runs {name} (MiB/s): {[round(x.mibs) for x in runs]}"
              f"{'  errors: ' + errors if errors else ''}")
    verdicts = [("warm throughput >= docker-registry", med["depot"] >= med["docker-registry"]),
                ("exactly 1 upstream blob GET cold (depot)", d.upstream["blob GET"] == 1),
                ("docker-registry makes more", r.upstream["blob GET"] > d.upstream["blob GET"])]
    for text, ok in verdicts:
        print(f"  {'ok   ' if ok else 'MISS '} {text}")


# --------------------------------------------------------------------------- main

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command line options."""
    ap = argparse.ArgumentParser(description="depot vs docker-registry as OCI pull-through caches")
    ap.add_argument("--depot", default=str(REPO_ROOT / ".venv/bin/depot"), help="depot executable")
    ap.add_argument("--registry", default=shutil.which("docker-registry") or "/usr/bin/docker-registry",
                    help="docker-registry executable")
    ap.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    ap.add_argument("--rounds", type=int, default=3, help="warm runs per server")
    ap.add_argument("--workers", type=int, default=2, help="depot --workers")
    ap.add_argument("--threads", type=int, default=2, help="wrk -t")
    ap.add_argument("--connections", type=int, default=8, help="wrk -c")
    ap.add_argument("--clients", type=int, default=10, help="concurrent clients of the cold pull")
    ap.add_argument("--blob-mib", type=int, default=100, help="layer size in MiB (a multiple of 4)")
    return ap.parse_args(argv)


def check_tools(args: argparse.Namespace) -> None:
    """Fail clearly when wrk, docker-registry or depot is missing."""
    missing = [t for t in ("wrk", "timeout") if not shutil.which(t)]
    if not os.access(args.registry, os.X_OK):
        missing.append("docker-registry")
    if missing:
        raise BenchError(f"missing {', '.join(missing)}: apt-get install -y {' '.join(missing)}")
    if not os.access(args.depot, os.X_OK):
        raise BenchError(f"depot executable not found at {args.depot} (pip install -e . or --depot)")


def run(args: argparse.Namespace, work: Path, procs: list[Proc]) -> None:
    """Upstream, warm measurement on one pair of proxies, cold pull on a fresh pair; report."""
    check_tools(args)
    if os.getloadavg()[0] > 0.5:
        say(f"warning: load average {os.getloadavg()[0]:.2f} before starting; other work on this "
            "machine skews the numbers (compare the per-round runs below)")
    up, up_port = start_registry(args.registry, work, "upstream")
    procs.append(up)
    assert up.log is not None
    say(f"upstream docker-registry pid {up.pid} on :{up_port}; pushing {args.blob_mib} MiB layer")
    image = push_image(up_port, work, args.blob_mib)
    say(f"pushed {IMAGE}:v1 = {image.manifest}, layer {image.blob}")
    servers = {name: start_proxy(name, args, work, up_port, "warm", procs) for name in SERVERS}
    runs, warm_up = measure_warm(servers, image, args, up.log)
    for server in servers.values():
        stop(server.proc, procs)
    cold = {}
    for name in SERVERS:         # one fresh proxy at a time: the upstream log tells whose requests
        fresh = start_proxy(name, args, work, up_port, "cold", procs)
        cold[name] = measure_cold(fresh, image, args.clients, up.log)
        stop(fresh.proc, procs)
    print_table(runs, warm_up, cold, args)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = parse_args(argv)
    return run_guarded("bench", lambda work, procs: run(args, work, procs), "depot-oci-bench-")


if __name__ == "__main__":
    sys.exit(main())
