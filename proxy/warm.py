"""`depot warm REPO FILE`: prefetch what a lockfile or list names through a running depot.

Every request goes through depot's own HTTP API (`--url`, default: the configured listen
address), so single flight, metrics, verification and URL rewriting apply exactly as for a
client. What FILE is, is decided by its name and the repository's format:

* `package-lock.json` / `npm-shrinkwrap.json` (npm; lockfile v1, v2, v3): the packument of
  every package (as npm asks for it) and every tarball; a tarball without `resolved` is
  located through the packument.
* `go.sum` (go): `<module>/@v/<version>.info|.mod|.zip` (only `.mod` for `/go.mod` lines).
* a pypi repository: a requirements file with `==` pins: the project page (PEP 691 JSON), then
  every file of the pinned version and its PEP 658 metadata.
* an oci repository: image references `name[:tag|@digest]`: manifests, indexes, config, layers.
* anything else: a plain list of paths inside the repository (`#` comments, blank lines).

A list for a format this depot does not have is skipped with a message. Progress (files,
bytes, rate, ETA) goes to stderr; the summary (fetched, already cached, failed) to stdout.
Exit status 1 when anything failed.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable
from urllib.parse import quote

from depot.registry import warm_plans as plans
from .progress import Progress, human_bytes, human_seconds

log = logging.getLogger("depot.warm")

CHUNK = 256 * 1024
KIND_FORMAT = {"requirements": "pypi", "npm": "npm", "go": "go", "images": "oci"}


def register(sub: argparse._SubParsersAction, common: Callable[..., None]) -> None:
    """Add the `warm` subcommand."""
    warm = sub.add_parser("warm", help="prefetch what a lockfile or list names into a proxy repository")
    warm.add_argument("repo", help="repository to fill (a proxy, or a group with proxy members)")
    warm.add_argument("file", help="requirements.txt, package-lock.json, go.sum, image list or path list")
    warm.add_argument("--jobs", "-j", type=int, default=8, help="concurrent requests (default 8)")
    warm.add_argument("--url", help="depot's base URL (default: from the configured listen address)")
    warm.add_argument("--insecure", action="store_true", help="do not verify depot's TLS certificate")
    warm.add_argument("--user", help="authenticate as this user (HTTP Basic; proxies are usually readable anonymously)")
    warm.add_argument("--password-env", metavar="VAR",
                      help="environment variable holding --user's password or API token")
    which = warm.add_mutually_exclusive_group()
    which.add_argument("--platform", metavar="OS-CPU[-LIBC]",
                       help="npm lockfiles: the optional binaries of this platform, e.g. linux-x64-glibc, "
                            "darwin-arm64 (default: this machine's)")
    which.add_argument("--all-platforms", action="store_true",
                       help="npm lockfiles: the optional binaries of every platform (build farms)")
    common(warm, data=False)


@dataclass
class Tally:
    """What happened to every request."""

    fetched: int = 0
    cached: int = 0
    failed: list[str] = field(default_factory=list)
    bytes: int = 0


def cmd_warm(args: argparse.Namespace) -> int:
    """Plan the requests for FILE and run them with --jobs concurrency."""
    from .cli import _load
    config = _load(args)
    base = (args.url or _listen_url(config.listen, https=config.tls_cert is not None)).rstrip("/")
    if args.jobs < 1:
        print("depot: warm: --jobs must be at least 1", file=sys.stderr)
        return 2
    from depot.registry import npm_platform
    try:
        auth = _auth(args.user, args.password_env)
        platform = None if args.all_platforms else (
            npm_platform.parse(args.platform) if args.platform else npm_platform.machine())
    except (plans.PlanError, ValueError) as exc:
        print(f"depot: warm: {exc}", file=sys.stderr)
        return 2
    path = Path(args.file)
    try:
        text = path.read_text()
    except OSError as exc:
        print(f"depot: warm: cannot read {path}: {exc.strerror}", file=sys.stderr)
        return 2
    import asyncio
    try:
        return asyncio.run(_warm(base, args.repo, path, text, args.jobs, auth, args.insecure, platform))
    except plans.PlanError as exc:
        print(f"depot: warm: {exc}", file=sys.stderr)
        return 2


def _auth(user: str | None, password_env: str | None) -> Any:
    """aiohttp.BasicAuth for --user with the secret from --password-env (never from argv)."""
    if not user:
        if password_env:
            raise plans.PlanError("--password-env needs --user")
        return None
    import os

    import aiohttp
    if not password_env or password_env not in os.environ:
        raise plans.PlanError("--user needs --password-env naming a set environment variable")
    return aiohttp.BasicAuth(user, os.environ[password_env])


def _listen_url(listen: str, https: bool = False) -> str:
    """The URL of a listen address (a wildcard address is reached on loopback)."""
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    scheme = "https" if https else "http"
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


async def _warm(base: str, repo: str, path: Path, text: str, jobs: int, auth: Any = None,
                insecure: bool = False, platform: Any = None) -> int:
    import aiohttp
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=300)
    connector = aiohttp.TCPConnector(limit=jobs, ssl=False if insecure else True)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector, auth=auth) as session:
        fmt = await _repo_format(session, base, repo)
        mount = f"{base}/{quote(repo)}"
        from depot.registry import FORMATS
        planned = FORMATS[fmt].warm_plan(mount, path.name, text) if fmt in FORMATS else None
        if planned is not None:   # the format reads its own lockfile
            return await _run_plan(session, repo, jobs, *planned)
        kind = plans.detect(path.name, text, fmt)
        wanted = KIND_FORMAT.get(kind)
        if wanted and wanted != fmt:
            if wanted not in FORMATS:
                print(f"warm: {path.name} is a {wanted} list, and this depot has no {wanted} format; skipped")
                return 0
            raise plans.PlanError(f"{repo} is a {fmt} repository; {path.name} lists {wanted} packages")
        initial, notes = plans.plan(kind, mount, text, platform)
        return await _run_plan(session, repo, jobs, initial, notes)


async def _run_plan(session: Any, repo: str, jobs: int, initial: list[plans.Job], notes: list[str]) -> int:
    """Fetch every job (and what their answers lead to) with progress; the exit status."""
    progress = Progress(f"warm {repo}", total=len(initial))
    for note in notes:
        progress.message(f"warm: {note}")
    started = time.monotonic()
    tally = await Runner(session, jobs, progress).run(initial)
    progress.finish()
    for failure in tally.failed[:50]:
        print(f"warm: failed {failure}", file=sys.stderr)
    elapsed = time.monotonic() - started
    print(f"warm: {tally.fetched} fetched, {tally.cached} already cached, {len(tally.failed)} failed"
          f" ({human_bytes(tally.bytes)} in {human_seconds(elapsed)})")
    return 1 if tally.failed else 0


async def _repo_format(session: Any, base: str, repo: str) -> str:
    """The repository's format, from /-/api/repositories."""
    import aiohttp
    try:
        async with session.get(f"{base}/-/api/repositories") as resp:
            if resp.status in (401, 403):
                raise plans.PlanError(f"{base} refused the repository list ({resp.status}): "
                                      "give --user and --password-env")
            if resp.status != 200:
                raise plans.PlanError(f"{base}/-/api/repositories answered {resp.status}")
            listing = await resp.json(content_type=None)
    except aiohttp.ClientError as exc:
        raise plans.PlanError(f"cannot reach depot at {base}: {exc}") from None
    for item in listing:
        if item.get("name") == repo:
            return str(item.get("format"))
    if session.auth is None:        # private repositories are listed only to those who may read them
        raise plans.PlanError(f"no repository named {repo!r} readable anonymously at {base} (401 without "
                              "credentials: give --user and --password-env if it is private)")
    raise plans.PlanError(f"no repository named {repo!r} at {base} that {session.auth.login} may read")


