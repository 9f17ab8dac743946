"""RubyGems and Composer scenarios of the install benchmark (bench/install_bench.py).

Both use an upstream depot with a hosted repository filled with ``--packages`` generated
packages (each depending on the previous one's ^1.0), a depot proxy repository and, as the
peer, nginx ``proxy_cache`` in front of the same upstream (every response cached for the
metadata TTL; Composer's absolute dist URLs rewritten to nginx with ``sub_filter``).
Clients: ``bundle install`` (fresh HOME and BUNDLE_PATH) and ``composer install`` (fresh
COMPOSER_HOME and COMPOSER_CACHE_DIR).
"""
from __future__ import annotations

import io
import json
import os
import pwd
import shutil
import subprocess
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any

import install_bench as ib
import install_setup as setup
from hit_throughput import BenchError, Proc, spawn, say, wait_http
from depot_process import DepotProcess, free_port

NGINX_CACHE_CONF = """\
{user}worker_processes 1;
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    proxy_cache_path {d}/cache levels=1:2 keys_zone=bench:10m max_size=1g inactive=1h use_temp_path=off;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass {upstream};
            proxy_cache bench;
            proxy_cache_valid 200 {ttl}s;
            proxy_ignore_headers Cache-Control Expires;     # cache metadata for the TTL, as depot does
            proxy_cache_valid 404 10s;
            proxy_cache_lock on;
            proxy_cache_use_stale error timeout updating;
            proxy_set_header Accept-Encoding "";
            sub_filter_types application/json;
            sub_filter_once off;
            sub_filter '{upstream_abs}' 'http://127.0.0.1:{port}';
        }}
    }}
}}
"""


