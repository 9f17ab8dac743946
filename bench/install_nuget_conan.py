"""NuGet and Conan scenarios of bench/install_bench.py: depot vs nginx `proxy_cache` in front of
the same local upstream, real clients.

* nuget: upstream = a depot hosted NuGet repository with ``--packages`` generated packages;
  peer = nginx proxy_cache with `sub_filter` turning the upstream's absolute URLs into its own;
  client = NuGet.exe 5.8 (mono) `restore` of a packages.config naming every package, -NoCache.
* conan: upstream = a real conan_server (127.0.0.1) filled by the real client; peer = nginx
  proxy_cache in front of it (conan paths are relative: nothing to rewrite); client = `conan
  install` of every package with a fresh CONAN_HOME.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from hit_throughput import BenchError, Proc, free_port, say, spawn, wait_http  # noqa: E402
from depot_process import DepotProcess  # noqa: E402
from nuget_fixtures import NUGET58, client_env, nupkg  # noqa: E402
from conan_fixtures import ConanClient, ConanServer, write_recipe  # noqa: E402

INSTALL_TIMEOUT = 900.0
METADATA_TTL = "1h"

NGINX_PROXY = """\
{user}worker_processes 1;
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    proxy_cache_path {d}/cache levels=1:2 keys_zone=pc:10m max_size=2g inactive=7d use_temp_path=off;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass {upstream};
            proxy_set_header Accept-Encoding "";
            proxy_cache pc;
            proxy_cache_valid 200 10m;
            proxy_cache_lock on;
            sub_filter_types application/json;
            sub_filter_once off;
            sub_filter '{rewrite_from}' '{rewrite_to}';
            add_header X-Cache $upstream_cache_status;
        }}
    }}
}}
"""


def start_nginx_cache(work: Path, upstream: str, rewrite_from: str, probe: str) -> tuple[Proc, str]:
    """nginx proxy_cache in front of `upstream` (an origin URL), upstream URLs in JSON rewritten."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    d = work / "nginx"
    d.mkdir(parents=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    user = "user root root;\n" if os.geteuid() == 0 else ""     # workers must write the root-owned cache
    (d / "nginx.conf").write_text(NGINX_PROXY.format(user=user, d=d, port=port, upstream=upstream,
                                                     rewrite_from=rewrite_from, rewrite_to=url))
    proc = spawn("nginx", [nginx, "-c", str(d / "nginx.conf"), "-e", str(d / "error.log")], d / "stdout.log")
    proc.log = d / "error.log"
    try:
        wait_http(port, probe, proc, timeout=30)
    except BaseException:
        proc.stop()
        raise
    return proc, url


def _server(kind: str, url: str, handle: Any, pid: int, depot: DepotProcess | None = None) -> Any:
    from install_bench import Server
    return Server(kind, url, handle, pid, depot)


def _tally(log: str, prefix: str, is_file: Any) -> Counter[str]:
    from install_bench import ACCESS_RE
    counts: Counter[str] = Counter()
    for line in log.splitlines():
        m = ACCESS_RE.search(line) if "depot.access" in line else None
        if m and m.group(2).startswith(prefix):
            counts["files" if is_file(m.group(2)) else "meta"] += 1
    return counts


class NugetScenario:
    """NuGet: upstream depot (hosted), depot proxy vs nginx proxy_cache, NuGet.exe 5.8 restore."""

    name = "nuget"
    peer = "nginx"

    def __init__(self, work: Path, tools: Path, args: argparse.Namespace) -> None:
        self.work, self.tools, self.args = work, tools, args
        self.up: DepotProcess | None = None
        self.ids: list[str] = []

    def prepare(self) -> None:
        if not NUGET58.exists() or not shutil.which("mono"):
            raise BenchError("NuGet.exe 5.8 / mono missing (tests/clients/nuget.sh, nuget.apt)")
        self.up = DepotProcess(self.work / "upstream", {"nuget-local": {"format": "nuget", "type": "hosted"}})
        import requests
        for i in range(self.args.packages):
            package_id = f"Bench.Pkg{i:03d}"
            deps = {f"Bench.Pkg{i - 1:03d}": "1.0.0"} if i else None
            body = nupkg(package_id, "1.0.0", deps=deps, payload="x" * (2000 + 300 * i))
            answer = requests.put(f"{self.up.url}/nuget-local/api/v2/package",
                                  files={"package": ("p.nupkg", body)}, timeout=30)
            if answer.status_code != 201:
                raise BenchError(f"push of {package_id} answered {answer.status_code}")
            self.ids.append(package_id)
        say(f"nuget: upstream depot at {self.up.url}/nuget-local with {len(self.ids)} packages")

    def stop(self) -> None:
        if self.up is not None:
            self.up.stop()

    def start(self, kind: str, work: Path) -> Any:
        assert self.up is not None
        index = f"{self.up.url}/nuget-local/v3/index.json"
        if kind == "depot":
            depot = DepotProcess(work, {"nuget-remote": {"format": "nuget", "type": "proxy", "upstream": index,
                                                         "metadata_ttl": METADATA_TTL}},
                                 workers=self.args.workers)
            assert depot.proc is not None
            return _server(kind, f"{depot.url}/nuget-remote/v3/index.json", depot, depot.proc.pid, depot)
        proc, url = start_nginx_cache(work, self.up.url, self.up.url, "/nuget-local/v3/index.json")
        return _server(kind, f"{url}/nuget-local/v3/index.json", proc, proc.pid)

    def install(self, source: str, dest: Path) -> None:
        dest.mkdir(parents=True)
        (dest / "packages.config").write_text(
            "<packages>" + "".join(f'<package id="{i}" version="1.0.0"/>' for i in self.ids) + "</packages>")
        result = subprocess.run(["mono", str(NUGET58), "restore", "packages.config", "-PackagesDirectory", "out",
                                 "-Source", source, "-NoCache", "-NonInteractive"], cwd=dest,
                                env=client_env(dest / "home"), capture_output=True, text=True,
                                timeout=INSTALL_TIMEOUT)
        got = len(list((dest / "out").glob("Bench.Pkg*")))
        if result.returncode != 0 or got != len(self.ids):
            raise BenchError(f"nuget restore via {source} failed (rc {result.returncode}, {got}/{len(self.ids)}):\n"
                             f"{(result.stdout + result.stderr)[-3000:]}")
        shutil.rmtree(dest, ignore_errors=True)

    def upstream_mark(self) -> int:
        assert self.up is not None
        return len(self.up.log())

    def upstream_counts(self, mark: int) -> Counter[str]:
        assert self.up is not None
        return _tally(self.up.log()[mark:], "/nuget-local/", lambda p: p.endswith(".nupkg"))


class ConanScenario:
    """Conan: a real conan_server, depot proxy vs nginx proxy_cache, `conan install`."""

    name = "conan"
    peer = "nginx"

    def __init__(self, work: Path, tools: Path, args: argparse.Namespace) -> None:
        self.work, self.tools, self.args = work, tools, args
        self.up: ConanServer | None = None
        self.refs: list[str] = []

    def prepare(self) -> None:
        self.up = ConanServer(self.work / "conan-server")
        publisher = ConanClient(self.work / "home-publisher", self.up.url)
        publisher.login("demo", "demo")
        for i in range(self.args.packages):
            name = f"benchpkg{i:03d}"
            publisher.run("create", str(write_recipe(self.work / "recipes", name, "1.0", payload="x" * (300 * i))))
            self.refs.append(f"{name}/1.0")
        publisher.run("upload", "benchpkg*", "-r", "depot", "-c", timeout=INSTALL_TIMEOUT)
        say(f"conan: conan_server at {self.up.url} with {len(self.refs)} packages")

    def stop(self) -> None:
        if self.up is not None:
            self.up.stop()

    def start(self, kind: str, work: Path) -> Any:
        assert self.up is not None
        if kind == "depot":
            depot = DepotProcess(work, {"conan-remote": {"format": "conan", "type": "proxy", "upstream": self.up.url,
                                                         "metadata_ttl": METADATA_TTL}},
                                 workers=self.args.workers)
            assert depot.proc is not None
            return _server(kind, f"{depot.url}/conan-remote", depot, depot.proc.pid, depot)
        proc, url = start_nginx_cache(work, self.up.url, self.up.url, "/v1/ping")
        return _server(kind, url, proc, proc.pid)

    def install(self, url: str, dest: Path) -> None:
        client = ConanClient(dest / "home", url)
        args = [arg for ref in self.refs for arg in ("--requires", ref)]
        result = client.run("install", *args, "-r", "depot", check=False, timeout=INSTALL_TIMEOUT)
        if result.returncode != 0:
            raise BenchError(f"conan install via {url} failed:\n{result.stderr[-3000:]}")
        shutil.rmtree(dest, ignore_errors=True)

    def upstream_mark(self) -> int:
        assert self.up is not None
        log = self.up.root / "server.log"
        return len(log.read_text(errors="replace")) if log.exists() else 0

    def upstream_counts(self, mark: int) -> Counter[str]:
        """Requests conan_server logged since `mark` (bottle's access lines): lists vs files."""
        assert self.up is not None
        counts: Counter[str] = Counter()
        for line in (self.up.root / "server.log").read_text(errors="replace")[mark:].splitlines():
            if '"GET /v2/' in line:
                counts["files" if "/files/" in line else "meta"] += 1
        return counts
