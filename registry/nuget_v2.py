"""The NuGet v2 (OData, Atom) feed that nuget.exe 2.x speaks: `api/v2/`, `$metadata`,
`Packages(Id=…,Version=…)`, and the `Packages()`, `FindPackagesById()` and `Search()` feeds.

`nuget list` pages through `Search()?$filter=IsLatestVersion&$orderby=Id&$skip=N&$top=30` until a
page comes back empty: every page is cut from one ordered list of packages (by id when the
client asks `$orderby=Id`), so no package is listed twice or left out. nuget 2.x cannot parse
SemVer 2.0.0 versions (`1.0.0-beta.1`, `+metadata`): as on nuget.org they are left out of the
feed unless the query says `semVerLevel=2.0.0`.
"""
from __future__ import annotations

import json
import re
from typing import Any

from aiohttp import web

from . import nuget_meta as nm
from . import nuget_render as nr
from .base import Ctx, FormatError

ATOM_FEED = "application/atom+xml;type=feed;charset=utf-8"
ATOM_ENTRY = "application/atom+xml;type=entry;charset=utf-8"
SERVICE_TYPE = "application/xml;charset=utf-8"
LATEST_FILTERS = ("IsLatestVersion", "IsAbsoluteLatestVersion")
MAX_PACKAGES = 1000         # packages one Search() answer looks through (their entries fetched as needed)


def xml_answer(body: bytes, content_type: str, x_cache: str | None = None) -> web.Response:
    headers = {"Content-Type": content_type, "Cache-Control": "no-cache", "DataServiceVersion": "2.0;"}
    if x_cache:
        headers["X-Cache"] = x_cache
    return web.Response(body=body, headers=headers)


def paging(query: Any) -> tuple[int, int]:
    """($skip, $top) of an OData query; 400 when they are not integers."""
    try:
        return max(0, int(query.get("$skip", "0"))), max(0, min(int(query.get("$top", "100")), 1000))
    except ValueError:
        raise FormatError(400, "$skip and $top must be integers") from None


def wants_semver2(query: Any) -> bool:
    return query.get("semVerLevel", "").strip("'") >= "2"


class V2Feed:
    """Handlers of the v2 feed (mixed into the NuGet format, which provides `entries`,
    `search_items` and `local`)."""

    async def entries(self, ctx: Ctx, lid: str) -> tuple[list[dict[str, Any]], str | None]:
        raise NotImplementedError

    async def search_items(self, ctx: Ctx) -> tuple[list[dict[str, Any]], str | None]:
        raise NotImplementedError

    @staticmethod
    def local(ctx: Ctx) -> str | None:
        raise NotImplementedError

    async def v2_service(self, ctx: Ctx) -> web.StreamResponse:
        return xml_answer(nr.v2_service(ctx.base_url), SERVICE_TYPE, self.local(ctx))

    async def v2_metadata(self, ctx: Ctx) -> web.StreamResponse:
        return xml_answer(nr.V2_METADATA, SERVICE_TYPE, self.local(ctx))

    async def v2_visible(self, ctx: Ctx, lid: str) -> tuple[list[dict[str, Any]], str | None]:
        """A package's entries as this v2 client may see them (SemVer 2.0.0 ones only if asked)."""
        entries, x_cache = await self.entries(ctx, lid)
        if not wants_semver2(ctx.request.query):
            entries = [e for e in entries if not nm.is_semver2(e)]
        return entries, x_cache

    async def v2_package(self, ctx: Ctx) -> web.StreamResponse:
        package_id, version = ctx.match["id"], ctx.match["version"]
        try:
            lid, lver = nm.check_id(package_id).lower(), nm.normalize(version).lower()
        except nm.NuGetError as exc:
            raise FormatError(400, str(exc)) from None
        entries, x_cache = await self.v2_visible(ctx, lid)
        found = next((e for e in entries if e["version"].lower() == lver), None)
        if found is None:
            raise FormatError(404, f"{lid} {lver} not found in {ctx.repo.name}")
        atom = nr.v2_entries(ctx.base_url, [entries], lambda e: e is found)
        return xml_answer(nr.v2_single(ctx.base_url, atom[0]), ATOM_ENTRY, None if ctx.repo.is_hosted else x_cache)

    async def v2_feed(self, ctx: Ctx) -> web.StreamResponse:
        query, fn = ctx.request.query, ctx.match["fn"]
        skip, top = paging(query)
        wanted = query.get("id") or ""
        found = re.search(r"Id\)?\s+eq\s+'([^']+)'", query.get("$filter", ""), re.I)
        if fn != "Search" and (found or wanted):
            try:
                lid = nm.check_id((found[1] if found else wanted).strip("'")).lower()
                entries, x_cache = await self.v2_visible(ctx, lid)
            except nm.NuGetError as exc:
                raise FormatError(400, str(exc)) from None
            except FormatError as exc:
                if exc.status != 404:
                    raise
                entries, x_cache = [], None
            page = nr.v2_entries(ctx.base_url, [entries])[skip:skip + top]
        else:
            page, x_cache = await self.v2_search_page(ctx, skip, top)
        return xml_answer(nr.v2_feed(ctx.base_url, fn, page), ATOM_FEED, None if ctx.repo.is_hosted else x_cache)

    async def v2_search_page(self, ctx: Ctx, skip: int, top: int) -> tuple[list[str], str | None]:
        """One page of a v2 search: with a latest-version filter one entry per package, so the
        packages are paged; otherwise every version, collected until the page is full."""
        query = ctx.request.query
        items, x_cache = await self.search_items(ctx)
        term = query.get("searchTerm", "").strip("'").lower()
        items = [i for i in items if not term or term in json.dumps(i).lower()]
        if query.get("$orderby", "").strip().lower().startswith("id"):
            items.sort(key=lambda i: str(i.get("id", "")).lower(),
                       reverse=query.get("$orderby", "").lower().endswith(" desc"))
        items = items[:MAX_PACKAGES]
        expression = query.get("$filter", "").strip()
        prerelease = query.get("includePrerelease", "false").lower() == "true"
        latest_only = expression in LATEST_FILTERS
        window = items[skip:skip + top] if latest_only else items
        atom: list[str] = []
        for item in window:
            entries, _ = await self.v2_visible(ctx, str(item.get("id", "")).lower())
            packages = [nr.visible(entries, prerelease) or entries]
            atom += nr.v2_entries(ctx.base_url, packages, nr.v2_filter(expression, packages))
            if not latest_only and len(atom) >= skip + top:
                break
        return (atom if latest_only else atom[skip:skip + top]), x_cache
