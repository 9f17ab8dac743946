"""Prometheus metrics of the engine (names prefixed depot_; labels repository and format).

With several worker processes, prometheus_client's multiprocess mode is used: the CLI sets
PROMETHEUS_MULTIPROC_DIR before this module is imported.
"""
from __future__ import annotations

import os
from typing import Any, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client import multiprocess

LABELS = ("repository", "format")
MULTIPROC = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))

REQUESTS = Counter("depot_requests_total", "Requests answered, by cache result, counted once at the repository "
                   "that answered (a group's member)", LABELS + ("result",))
# what a group served: its members' answers to requests made through the group (not added to totals)
GROUP_REQUESTS = Counter("depot_group_requests_total", "Requests answered through a group, by the answering "
                         "member's cache result", LABELS + ("result",))
VIA_GROUP = "depot.via_group"       # request key: the group a request came through (set by the front door)
VIA_PREFIX = "via:"                 # counters-table names of what a group served
BYTES_SERVED = Counter("depot_bytes_served_total", "Body bytes sent to clients, by where they came from",
                       LABELS + ("source",))
UPSTREAM_REQUESTS = Counter("depot_upstream_requests_total", "Requests sent upstream, by status",
                            LABELS + ("status",))
UPSTREAM_LATENCY = Histogram("depot_upstream_latency_seconds", "Time to upstream response headers",
                             LABELS, buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30))
UPSTREAM_BYTES = Counter("depot_upstream_bytes_total", "Body bytes received from upstreams", LABELS)
INFLIGHT = Gauge("depot_inflight_fetches", "Upstream fetches in progress", LABELS,
                 multiprocess_mode="livesum")
COALESCED = Counter("depot_coalesced_total", "Clients that joined a fetch already in progress", LABELS)
EVICTIONS = Counter("depot_evictions_total", "Proxy entries evicted to stay under cache.max_size",
                    LABELS)
EVICTED_BYTES = Counter("depot_evicted_bytes_total", "Blob bytes freed by eviction", ())
# `depot gc` runs in its own process: it adds its run to the database (proxy.observe.record_gc_run)
# and every worker exports the persisted totals, so these only ever grow (gauges set to the totals)
GC_RUNS = Gauge("depot_gc_runs_total", "Garbage collection runs (all time)", (), multiprocess_mode="max")
GC_FREED = Gauge("depot_gc_freed_bytes_total", "Bytes freed by garbage collection (all time)", (),
                 multiprocess_mode="max")
PUBLISHES = Counter("depot_publishes_total", "Packages or files published to hosted repositories", LABELS)
STORE_BYTES = Gauge("depot_store_bytes", "Bytes of proxy content in the store", LABELS,
                    multiprocess_mode="max")
ENTRIES = Gauge("depot_entries", "Proxy entries in the store", LABELS, multiprocess_mode="max")
QUOTA = Gauge("depot_cache_max_bytes", "Configured cache.max_size", (), multiprocess_mode="max")
# HTTP answers by status code, counted by proxy.observe's middleware (repository "-": no repository)
RESPONSES = Counter("depot_responses_total", "HTTP responses sent to clients, by status code",
                    LABELS + ("code",))
# process metrics: prometheus_client's multiprocess mode has no process_* collector, so each
# worker samples itself (proxy.observe) and the exposition sums the live workers
PROCESS_RSS = Gauge("depot_process_resident_memory_bytes", "Resident memory of the live worker processes",
                    (), multiprocess_mode="livesum")
PROCESS_FDS = Gauge("depot_process_open_fds", "Open file descriptors of the live worker processes", (),
                    multiprocess_mode="livesum")
PROCESS_CPU = Counter("depot_process_cpu_seconds_total", "User and system CPU time of all worker processes", ())
# repeat hits answered before routing (cache.pull's hot_response): how much of the traffic the
# fast path takes, per repository (a format whose hits never show here does extra work per hit)
HOT_HITS = Counter("depot_hot_hits_total", "Cache hits answered by the fast path before routing", LABELS)
WORKERS = Gauge("depot_workers", "Live worker processes", (), multiprocess_mode="livesum")


def render(node: str | None = None) -> bytes:
    """The exposition text: this process alone, or the sum over all workers; with `node`, every
    sample carries node="<node>" so that one Prometheus tells several depot nodes apart."""
    if MULTIPROC:
        registry: Any = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        from prometheus_client import REGISTRY
        registry = REGISTRY
    return generate_latest(registry if node is None else _NodeLabelled(registry, node))


class _NodeLabelled:
    """A registry's metric families with a `node` label added to every sample."""

    def __init__(self, registry: Any, node: str) -> None:
        self.registry, self.node = registry, node

    def collect(self) -> Iterator[Metric]:
        for family in self.registry.collect():
            labelled = Metric(family.name, family.documentation, family.type, family.unit)
            labelled.samples = [sample._replace(labels={**sample.labels, "node": self.node})
                                for sample in family.samples]
            yield labelled


class RepoMetrics:
    """Metric children bound to one repository (label lookups done once)."""

    def __init__(self, repo: str, fmt: str) -> None:
        self.repo = repo
        self.fmt = fmt
        self._results = {r: REQUESTS.labels(repo, fmt, r)
                         for r in ("hit", "miss", "stale", "revalidated", "negative", "error", "hosted")}
        self.from_cache = BYTES_SERVED.labels(repo, fmt, "cache")
        self.from_upstream = BYTES_SERVED.labels(repo, fmt, "upstream")
        self.upstream_latency = UPSTREAM_LATENCY.labels(repo, fmt)
        self.upstream_bytes = UPSTREAM_BYTES.labels(repo, fmt)
        self.inflight = INFLIGHT.labels(repo, fmt)
        self.coalesced = COALESCED.labels(repo, fmt)
        self.publishes = PUBLISHES.labels(repo, fmt)
        self.unflushed: dict[str, int] = {}
        self.hot = HOT_HITS.labels(repo, fmt)

    def result(self, name: str) -> None:
        self._results[name].inc()
        self.unflushed[name] = self.unflushed.get(name, 0) + 1

    def via(self, name: str) -> None:
        """Count an answer a member gave to a request through this group."""
        GROUP_REQUESTS.labels(self.repo, self.fmt, name).inc()
        key = VIA_PREFIX + name
        self.unflushed[key] = self.unflushed.get(key, 0) + 1

    def take_unflushed(self) -> dict[str, int]:
        """Result counts since the last call (persisted for `depot stats`)."""
        counts, self.unflushed = self.unflushed, {}
        return counts

    def upstream_status(self, status: int | str) -> None:
        UPSTREAM_REQUESTS.labels(self.repo, self.fmt, str(status)).inc()

    def take_bytes(self) -> dict[str, int]:
        """Bytes served by source since the last call, as `activity` names (bytes:cache, …),
        read from this process's own depot_bytes_served_total children (nothing on the hit path)."""
        seen: dict[str, float] = self.__dict__.setdefault("_bytes_seen", {})
        out = {}
        for source, child in (("cache", self.from_cache), ("upstream", self.from_upstream)):
            value = child._value.get()        # this process's value (also in multiprocess mode)
            if value > seen.get(source, 0.0):
                out["bytes:" + source] = int(value - seen.get(source, 0.0))
                seen[source] = value
        return out

CLEANUP_DELETED = Counter("depot_cleanup_deleted_total",
                          "Versions, tags and cached entries removed by cleanup policies", LABELS + ("policy",))
CLEANUP_BYTES = Counter("depot_cleanup_reclaimed_bytes_total",
                        "Bytes of the files and entries cleanup policies removed (blobs go at the next gc)", LABELS)
