"""The per-repository numbers of the web UI: sparklines of requests, hits, misses, bytes served
and bytes saved (last hour per minute, or last 24 h per 15 minutes), hit ratio and bytes saved
since start, the most downloaded packages and the last upstream failures / 5xx answers.

The sparklines come from the per-minute activity the engine writes with its counters
(cache.activity), the totals from the very counters /-/metrics exports (summed over workers),
so the page adds up with Prometheus. Server-rendered inline SVG, no script.
`/-/api/repositories/<name>/activity` answers the same numbers as JSON.
"""
from __future__ import annotations

import asyncio
import html
import time
from dataclasses import dataclass
from typing import Any, Callable

from aiohttp import web

from depot.cache import activity
from depot.cache.metrics import VIA_PREFIX
from depot.registry.repo import RepoConfig

from . import visibility
from .progress import human_bytes
from .ui_browse import HIDDEN_SUFFIXES

HITS = ("hit", "stale", "revalidated")
LOOKUPS = HITS + ("miss", "error")
ALL_RESULTS = LOOKUPS + ("negative", "hosted")


@dataclass(frozen=True)
class Range:
    """A sparkline window: `points` buckets of `step` minutes ending at the current minute."""

    label: str
    points: int
    step: int


RANGES = {"1h": Range("last hour, per minute", 60, 1), "24h": Range("last 24 hours, per 15 minutes", 96, 15)}
# series name -> (caption, activity names summed, number format)
SERIES: dict[str, tuple[str, tuple[str, ...], Callable[[int], str]]] = {
    "requests": ("requests", ALL_RESULTS, lambda n: f"{n:,}"),
    "hits": ("hits", HITS, lambda n: f"{n:,}"),
    "misses": ("misses", ("miss",), lambda n: f"{n:,}"),
    "negative": ("negative-cache answers", ("negative",), lambda n: f"{n:,}"),
    "errors": ("errors", ("error",), lambda n: f"{n:,}"),
    "bytes_served": ("bytes served", ("bytes:cache", "bytes:upstream"), human_bytes),
    "bytes_saved": ("bytes saved (served from cache)", ("bytes:cache",), human_bytes),
}
GROUP_SERIES = ("requests", "hits", "misses", "negative", "errors")      # a group serves no bytes of its own
HOSTED_SERIES = ("requests", "bytes_served")


def e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def series_names(repo: RepoConfig) -> tuple[str, ...]:
    if repo.is_group:
        return GROUP_SERIES
    return HOSTED_SERIES if repo.is_hosted else tuple(SERIES)


def bucketed(minutes: dict[int, dict[str, int]], names: tuple[str, ...], window: Range, now_minute: int,
             prefix: str = "") -> list[int]:
    """Per-bucket sums of `names` (oldest first), the last bucket ending at `now_minute`."""
    first = now_minute - window.points * window.step + 1
    out = [0] * window.points
    for minute, counts in minutes.items():
        if minute < first or minute > now_minute:
            continue
        out[(minute - first) // window.step] += sum(counts.get(prefix + n, 0) for n in names)
    return out


async def repository_activity(services: Any, repo: RepoConfig, window: Range) -> dict[str, Any]:
    """Everything the page and the JSON show for one repository."""
    from .ui import live_counts
    now_minute = int(time.time() // 60)
    store = activity.ActivityStore(services.meta_db)
    since = now_minute - window.points * window.step + 1
    minutes = (await store.history([repo.name], since))[repo.name]
    prefix = VIA_PREFIX if repo.is_group else ""
    series = {name: bucketed(minutes, SERIES[name][1], window, now_minute, prefix) for name in series_names(repo)}
    live = (await asyncio.to_thread(live_counts, {repo.name: repo}))[repo.name]
    results, served = live["results"], live["bytes"]
    lookups = sum(results.get(r, 0) for r in LOOKUPS)
    return {
        "repository": repo.name, "format": repo.format, "type": repo.type,
        "range": {"label": window.label, "step_seconds": window.step * 60, "points": window.points,
                  "start": since * 60},
        "series": series,
        "totals": {"results": results, "bytes": served,
                   "hit_ratio": None if lookups == 0 else sum(results.get(r, 0) for r in HITS) / lookups,
                   "bytes_saved": None if not repo.is_proxy else served.get("cache", 0)},
        "top_packages": await store.top_packages(repo.name, 10),
        "last_errors": await store.last_errors(repo.name, 20),
    }


def sparkline(name: str, values: list[int], width: int = 260, height: int = 40) -> str:
    """An inline SVG line (with a light area under it) of `values`, oldest at the left."""
    top = max(values) or 1
    step = width / max(len(values) - 1, 1)
    points = [(i * step, height - 2 - v / top * (height - 4)) for i, v in enumerate(values)]
    line = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    area = f"0,{height} {line} {width},{height}"
    caption, _, fmt = SERIES[name]
    total = sum(values)
    return (f'<figure class="spark {e(name)}"><figcaption>{e(caption)} <b>{e(fmt(total))}</b></figcaption>'
            f'<svg class="sparkline" data-series="{e(name)}" data-total="{total}" viewBox="0 0 {width} {height}"'
            f' width="{width}" height="{height}" role="img" aria-label="{e(caption)}: {e(fmt(total))}">'
            f'<polygon class="area" points="{area}"/><polyline class="line" points="{line}"/></svg></figure>')


def mini_sparkline(values: list[int]) -> str:
    """A small requests line for the repositories table."""
    return sparkline("requests", values, 120, 22).replace('<figure class="spark requests">', '<figure class="spark'
                                                                                              ' mini requests">')


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts))


