"""The access log, cheap enough to leave on: a request only appends a tuple to a list; a thread
formats the lines and writes them in one write per batch (like nginx's `access_log … buffer=`),
at most FLUSH_SECONDS later. Lines look like the logging module's, logger name depot.access."""
from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
import time
from typing import Any

from aiohttp.abc import AbstractAccessLogger

FLUSH_SECONDS = 0.05      # a line reaches stderr within this (tests and `journalctl -f` see it at once)
MAX_BATCH = 4096          # a burst is written before the timer fires
LOGGER = "depot.access"


class _Sink:
    """Pending entries and the writer thread (one per process, started on first use)."""

    def __init__(self) -> None:
        self.pending: list[tuple[Any, ...]] = []
        self.wake = threading.Event()
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None
        self.fd = sys.stderr.fileno() if hasattr(sys.stderr, "fileno") else 2

    def add(self, entry: tuple[Any, ...]) -> None:
        self.pending.append(entry)        # list.append is atomic under the GIL; no lock on the loop
        if self.thread is None:
            self._start()
        elif len(self.pending) >= MAX_BATCH:
            self.wake.set()

    def _start(self) -> None:
        with self.lock:
            if self.thread is None:
                self.thread = threading.Thread(target=self._run, name="depot-access-log", daemon=True)
                self.thread.start()
                atexit.register(self.flush)

    def _run(self) -> None:
        while True:
            self.wake.wait(FLUSH_SECONDS)
            self.wake.clear()
            self.flush()

    def flush(self) -> None:
        """Format and write everything pending (thread-safe)."""
        with self.lock:
            batch, self.pending = self.pending, []
            if not batch:
                return
            data = "".join(_line(entry) for entry in batch).encode("utf-8", "replace")
            try:
                while data:
                    data = data[os.write(self.fd, data):]
            except OSError:
                pass


def _line(entry: tuple[Any, ...]) -> str:
    when, remote, first, status, length, took, x_cache = entry
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(when)) + f",{int(when % 1 * 1000):03d}"
    return f'{stamp} INFO {LOGGER} {remote} "{first}" {status} {length} {took:.6f}s "{x_cache}"\n'


SINK = _Sink()


class BufferedAccessLogger(AbstractAccessLogger):
    """aiohttp's access logger interface, writing through SINK (format: %a "%r" %s %b %Tf "X-Cache")."""

    def log(self, request: Any, response: Any, time_taken: float) -> None:
        version = request.version
        first = f"{request.method} {request.path_qs} HTTP/{version.major}.{version.minor}"
        SINK.add((time.time(), request.remote or "-", first, response.status, response.body_length,
                  time_taken, response.headers.get("X-Cache", "-")))

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)


def flush() -> None:
    """Write what is pending now (at shutdown)."""
    SINK.flush()
