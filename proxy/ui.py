"""depot's small server-rendered web UI under /-/ui/ and its JSON stats endpoint /-/api/stats.

* ``/-/ui/`` — repositories with format, type, size, entries and hit ratio, and a live chart
  of hits and misses (inline script polling ``/-/api/stats``, drawing on a canvas).
* ``/-/ui/repositories/<name>?path=<prefix>`` — one repository: a "how to use this" snippet
  with depot's public URL filled in, and a directory-style browser over its hosted files
  (catalog) or cached entries (proxy entries table); a group lists its members.
* ``/-/api/stats`` — per repository request counts by result and bytes served by source,
  live from the metrics (summed over all workers).

Everything dynamic is HTML-escaped; no external assets. `setup(app)` mounts all of it and the
observability middleware (proxy.observe).
"""
from __future__ import annotations

import asyncio
import html
import json
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

from aiohttp import web
from prometheus_client import REGISTRY, CollectorRegistry, multiprocess

from depot.cache import metrics, stats
from depot.cache.metrics import VIA_PREFIX
from depot.cache.services import Services
from depot.registry.repo import RepoConfig

from . import observe, visibility
from .admin_api import policy_json
from .cleanup import last_runs
from .progress import human_bytes
from .ui_templates import CHART, CHART_SCRIPT, PAGE, STYLE
from . import ui_activity, ui_browse
from .ui_templates.snippets import snippet

POLL_SECONDS = 2
LIST_LIMIT = 5000
HIT_RESULTS = ("hit", "stale", "revalidated")
LOOKUP_RESULTS = HIT_RESULTS + ("miss", "error")


def e(value: Any) -> str:
    """HTML-escape anything (quotes too)."""
    return html.escape(str(value), quote=True)



def hit_ratio(counts: dict[str, int]) -> float | None:
    """(hit + stale + revalidated) / (those + miss + error); None without lookups."""
    lookups = sum(counts.get(r, 0) for r in LOOKUP_RESULTS)
    return None if lookups == 0 else sum(counts.get(r, 0) for r in HIT_RESULTS) / lookups


def _services(request: web.Request) -> Services:
    from .app import SERVICES
    return request.app[SERVICES]


ReadCheck = visibility.ReadCheck
CHALLENGE = visibility.CHALLENGE
readable = visibility.readable     # the one visibility rule (proxy/visibility.py)