def activity_html(data: dict[str, Any], current: str) -> str:
    """The page section: range switch, totals, sparklines, top packages, last errors."""
    totals = data["totals"]
    switch = " · ".join(f"<b>{e(key)}</b>" if key == current else f'<a href="?range={e(key)}">{e(key)}</a>'
                        for key in RANGES)
    ratio = "–" if totals["hit_ratio"] is None else f"{100 * totals['hit_ratio']:.1f}%"
    figures = [f'<div class="figure"><span class="muted">hit ratio</span> <b id="hit-ratio">{e(ratio)}</b></div>']
    if totals["bytes_saved"] is not None:
        figures.append(f'<div class="figure"><span class="muted">bytes saved</span> <b id="bytes-saved"'
                       f' data-bytes="{totals["bytes_saved"]}">{e(human_bytes(totals["bytes_saved"]))}</b></div>')
    served = sum(totals["bytes"].values())
    figures.append(f'<div class="figure"><span class="muted">bytes served</span> <b id="bytes-served"'
                   f' data-bytes="{served}">{e(human_bytes(served))}</b></div>')
    sparks = "".join(sparkline(name, values) for name, values in data["series"].items())
    return (f'<h2>Activity</h2><p class="muted">{e(data["range"]["label"])} ({switch}); totals since start,'
            f' summed over all workers, as in /-/metrics</p><div class="figures">{"".join(figures)}</div>'
            f'<div class="sparks">{sparks}</div>' + _packages_html(data["top_packages"])
            + _errors_html(data["last_errors"]))


def _packages_html(rows: list[dict[str, Any]]) -> str:
    body = "".join(f'<tr><td class="package">{e(r["package"])}</td><td class="num">{r["downloads"]:,}</td>'
                   f'<td>{e(_when(r["last"]))}</td></tr>' for r in rows)
    body = body or '<tr><td colspan="3" class="muted">no downloads yet</td></tr>'
    return ('<h2>Top packages</h2><table id="top-packages"><thead><tr><th>package</th><th class="num">downloads'
            '</th><th>last download (UTC)</th></tr></thead><tbody>' + body + "</tbody></table>")


def _errors_html(rows: list[dict[str, Any]]) -> str:
    body = "".join(f'<tr><td>{e(_when(r["time"]))}</td><td>{e(r["kind"])}</td><td>{e(r["status"])}</td>'
                   f'<td><code>{e(r["path"])}</code></td><td>{e(r["detail"])}</td></tr>' for r in rows)
    body = body or '<tr><td colspan="5" class="muted">no upstream failures or 5xx answers</td></tr>'
    return ('<h2>Last errors</h2><table id="last-errors"><thead><tr><th>time (UTC)</th><th>kind</th><th>status</th>'
            '<th>path</th><th>detail</th></tr></thead><tbody>' + body + "</tbody></table>")


async def request_history(services: Any, repos: list[RepoConfig]) -> dict[str, list[int]]:
    """Requests per minute over the last hour for each repository (the index's column)."""
    window, now_minute = RANGES["1h"], int(time.time() // 60)
    minutes = await activity.ActivityStore(services.meta_db).history([r.name for r in repos],
                                                                     now_minute - window.points + 1)
    return {r.name: bucketed(minutes[r.name], ALL_RESULTS, window, now_minute, VIA_PREFIX if r.is_group else "")
            for r in repos}


def window_of(request: web.Request) -> tuple[str, Range]:
    key = request.query.get("range", "1h")
    if key not in RANGES:
        raise web.HTTPBadRequest(text=f"range must be one of {', '.join(RANGES)}\n")
    return key, RANGES[key]


async def activity_api(request: web.Request) -> web.Response:
    """GET /-/api/repositories/<name>/activity?range=1h|24h (the one visibility rule applies)."""
    from .app import SERVICES
    services = request.app[SERVICES]
    repo = services.repos.get(request.match_info["name"])
    if repo is not None and not (await visibility.readable(request))(repo):
        raise web.HTTPUnauthorized(text=f"authentication required to read {repo.name}\n",
                                   headers=visibility.CHALLENGE)
    if repo is None:
        raise web.HTTPNotFound(text=f"no repository named {request.match_info['name']!r}\n")
    _, window = window_of(request)
    return web.json_response(await repository_activity(services, repo, window), headers={"Cache-Control": "no-store"})


def setup(app: web.Application) -> None:
    """Mount the JSON endpoint and give the engine each format's package_of (top packages)."""
    from .app import FORMAT_INSTANCES
    for name, fmt in app.get(FORMAT_INSTANCES, {}).items():
        activity.RESOLVERS[name] = _downloads_of(fmt.package_of, HIDDEN_SUFFIXES.get(name, ()))
    app.router.add_get("/-/api/repositories/{name}/activity", activity_api)


def _downloads_of(package_of: activity.Resolver, companions: tuple[str, ...]) -> activity.Resolver:
    """package_of, except for the companions served beside a file (a wheel's .metadata is not a
    download of its own)."""
    def resolve(path: str) -> tuple[str, str] | None:
        return None if companions and path.endswith(companions) else package_of(path)
    return resolve
