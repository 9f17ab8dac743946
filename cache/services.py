"""The engine's services, built once per process and handed to every format handler."""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from .admin_store import AdminStore
from .types import RepoConfig
from depot.upstreams.client import Timeouts, UpstreamClient

from . import metrics
from .documents import DocumentCache
from .cluster import PgCoordinator
from .evict import evict
from .gate import Policy
from .policy_service import PolicyService, refresh_loop
from .pull import PullThrough
from .serve import MemoryCache
from .stats import add_counts
from .storage import open_storage

log = logging.getLogger("depot.services")

ACCESS_FLUSH_INTERVAL = 2.0


@dataclass
class EngineSettings:
    """The parts of the configuration the engine needs (no format knowledge)."""

    data_dir: Path
    max_size: int
    memory_size: int
    memory_item_max: int
    connect_timeout: float
    read_timeout: float
    retries: int
    public_url: str | None
    trusted_proxies: tuple[str, ...]
    ca_file: str | None = None
    client_timeout: float = 60.0
    workers: int = 1
    policy: Policy = field(default_factory=Policy)
    osv_severity: str | None = None
    storage_kind: str = "local"
    s3: Any = None                       # blobs_s3.S3Settings for storage_kind "s3"
    database_url: str | None = None      # postgresql://… (metadata shared by several nodes)
    node_url: str = ""                   # where other nodes reach this one (internal endpoint)


class Services:
    """blobs, entries, catalog, pull and upstream for one process."""

    def __init__(self, settings: EngineSettings, repos: dict[str, RepoConfig]) -> None:
        self.settings = settings
        self.repos = repos
        self.storage = open_storage(Path(settings.data_dir), settings.storage_kind, s3=settings.s3,
                                    database_url=settings.database_url)
        self.blobs = self.storage.blobs
        self.db = self.storage.local_db          # users, tokens, policy: this node's SQLite
        self.meta_db = self.storage.db           # entries, files, counters: SQLite or PostgreSQL
        self.entries = self.storage.entries
        self.catalog = self.storage.catalog
        self.memory = MemoryCache(settings.memory_size, settings.memory_item_max)
        # rendered documents (merged indexes, rebased metadata): a quarter of the memory budget
        self.documents = DocumentCache(max(settings.memory_size // 4, 1), max(settings.memory_size // 8, 1))
        self.upstream = UpstreamClient(Timeouts(settings.connect_timeout, settings.read_timeout),
                                       settings.retries, settings.ca_file)
        self.cluster = PgCoordinator(settings.database_url, settings.node_url) \
            if settings.database_url else None
        self.pull = PullThrough(self.entries, self.blobs, self.memory, self.upstream,
                                on_stored=self._stored, cross_process=settings.workers > 1,
                                cluster=self.cluster)
        self.metrics = _PublishMetrics(self.pull)
        self.admin = AdminStore(self.db)
        self.policy = PolicyService(self.db, settings.policy, repos, settings.osv_severity)
        self._policy_task: asyncio.Task[Any] | None = None
        self.auth: Any = None     # set by the front door: proxy.auth.Authenticator
        self.audit: Any = None    # cache.accounts.AuditLog
        self._evicting: asyncio.Task[Any] | None = None
        self._background: asyncio.Task[Any] | None = None
        metrics.QUOTA.set(settings.max_size)

    def public_base(self, request: web.Request) -> str:
        """Base URL clients see: config public_url, X-Forwarded-* of trusted proxies, or Host."""
        if self.settings.public_url:
            return self.settings.public_url
        scheme, host = request.scheme, request.host
        if request.remote in self.settings.trusted_proxies:
            scheme = request.headers.get("X-Forwarded-Proto", scheme).split(",")[0].strip()
            host = request.headers.get("X-Forwarded-Host", host).split(",")[0].strip()
        return f"{scheme}://{host}"

    def _format_of(self, repo: str) -> str:
        """The format label of a repository ("unknown" once it is no longer configured)."""
        return self.repos[repo].format if repo in self.repos else "unknown"

    def _stored(self, size: int) -> None:
        if self._evicting is None or self._evicting.done():
            self._evicting = asyncio.get_running_loop().create_task(self.evict_now())

    async def evict_now(self) -> None:
        await self.entries.flush_access()
        result = await asyncio.to_thread(evict, self.meta_db, self.blobs, self.settings.max_size)
        for repo, count in (result.by_repo or {}).items():
            metrics.EVICTIONS.labels(repo, self._format_of(repo)).inc(count)
        if result.bytes_freed:
            metrics.EVICTED_BYTES.inc(result.bytes_freed)
        if result.by_repo:
            # evicted rows may still be held in this process's memory (and, with object storage,
            # their blobs are gone): forget them all rather than answer from a stale copy
            self.entries.memory.clear()

    async def start(self) -> None:
        self._background = asyncio.get_running_loop().create_task(self._housekeeping())
        await self.policy.refresh()
        self._policy_task = asyncio.get_running_loop().create_task(refresh_loop(self.policy))

    async def _housekeeping(self) -> None:
        while True:
            await asyncio.sleep(ACCESS_FLUSH_INTERVAL)
            try:
                await self.entries.flush_access()
                await self.admin.flush()
                await add_counts(self.meta_db, self.pull.all_metrics())
                for repo, stat in (await self.entries.stats()).items():
                    metrics.STORE_BYTES.labels(repo, self._format_of(repo)).set(stat["bytes"])
                    metrics.ENTRIES.labels(repo, self._format_of(repo)).set(stat["entries"])
            except Exception:  # keep housekeeping alive whatever happens
                log.exception("housekeeping failed")

    async def close(self) -> None:
        for task in (self._background, self._policy_task):
            if task is not None:
                task.cancel()
        await self.pull.close()
        try:
            await self.entries.flush_access()
            await self.admin.flush()
            await add_counts(self.meta_db, self.pull.all_metrics())
        except Exception:
            log.exception("final access flush failed")
        await self.upstream.close()
        if self.cluster is not None:
            self.cluster.close()
        self.storage.close()


class _PublishMetrics:
    """What format handlers report directly."""

    def __init__(self, pull: PullThrough) -> None:
        self._pull = pull

    def publish(self, repo: RepoConfig) -> None:
        self._pull.metrics(repo).publishes.inc()

    def hosted(self, repo: RepoConfig) -> None:
        self._pull.metrics(repo).result("hosted")

    def repo(self, repo: RepoConfig) -> Any:
        return self._pull.metrics(repo)