def start_nginx_cache(work: Path, upstream: str) -> tuple[Proc, str]:
    """nginx proxy_cache in front of `upstream` (http://host:port); returns (proc, its URL)."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    d = work / "nginx"
    d.mkdir(parents=True)
    port = free_port()
    conf = d / "nginx.conf"
    # workers of a root master run as `nobody` by default and could not write the private cache
    user = f"user {pwd.getpwuid(os.geteuid()).pw_name};\n" if os.geteuid() == 0 else ""
    conf.write_text(NGINX_CACHE_CONF.format(user=user, d=d, port=port, upstream=upstream, upstream_abs=upstream,
                                            ttl=setup.METADATA_TTL))
    proc = spawn("nginx", [nginx, "-c", str(conf), "-e", str(d / "error.log")], d / "stdout.log")
    proc.log = d / "error.log"
    try:
        wait_http(port, "/-/healthz", proc, timeout=30)
    except BaseException:
        proc.stop()
        raise
    return proc, f"http://127.0.0.1:{port}"


class _DepotUpstreamScenario:
    """Shared parts: the upstream depot, its request counts, depot proxy vs nginx."""

    name = ""
    peer = "nginx"
    fmt = ""
    file_suffix = ""

    def __init__(self, work: Path, tools: Path, args: Any) -> None:
        self.work, self.tools, self.args = work, tools, args
        self.up: DepotProcess | None = None
        self.names: list[str] = []

    @property
    def upstream(self) -> DepotProcess:
        assert self.up is not None, "prepare() first"
        return self.up

    def start_upstream(self) -> str:
        self.up = DepotProcess(self.work / "upstream", {f"{self.fmt}-local": {"format": self.fmt, "type": "hosted"}})
        say(f"{self.name}: upstream depot pid {self.up.proc.pid if self.up.proc else '?'} at {self.up.url}")
        return f"{self.up.url}/{self.fmt}-local"

    def stop(self) -> None:
        if self.up is not None:
            self.up.stop()

    def start(self, kind: str, work: Path) -> ib.Server:
        """A fresh depot proxy repository or nginx proxy_cache pointing at the upstream."""
        if kind == "depot":
            repos = {f"{self.fmt}-remote": {"format": self.fmt, "type": "proxy",
                                            "upstream": f"{self.upstream.url}/{self.fmt}-local",
                                            "metadata_ttl": setup.METADATA_TTL}}
            depot = DepotProcess(work, repos, workers=self.args.workers)
            return ib.Server(kind, f"{depot.url}/{self.fmt}-remote", depot, ib._pid(depot), depot)
        proc, url = start_nginx_cache(work, self.upstream.url)
        return ib.Server(kind, f"{url}/{self.fmt}-local", proc, proc.pid)

    def upstream_mark(self) -> int:
        return len(self.upstream.log())

    def upstream_counts(self, mark: int) -> Counter[str]:
        counts: Counter[str] = Counter()
        for line in self.upstream.log()[mark:].splitlines():
            m = ib.ACCESS_RE.search(line) if "depot.access" in line else None
            if m and m.group(2).startswith(f"/{self.fmt}-local/"):
                counts["files" if m.group(2).endswith(self.file_suffix) else "meta"] += 1
        return counts


class GemScenario(_DepotUpstreamScenario):
    """RubyGems: `bundle install` of the set through depot vs nginx proxy_cache."""

    name, fmt, file_suffix = "rubygems", "rubygems", ".gem"

    def prepare(self) -> None:
        base = self.start_upstream()
        key = self.upstream.run_cli("token", "create", "--repo", "rubygems-local", "--perm", "write"
                                    ).stdout.strip().splitlines()[-1]
        src = self.work / "gems"
        for i in range(self.args.packages):
            name = f"ibench_gem_{i}"
            pkg = src / name
            (pkg / "lib").mkdir(parents=True)
            (pkg / "lib" / f"{name}.rb").write_text(setup._filler(name, 20_000))
            dep = f'\n  s.add_runtime_dependency "ibench_gem_{i - 1}", "~> 1.0"' if i else ""
            (pkg / f"{name}.gemspec").write_text(
                f'Gem::Specification.new do |s|\n  s.name = "{name}"; s.version = "1.0.0"; s.summary = "bench"\n'
                f'  s.authors = ["bench"]; s.files = ["lib/{name}.rb"]{dep}\nend\n')
            subprocess.run(["gem", "build", f"{name}.gemspec"], cwd=pkg, check=True, capture_output=True, timeout=120)
            subprocess.run(["gem", "push", str(pkg / f"{name}-1.0.0.gem"), "--host", base], check=True,
                           capture_output=True, timeout=120, env={**os.environ, "GEM_HOST_API_KEY": key})
            self.names.append(name)

    def install(self, source: str, dest: Path) -> None:
        app = dest / "app"
        app.mkdir(parents=True)
        (app / "Gemfile").write_text(f'source "{source}/"\n' + "".join(f'gem "{n}"\n' for n in self.names))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GEM_", "BUNDLE_"))}
        env.update(HOME=str(dest / "home"), BUNDLE_PATH=str(dest / "bundle"), BUNDLE_USER_HOME=str(dest / "bh"))
        proc = subprocess.run(["bundle", "install", "--jobs", "4"], cwd=app, env=env, capture_output=True,
                              text=True, timeout=ib.INSTALL_TIMEOUT)
        if proc.returncode != 0:
            raise BenchError(f"bundle install via {source} failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
        shutil.rmtree(dest, ignore_errors=True)


class ComposerScenario(_DepotUpstreamScenario):
    """Composer: `composer install` of the set through depot vs nginx proxy_cache."""

    name, fmt, file_suffix = "composer", "composer", ".zip"

    def prepare(self) -> None:
        import urllib.request
        base = self.start_upstream()
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        for i in range(self.args.packages):
            name = f"ibench/pkg{i}"
            out = io.BytesIO()
            with zipfile.ZipFile(out, "w") as zf:
                requires = {f"ibench/pkg{i - 1}": "^1.0"} if i else {}
                zf.writestr("composer.json", json.dumps({"name": name, "require": requires}))
                zf.writestr("src/filler.php", "<?php\n" + setup._filler(name, 20_000))
            request = urllib.request.Request(f"{base}/packages/{name}/1.0.0.zip", data=out.getvalue(), method="PUT")
            with opener.open(request, timeout=60):
                pass
            self.names.append(name)

    def install(self, repo: str, dest: Path) -> None:
        app = dest / "app"
        app.mkdir(parents=True)
        (app / "composer.json").write_text(json.dumps({
            "repositories": [{"type": "composer", "url": repo}, {"packagist.org": False}],
            "config": {"secure-http": False}, "require": {n: "^1.0" for n in self.names}}))
        env = {k: v for k, v in os.environ.items() if not k.startswith("COMPOSER")}
        env.update(COMPOSER_HOME=str(dest / "ch"), COMPOSER_CACHE_DIR=str(dest / "cc"), COMPOSER_ALLOW_SUPERUSER="1")
        proc = subprocess.run(["composer", "install", "--no-interaction", "--no-progress"], cwd=app, env=env,
                              capture_output=True, text=True, timeout=ib.INSTALL_TIMEOUT)
        if proc.returncode != 0:
            raise BenchError(f"composer install via {repo} failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
        shutil.rmtree(dest, ignore_errors=True)


SCENARIOS = (GemScenario, ComposerScenario)
