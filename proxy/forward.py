"""Forward-proxy mode: clients set HTTPS_PROXY=depot; CONNECTs to an upstream of a proxy
repository are intercepted (TLS terminated with depot's CA) and answered by that repository
through depot's own HTTP port, so they share its cache, single flight and metrics. Other hosts
are tunnelled untouched (or refused, per config)."""
from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable
from urllib.parse import urlsplit

from depot.registry import FORMATS
from depot.registry.repo import RepoConfig

log = logging.getLogger("depot.forward")

CA_BASENAME = "mitmproxy"               # the file names mitmproxy loads from its confdir (ca/)
CA_NAME = "depot forward-proxy CA"       # what clients see in the certificate
CA_ORGANIZATION = "depot"


@dataclass(frozen=True)
class Mapping:
    """Requests under `prefix` (scheme://host:port/path) go to depot's `/repo/` + rest."""

    prefix: str
    repo: str
    target_prefix: str = ""


def _origin_prefix(url: str) -> str:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.scheme}://{parts.hostname}:{port}{parts.path.rstrip('/')}/"


def mappings(repos: Iterable[RepoConfig]) -> list[Mapping]:
    """Prefixes served by proxy repositories: their upstream, plus hosts their format names
    (e.g. the file host of an index), longest prefix first."""
    found = []
    for repo in repos:
        if not repo.is_proxy or not repo.upstream:
            continue
        for url, target in FORMATS[repo.format].forward_prefixes(repo):
            target = target.strip("/")
            found.append(Mapping(_origin_prefix(url), repo.name, target + "/" if target else ""))
    return sorted(found, key=lambda m: len(m.prefix), reverse=True)


def route(mapped: list[Mapping], url: str) -> str | None:
    """depot path for an absolute request URL, or None if no repository serves it."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    normal = f"{parts.scheme}://{parts.hostname}:{port}{parts.path}"
    for mapping in mapped:
        if normal.startswith(mapping.prefix):
            rest = normal[len(mapping.prefix):]
            query = f"?{parts.query}" if parts.query else ""
            return f"/{mapping.repo}/{mapping.target_prefix}{rest}{query}"
    return None


class DepotAddon:
    """mitmproxy addon: send mapped requests to depot, refuse or tunnel the rest."""

    def __init__(self, mapped: list[Mapping], depot_host: str, depot_port: int, refuse_unknown: bool) -> None:
        self.mapped = mapped
        self.depot_host = depot_host
        self.depot_port = depot_port
        self.refuse_unknown = refuse_unknown
        self.hosts = {urlsplit(m.prefix).hostname for m in mapped}

    def http_connect(self, flow) -> None:  # type: ignore[no-untyped-def]
        from mitmproxy import http
        if self.refuse_unknown and flow.request.host not in self.hosts:
            flow.response = http.Response.make(403, b"depot forward proxy: host not served\n")

    def request(self, flow) -> None:  # type: ignore[no-untyped-def]
        from mitmproxy import http
        path = route(self.mapped, flow.request.pretty_url)
        if path is None:
            if self.refuse_unknown:
                flow.response = http.Response.make(403, b"depot forward proxy: not served\n")
            return
        log.info("forward url=%s depot_path=%s", flow.request.pretty_url, path)
        flow.request.scheme = "http"
        flow.request.host = self.depot_host
        flow.request.port = self.depot_port
        flow.request.path = path
        flow.request.headers["Host"] = f"{self.depot_host}:{self.depot_port}"


def ca_dir(data_dir: Path) -> Path:
    return Path(data_dir) / "ca"


def ensure_ca(data_dir: Path) -> Path:
    """depot's interception CA, created once; returns the PEM certificate path.

    `depot serve --forward-proxy` calls this before it listens and `depot ca export` calls it
    too: an flock on ca/.lock makes check-and-create atomic across processes, and the
    certificate file is written last (and atomically), so its presence means a complete CA."""
    from mitmproxy.certs import CertStore
    directory = ca_dir(data_dir)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    cert = directory / f"{CA_BASENAME}-ca-cert.pem"
    fd = os.open(directory / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        if not (cert.exists() and (directory / f"{CA_BASENAME}-ca.pem").exists()):
            staging = Path(tempfile.mkdtemp(dir=directory, prefix=".new-"))
            try:
                CertStore.create_store(staging, CA_BASENAME, 2048, organization=CA_ORGANIZATION, cn=CA_NAME)
                # the key (mitmproxy-ca.pem) and the rest first, the exported certificate last
                for made in sorted(staging.iterdir(), key=lambda p: p.name == cert.name):
                    os.replace(made, directory / made.name)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
            log.info("created the forward-proxy CA path=%s", cert)
    finally:
        os.close(fd)
    return cert


async def serve_forward(listen: str, repos: Iterable[RepoConfig], data_dir: Path, depot_listen: str,
                        refuse_unknown: bool = False, upstream_ca: str | None = None) -> None:
    """Run the forward proxy until cancelled."""
    from mitmproxy import options
    from mitmproxy.tools.dump import DumpMaster
    host, _, port = listen.rpartition(":")
    depot_host, _, depot_port = depot_listen.rpartition(":")
    mapped = mappings(repos)
    ensure_ca(data_dir)
    hosts = sorted({re.escape(urlsplit(m.prefix).hostname or "") for m in mapped})
    opts = options.Options(listen_host=host, listen_port=int(port), confdir=str(ca_dir(data_dir)))
    master = DumpMaster(opts, with_termlog=False, with_dumper=False)
    # options defined by addons exist only once the master has loaded them
    opts.update(allow_hosts=[f"^{h}(:\\d+)?$" for h in hosts] or ["^$"], stream_large_bodies="64k",
                connection_strategy="lazy")   # never contact the upstream of a mapped request
    if upstream_ca:
        opts.update(ssl_verify_upstream_trusted_ca=upstream_ca)
    master.addons.add(DepotAddon(mapped, depot_host or "127.0.0.1", int(depot_port), refuse_unknown))
    log.info("forward proxy listening address=%s hosts=%s", listen, ",".join(hosts))
    await master.run()


def run_forward_process(listen: str, repos: Iterable[RepoConfig], data_dir: Path, depot_listen: str,
                        refuse_unknown: bool, upstream_ca: str | None) -> None:
    """Process entry point (forked by the server)."""
    asyncio.run(serve_forward(listen, list(repos), data_dir, depot_listen, refuse_unknown, upstream_ca))
