"""Running the app: one process, or N worker processes on listening sockets the master bound."""
from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import signal
import socket
import ssl
import sys
import time
from typing import Any
from pathlib import Path

from aiohttp import web

from . import sdnotify
from .config import Config
from .guard import GuardedSockSite

log = logging.getLogger("depot.server")
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Linux: get SIGKILL when the master dies, so `kill -9 master` leaves no orphans."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass


def run_worker(config: Config, sock: socket.socket) -> None:
    """Serve on `sock` (bound by the master) in this process until SIGTERM/SIGINT."""
    from .app import build_app, with_hot_path
    host, port = config.host_port
    app = build_app(config)

    async def main() -> None:
        from .access_log import BufferedAccessLogger
        runner = web.AppRunner(app, access_log=logging.getLogger("depot.access") if config.access_log else None,
                               access_log_class=BufferedAccessLogger,   # buffered, written by a thread
                               handler_cancellation=False, keepalive_timeout=config.keepalive_timeout)
        await runner.setup()
        assert runner.server is not None
        runner.server.request_handler = with_hot_path(app, runner.server.request_handler)
        site = GuardedSockSite(runner, sock, config.header_timeout, ssl_context=_tls_context(config))
        await site.start()
        log.info("listening pid=%d address=%s:%d", os.getpid(), host, port)
        sdnotify.ready()  # systemd Type=notify; a no-op without NOTIFY_SOCKET
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await runner.cleanup()
        from .access_log import flush
        flush()

    asyncio.run(main())


def _tls_context(config: Config) -> ssl.SSLContext | None:
    """HTTPS when the config names a certificate and key."""
    if config.tls_cert is None or config.tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(config.tls_cert), str(config.tls_key))
    return context


def _run_forward(config: Config) -> None:
    from .forward import run_forward_process
    fwd = config.forward_proxy
    assert fwd.listen is not None
    run_forward_process(fwd.listen, config.repositories.values(), config.data_dir, config.listen,
                        fwd.refuse_unknown, config.upstream.ca_file)


def _child(config: Config, sockets: list[socket.socket], slot: int) -> None:
    """A forked worker (slot >= 0, on sockets[slot]) or the forward proxy (slot < 0); never returns."""
    _die_with_parent()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    code = 0
    try:
        for index, sock in enumerate(sockets):
            if index != slot:
                sock.close()    # a worker holds only its own socket
        if slot < 0:
            _run_forward(config)
        else:
            run_worker(config, sockets[slot])
    except BaseException:
        log.exception("process failed slot=%d", slot)
        code = 1
    finally:
        os._exit(code)


def run(config: Config, sockets: list[socket.socket]) -> int:
    """Serve with config.workers processes (+1 for the forward proxy), worker i on sockets[i]
    (bound by the master, kept open by it across worker restarts); restart any that dies, after
    removing its temp files."""
    if config.workers == 1 and config.forward_proxy.listen is None:
        run_worker(config, sockets[0])
        return 0
    children: dict[int, int] = {}
    FORWARD = -1

    def spawn(slot: int) -> None:
        pid = os.fork()
        if pid == 0:
            _child(config, sockets, slot)
        children[pid] = slot

    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    for slot in range(config.workers):
        spawn(slot)
    if config.forward_proxy.listen is not None:
        spawn(FORWARD)
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        dead_slot: Any = children.pop(pid) if pid in children else None
        if dead_slot is not None and not stopping:
            log.warning("worker died pid=%d status=%d; restarting", pid, status)
            removed = clean_worker_files(config.data_dir, pid)
            if removed:
                log.info("cleaned temp files of dead worker pid=%d files=%d", pid, removed)
            time.sleep(0.5)
            spawn(dead_slot)
    return 0


def clean_worker_files(data_dir: Path, pid: int) -> int:
    """Remove the partial files a killed worker left behind (their names carry its pid)."""
    from depot.cache.blobs import BlobStore
    from depot.cache.flight import Flights
    tmp = BlobStore(data_dir)
    return tmp.remove_temp_of(pid) + Flights(tmp.tmp).clean_process(pid)


def setup_logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level, logging.INFO), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