def _page(title: str, body: str, root: str, with_chart: bool = False) -> web.Response:
    """The page shell; `root` is the relative URL of /-/ui/ from the current page."""
    script = CHART_SCRIPT % {"interval": POLL_SECONDS} if with_chart else ""
    text = PAGE.format(title=e(title), style=STYLE, root=e(root), metrics=e(root + "../metrics"),
                       body=body, script=script)
    return web.Response(text=text, content_type="text/html", charset="utf-8",
                        headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"})


def _chart(api: str, repo: str = "") -> str:
    return CHART.format(api=e(api), repo=e(repo), interval=POLL_SECONDS)


# ------------------------------------------------------------------------------ data
async def persisted_counts(services: Services) -> dict[str, dict[str, int]]:
    """Result counts per repository as flushed to the database (all workers, across restarts)."""
    return await stats.persisted_counts(services.meta_db)


async def repository_rows(services: Services, may_read: ReadCheck) -> list[dict[str, Any]]:
    """One row per readable repository: name, format, type, entries, bytes, hit ratio."""
    proxy_stats = await services.entries.stats()
    hosted = await stats.hosted_stats(services.meta_db)
    counts = await persisted_counts(services)
    out = []
    for repo in filter(may_read, services.repos.values()):
        stat = (proxy_stats if repo.is_proxy else hosted).get(repo.name, {"entries": 0, "bytes": 0})
        if repo.is_group:
            stat = {"entries": None, "bytes": None}
        ratio = None
        if repo.is_proxy:
            ratio = hit_ratio(counts.get(repo.name, {}))
        elif repo.is_group:     # what its members served through it
            ratio = hit_ratio({k[len(VIA_PREFIX):]: v for k, v in counts.get(repo.name, {}).items()
                               if k.startswith(VIA_PREFIX)})
        out.append({"repo": repo, **stat, "hit_ratio": ratio})
    return out


def live_counts(repos: dict[str, RepoConfig]) -> dict[str, Any]:
    """Requests by result and bytes by source per repository, from the metrics (blocking)."""
    registry: Any = REGISTRY
    if metrics.MULTIPROC:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    out: dict[str, Any] = {name: {"format": r.format, "type": r.type, "results": {}, "bytes": {}}
                           for name, r in repos.items()}
    wanted = {"depot_requests_total": ("results", "result"), "depot_bytes_served_total": ("bytes", "source"),
              "depot_group_requests_total": ("results", "result")}
    for family in registry.collect():
        for sample in family.samples:
            target = wanted.get(sample.name)
            repo = out.get(sample.labels.get("repository", ""))
            if target is None or repo is None:
                continue
            if (sample.name == "depot_group_requests_total") != (repos[sample.labels["repository"]].is_group):
                continue        # a group's results are what it served; nothing is counted at it otherwise
            key, label = target
            bucket = repo[key]
            bucket[sample.labels[label]] = bucket.get(sample.labels[label], 0) + int(sample.value)
    return out


@dataclass
class Listing:
    """A directory-style view of one level of a repository's paths."""

    dirs: dict[str, list[int]] = field(default_factory=dict)      # name -> [count, bytes]
    files: list[dict[str, Any]] = field(default_factory=list)
    truncated: bool = False


async def list_paths(services: Services, repo: RepoConfig, prefix: str) -> Listing:
    """Children of `prefix`: hosted files from the catalog, proxy entries from the entries table."""
    if repo.is_proxy:
        items = await stats.entry_listing(services.meta_db, repo.name, prefix, LIST_LIMIT + 1)
    else:
        items = [{"path": f.path, "size": f.size, "digest": f.digest, "time": f.created,
                  "version": f.meta.get("version", "")} for f in await services.catalog.list(repo.name, prefix)]
    items = ui_browse.visible(repo, items)
    listing = Listing(truncated=len(items) > LIST_LIMIT)
    for item in items[:LIST_LIMIT]:
        rest = item["path"][len(prefix):]
        if "/" in rest:
            count = listing.dirs.setdefault(rest.split("/", 1)[0] + "/", [0, 0])
            count[0] += 1
            count[1] += item["size"]
        else:
            listing.files.append({**item, "name": rest})
    return listing


# ------------------------------------------------------------------------------ pages
async def index(request: web.Request) -> web.Response:
    """All repositories, with the live chart."""
    services = _services(request)
    rows = []
    listed = await repository_rows(services, await readable(request))
    recent = await ui_activity.request_history(services, [row["repo"] for row in listed])
    for row in listed:
        repo: RepoConfig = row["repo"]
        size = "–" if row["bytes"] is None else human_bytes(row["bytes"])
        entries = "–" if row["entries"] is None else f"{row['entries']:,}"
        ratio = "–" if row["hit_ratio"] is None else f"{100 * row['hit_ratio']:.1f}%"
        rows.append(f'<tr><td><a href="repositories/{e(quote(repo.name))}">{e(repo.name)}</a></td>'
                    f'<td><span class="tag">{e(repo.format)}</span></td><td>{e(repo.type)}</td>'
                    f'<td class="num">{e(entries)}</td><td class="num">{e(size)}</td>'
                    f'<td class="num">{e(ratio)}</td><td>{ui_activity.mini_sparkline(recent[repo.name])}</td></tr>')
    body = (f"<h1>Repositories</h1><p class=\"muted\">Public URL: <code>{e(services.public_base(request))}"
            "</code></p><table><thead><tr><th>name</th><th>format</th><th>type</th><th class=\"num\">"
            "entries</th><th class=\"num\">size</th><th class=\"num\">hit ratio</th><th>requests, last hour</th>"
            "</tr></thead><tbody>"
            + "".join(rows) + "</tbody></table>" + _chart("../api/stats"))
    return _page("repositories", body, "./", with_chart=True)


def _snippets_html(repo: RepoConfig, base: str) -> str:
    parts = ["<h2>How to use this repository</h2>"]
    for title, text in snippet(repo, base):
        parts.append(f'<h3 class="muted">{e(title)}</h3><pre class="snippet">{e(text)}</pre>')
    return "".join(parts)


def _crumbs(repo: RepoConfig, prefix: str) -> str:
    links = [f'<a href="?">{e(repo.name)}</a>/']
    walked = ""
    for part in [p for p in prefix.split("/") if p]:
        walked += part + "/"
        links.append(f'<a href="?{e(urlencode({"path": walked}))}">{e(part)}</a>/')
    return '<nav class="crumbs">' + "".join(links) + "</nav>"


def _listing_html(repo: RepoConfig, prefix: str, listing: Listing, base: str) -> str:
    """The browse table: sub-directories first, then files (linked where the path is a URL)."""
    rows = []
    for name, (count, size) in sorted(listing.dirs.items()):
        query = e(urlencode({"path": prefix + name}))
        files = "file" if count == 1 else "files"
        rows.append(f'<tr><td><a href="?{query}">{e(name)}</a></td><td class="muted">{count} {files}</td>'
                    f'<td class="num">{e(human_bytes(size))}</td><td></td><td></td></tr>')
    for item in listing.files:
        name = e(item["name"])
        if repo.format == "generic":
            name = f'<a href="{e(base + "/" + quote(repo.name) + "/" + quote(item["path"]))}">{name}</a>'
        when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(item["time"]))
        detail = item.get("version") or item.get("kind") or ""
        rows.append(f"<tr><td>{name}</td><td>{e(detail)}</td><td class=\"num\">{e(human_bytes(item['size']))}"
                    f"</td><td><code>{e(item['digest'][:12])}</code></td><td>{e(when)}</td></tr>")
    if not rows:
        rows.append('<tr><td colspan="5" class="muted">nothing here yet</td></tr>')
    what = "Cached entries" if repo.is_proxy else "Packages and files"
    note = f'<p class="muted">showing the first {LIST_LIMIT} paths only</p>' if listing.truncated else ""
    return (f"<h2>{what}</h2>{_crumbs(repo, prefix)}<table id=\"browse\"><thead><tr><th>name</th>"
            f"<th>{'kind' if repo.is_proxy else 'version'}</th><th class=\"num\">size</th><th>sha256</th>"
            f"<th>{'fetched' if repo.is_proxy else 'published'} (UTC)</th></tr></thead><tbody>"
            + "".join(rows) + "</tbody></table>" + note)