class Runner:
    """Runs jobs (and the jobs their answers lead to) with bounded concurrency, each URL once."""

    def __init__(self, session: Any, jobs: int, progress: Progress) -> None:
        import asyncio                                  # imported late: `depot` starts faster
        self.session = session
        self.jobs = jobs
        self.progress = progress
        self.tally = Tally()
        self.seen: set[str] = set()
        self.queue: asyncio.Queue[plans.Job] = asyncio.Queue()

    def _add(self, job: plans.Job) -> bool:
        if job.url in self.seen:
            return False
        self.seen.add(job.url)
        self.queue.put_nowait(job)
        return True

    async def run(self, initial: list[plans.Job]) -> Tally:
        import asyncio
        self.progress.total = sum(self._add(job) for job in initial)
        workers = [asyncio.create_task(self._work()) for _ in range(self.jobs)]
        try:
            await self.queue.join()
        finally:
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
        return self.tally

    async def _work(self) -> None:
        while True:
            job = await self.queue.get()
            try:
                more = await self._one(job)
                self.progress.add_total(sum(self._add(follow) for follow in more))
            except Exception as exc:                      # never let a worker die with work queued
                log.exception("warm: unexpected error url=%s", job.url)
                self._fail(job, f"{type(exc).__name__}: {exc}")
            finally:
                self.queue.task_done()

    async def _one(self, job: plans.Job) -> list[plans.Job]:
        """GET one URL, count it, and return the follow-up jobs its body names."""
        import asyncio

        import aiohttp
        headers = {"Accept": job.accept} if job.accept else {}
        body = bytearray()
        nbytes = 0
        try:
            async with self.session.get(job.url, headers=headers) as resp:
                if resp.status != 200:
                    return self._fail(job, f"HTTP {resp.status}")
                async for chunk in resp.content.iter_chunked(CHUNK):
                    nbytes += len(chunk)
                    self.progress.advance(0, len(chunk))
                    if job.then is not None:
                        body += chunk
                cache, final_url = resp.headers.get("X-Cache", ""), str(resp.url)
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            return self._fail(job, f"{type(exc).__name__}: {exc}")
        self.tally.bytes += nbytes
        if cache.upper() in ("HIT", "STALE", ""):          # served from the store (or hosted)
            self.tally.cached += 1
        else:
            self.tally.fetched += 1
        self.progress.advance(1)
        if job.then is None:
            return []
        try:
            return job.then(bytes(body), final_url)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            self.tally.failed.append(f"{job.url}: {type(exc).__name__}: {exc}")
            return []

    def _fail(self, job: plans.Job, reason: str) -> list[plans.Job]:
        log.debug("warm failed url=%s reason=%s", job.url, reason)
        self.tally.failed.append(f"{job.url}: {reason}")
        self.progress.advance(1)
        return []
