"""Observability glue of the front door: the response-code middleware and the process sampler.

* `depot_responses_total{repository,format,code}` counts every answer to a repository request
  (``/<repo>/…`` and ``/v2/…``); requests that name no configured repository count under
  repository "-" and format "-" (so unknown names cannot blow up the label set).
* prometheus_client's multiprocess mode has no ``process_*`` collector, so each worker samples
  its own resident memory, open descriptors and CPU time every few seconds into
  `depot_process_resident_memory_bytes` / `depot_process_open_fds` / `depot_workers` (gauges
  with multiprocess_mode "livesum": the exposition sums the live workers) and
  `depot_process_cpu_seconds_total` (a counter: CPU of every worker that ever ran). Files of
  live gauges left by dead workers are removed (`mark_process_dead`) so they stop counting.
* `depot gc` runs in a process of its own: `record_gc_run` persists each run in the counters
  table and the sampler exports the totals as `depot_gc_runs_total` / `depot_gc_freed_bytes_total`.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import multiprocess

from depot.cache import activity, metrics
from depot.cache.stats import Database, gc_totals, record_gc_run  # noqa: F401  (record_gc_run: CLI)

log = logging.getLogger("depot.observe")

SAMPLE_INTERVAL = 2.0
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
LIVE_FILE = re.compile(r"^gauge_live[a-z]+_(\d+)\.db$")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def repository_of(request: web.Request, repos: dict[str, Any]) -> tuple[str, str]:
    """(repository, format) labels for a request; ("-", "-") when it names no repository."""
    name = request.match_info.get("repo")
    if name is None and request.path.startswith("/v2/"):
        first = request.path[4:].split("/", 1)[0]
        name = first if first in repos else next(
            (r.name for r in repos.values() if getattr(r, "mirror", False)), None)
    repo = repos.get(name) if name else None
    return (repo.name, repo.format) if repo is not None else ("-", "-")


def _is_repository_request(request: web.Request) -> bool:
    return not request.path.startswith("/-/")


class ResponseCounts:
    """Per-process tallies of depot_responses_total, added to the shared counter in batches.

    A multiprocess counter increment costs a lock and an mmap write; the hot path only bumps a
    dict entry here and the sampler flushes every SAMPLE_INTERVAL (and at shutdown).
    """

    def __init__(self) -> None:
        self.pending: dict[tuple[str, str, str], int] = {}

    def add(self, labels: tuple[str, str, str]) -> None:
        self.pending[labels] = self.pending.get(labels, 0) + 1

    def flush(self) -> None:
        pending, self.pending = self.pending, {}
        for labels, count in pending.items():
            metrics.RESPONSES.labels(*labels).inc(count)


RESPONSE_COUNTS = ResponseCounts()


def response_counter(services_of: Callable[[web.Request], Any],
                     counts: ResponseCounts = RESPONSE_COUNTS) -> Any:
    """Middleware counting each repository request's status code (HTTP errors and 500s too)."""
    def count(request: web.Request, code: int, detail: str) -> None:
        services = services_of(request)
        repo, fmt = repository_of(request, services.repos if services is not None else {})
        counts.add((repo, fmt, str(code)))
        if code >= 500 and repo != "-":      # the repository page lists its last 5xx answers
            activity.RECORDER.error(repo, "answer", code, request.path, detail)

    @web.middleware
    async def count_responses(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not _is_repository_request(request):
            return await handler(request)
        code, detail = 500, "internal error"
        try:
            response = await handler(request)
            code = response.status
            if code >= 500:
                detail = _first_line(getattr(response, "body", None))
            return response
        except web.HTTPException as exc:
            code, detail = exc.status, exc.text or exc.reason
            raise
        except asyncio.CancelledError:
            code = 499  # the client went away before an answer was made
            raise
        except Exception as exc:
            detail = f"internal error: {type(exc).__name__}"
            raise
        finally:
            count(request, code, detail)
    return count_responses


def _first_line(body: Any) -> str:
    """A short description of an error answer from its body (JSON or text), for the UI."""
    if not isinstance(body, (bytes, bytearray)):
        return ""
    text = bytes(body[:400]).decode("utf-8", "replace").strip()
    return text.splitlines()[0][:300] if text else ""


def _rss_bytes() -> int:
    with open("/proc/self/statm", "rb") as statm:
        return int(statm.read().split()[1]) * PAGE_SIZE


def _open_fds() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 0


def forget_dead_workers(directory: str | None = None) -> list[int]:
    """Remove the live-gauge files of processes that no longer exist; returns their PIDs."""
    directory = directory or os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        return []
    dead = set()
    for path in Path(directory).glob("gauge_live*_*.db"):
        match = LIVE_FILE.match(path.name)
        if match is None:
            continue
        pid = int(match.group(1))
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            dead.add(pid)
        except PermissionError:
            pass
    for pid in dead:
        multiprocess.mark_process_dead(pid, directory)
    return sorted(dead)


async def export_gc_totals(db: Database) -> None:
    """Set depot_gc_* to the totals `depot gc` runs persisted."""
    values = await gc_totals(db)
    metrics.GC_RUNS.set(values.get("gc_runs", 0))
    metrics.GC_FREED.set(values.get("gc_freed_bytes", 0))


class ProcessSampler:
    """Samples this worker's RSS, descriptors and CPU time into the depot_process_* metrics."""

    def __init__(self, db: Database | None = None) -> None:
        self.cpu_reported = 0.0
        self.db = db

    def sample(self) -> None:
        times = os.times()
        cpu = times.user + times.system
        if cpu > self.cpu_reported:
            metrics.PROCESS_CPU.inc(cpu - self.cpu_reported)
            self.cpu_reported = cpu
        metrics.PROCESS_RSS.set(_rss_bytes())
        metrics.PROCESS_FDS.set(_open_fds())
        metrics.WORKERS.set(1)

    async def run(self) -> None:
        """Sample until cancelled; a failure is logged and the loop goes on."""
        while True:
            try:
                self.sample()
                RESPONSE_COUNTS.flush()
                if self.db is not None:
                    await export_gc_totals(self.db)
                if metrics.MULTIPROC:
                    await asyncio.to_thread(forget_dead_workers)
            except Exception:  # never let sampling take the worker down
                log.exception("process sampling failed")
            await asyncio.sleep(SAMPLE_INTERVAL)


async def _sampler_ctx(app: web.Application) -> AsyncIterator[None]:
    from .app import SERVICES
    services = app.get(SERVICES)
    sampler = ProcessSampler(services.db if services is not None else None)
    task = asyncio.get_running_loop().create_task(sampler.run())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    RESPONSE_COUNTS.flush()


def install(app: web.Application) -> None:
    """Add the response counter middleware and the process sampler to an application."""
    from .app import SERVICES
    app.middlewares.insert(0, response_counter(lambda request: request.app.get(SERVICES)))
    app.cleanup_ctx.append(_sampler_ctx)