def _retention_html(repo: RepoConfig, last: dict[str, Any] | None) -> str:
    """The repository's retention policy (as /-/api/v1/cleanup shows it) and its last cleanup run."""
    policy = policy_json(repo)
    rules = {k: v for k, v in policy["cleanup"].items() if v is not None}
    rules.update({k: policy[k] for k in ("duplicates", "protected", "immutable_tags") if policy[k]})
    if not rules:
        return ""
    items = "".join(f"<li><code>{e(k)}</code>: {e(json.dumps(v))}</li>" for k, v in rules.items())
    run = "never" if last is None else (
        f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(last['time']))}: "
        f"{last['deleted']} deleted, {last['bytes']} bytes")
    return f'<h2>Retention</h2><ul class="retention">{items}</ul><p>Last cleanup: {e(run)}</p>'


def _members_html(repo: RepoConfig) -> str:
    items = "".join(f'<li><a href="{e(quote(m))}">{e(m)}</a>{" (deploy target)" if m == repo.deploy_to else ""}'
                    "</li>" for m in repo.members)
    return f"<h2>Members, in order</h2><ol>{items}</ol>"


async def repository_page(request: web.Request) -> web.Response:
    """One repository: summary, snippet, browser (or members), live chart."""
    services = _services(request)
    repo = services.repos.get(request.match_info["name"])
    if repo is not None and not (await readable(request))(repo):
        raise web.HTTPUnauthorized(text=f"authentication required to read {repo.name}\n", headers=CHALLENGE)
    if repo is None:
        body = f"<h1>Not found</h1><p>No repository named <code>{e(request.match_info['name'])}</code>.</p>"
        response = _page("not found", body, "../")
        response.set_status(404)
        return response
    base = services.public_base(request).rstrip("/")
    prefix = request.query.get("path", "")[:1024]
    summary = f'<p><span class="tag">{e(repo.format)}</span> {e(repo.type)}'
    if repo.is_proxy:
        summary += f" of <code>{e(_public_upstream(repo.upstream or ''))}</code>"
    summary += f' · <code>{e(base + "/" + repo.name + "/")}</code></p>'
    range_key, window = ui_activity.window_of(request)
    numbers = await ui_activity.repository_activity(services, repo, window)
    body = f"<h1>{e(repo.name)}</h1>{summary}{ui_activity.activity_html(numbers, range_key)}"
    body += _snippets_html(repo, base)
    if repo.is_group:
        body += _members_html(repo)
    elif repo.format == "oci" and repo.is_hosted:
        body += ui_browse.oci_html(repo, await ui_browse.oci_images(services, repo), base)
    else:
        body += _retention_html(repo, last_runs(services.settings.data_dir).get(repo.name))
        body += _listing_html(repo, prefix, await list_paths(services, repo, prefix), base)
    body += _chart("../../api/stats", repo.name)
    return _page(repo.name, body, "../", with_chart=True)


def _public_upstream(url: str) -> str:
    from yarl import URL
    return str(URL(url).with_user(None).with_password(None)) if "@" in url else url


async def stats_api(request: web.Request) -> web.Response:
    """Live per-repository counters (summed over workers) for the chart."""
    services = _services(request)
    may_read = await readable(request)
    visible = {name: repo for name, repo in services.repos.items() if may_read(repo)}
    repos = await asyncio.to_thread(live_counts, visible)
    return web.json_response({"time": time.time(), "repositories": repos},
                             headers={"Cache-Control": "no-store"})


async def to_index(_: web.Request) -> web.Response:
    raise web.HTTPFound("ui/")


def setup(app: web.Application) -> None:
    """Mount the UI, the stats endpoint and the observability middleware on the app."""
    observe.install(app)
    app.router.add_get("/-/ui", to_index)
    app.router.add_get("/-/ui/", index)
    from . import ui_signin
    ui_signin.setup(app)
    app.router.add_get("/-/ui/repositories/{name}", repository_page)
    app.router.add_get("/-/api/stats", stats_api)
    ui_activity.setup(app)
    from . import ui_policy
    ui_policy.setup(app)
