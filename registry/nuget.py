"""NuGet: v3 (service index, flat container, registration, search) and the v2 OData feed that
nuget.exe 2.x speaks; proxy (nuget.org's v3 index by default), hosted (push, unlist, relist)
and group.

Paths under /<repo>/ (the source URL is `<depot>/<repo>/v3/index.json`, or `…/api/v2/` for v2):
  v3/index.json                                        generated; every resource points at depot
  v3-flatcontainer/<id>/index.json                     version list (metadata)
  v3-flatcontainer/<id>/<ver>/<id>.<ver>.nupkg|.nuspec immutable
  v3/registration/<id>/index.json, …/page/<lo>/<hi>.json, …/<ver>.json
  v3/query, v3/autocomplete                            search
  api/v2/package (PUT push), api/v2/package/<id>/<ver> (GET download, DELETE unlist, POST relist)
  api/v2/, $metadata, Packages(Id=…,Version=…), Packages(), FindPackagesById(), Search()
Ids are lower-cased in URLs, versions normalised (`+metadata` dropped). Hosted packages keep one
catalog document per id (meta/<id>.json, compare-and-swap) that everything is rendered from.
Proxy answers are the upstream's, every upstream URL rewritten to depot (BASE_PLACEHOLDER).
"""
from __future__ import annotations

import base64
import hashlib
import json
import re
from typing import Any, Mapping
from urllib.parse import urlencode

from aiohttp import web

from depot.cache.api import BASE_PLACEHOLDER, Cached, Kind, merge_x_cache

from . import nuget_meta as nm
from . import nuget_render as nr
from . import nuget_upstream as nu
from .nuget_v2 import V2Feed, wants_semver2
from .base import Ctx, Format, FormatError, VersionInfo, route, standard_repositories
from .options import Option, boolean
from .repo import RepoConfig
from .tree import in_thread
from .warm_plans import Job

JSON = "application/json; charset=utf-8"
NUPKG = "application/octet-stream"
ID = r"(?P<id>[^/]+)"
VER = r"(?P<version>[^/]+)"
FLAT_FILE = re.compile(r"v3-flatcontainer/(?P<id>[^/]+)/(?P<version>[^/]+)/(?P<file>[^/]+)\Z")
STORED = re.compile(r"packages/(?P<id>[^/]+)/(?P<version>[^/]+)/[^/]+\Z")
V2_DOWNLOAD = re.compile(r"api/v2/package/(?P<id>[^/]+)/(?P<version>[^/]+)\Z")
REGISTRATION = re.compile(r"v3/registration/(?P<id>[^/]+)/(index|page/[^/]+/[^/]+)\.json\Z")
FLAT_INDEX = re.compile(r"v3-flatcontainer/(?P<id>[^/]+)/index\.json\Z")


def _json(body: bytes | dict[str, Any], x_cache: str | None = None, status: int = 200) -> web.Response:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Cache-Control": "no-cache", **({"X-Cache": x_cache} if x_cache else {})}
    return web.Response(body=data, status=status, content_type="application/json", charset="utf-8",
                        headers=headers)


def _checked(package_id: str, version: str | None = None) -> tuple[str, str]:
    """(lower-case id, lower-case normalised version) or 400."""
    try:
        nm.check_id(package_id)
        return package_id.lower(), nm.normalize(version).lower() if version is not None else ""
    except nm.NuGetError as exc:
        raise FormatError(400, str(exc)) from None


def decoded_headers(cached: Cached) -> dict[str, str] | None:
    """Upstream documents are stored decoded (rewritten at fill time): an upstream's
    Content-Encoding (nuget.org's gzip-encoded hives) no longer describes the body."""
    entry = cached.entry
    return {"Content-Encoding": "identity"} if entry is not None and "Content-Encoding" in entry.headers else None


def stored_path(lid: str, lver: str, file: str) -> str:
    return f"packages/{lid}/{lver}/{file}"


def upstream_index_url(repo: RepoConfig) -> str:
    url = repo.upstream or ""
    return url if url.endswith(".json") else url.rstrip("/") + "/v3/index.json"


def merge_entries(lists: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Versions of several members; the first member wins per version."""
    seen: dict[str, dict[str, Any]] = {}
    for entries in lists:
        for entry in entries:
            seen.setdefault(entry["version"].lower(), entry)
    return [seen[v] for v in nm.sort_versions(seen)]


class NuGet(V2Feed, Format):
    """NuGet v3 and v2 (OData) feeds."""

    name = "nuget"
    version_scheme = "semver"
    options = {"delete_unlists": Option(boolean, True, "DELETE unlists a version (NuGet's default) "
                                                       "instead of removing its files")}
    routes = (
        route("GET HEAD", r"v3/index\.json", "service_index"),
        route("GET HEAD", r"v3-flatcontainer/" + ID + r"/index\.json", "flat_index"),
        route("GET HEAD", r"v3-flatcontainer/" + ID + "/" + VER + r"/(?P<file>[^/]+)", "flat_file"),
        route("GET HEAD", r"v3/registration/" + ID + r"/index\.json", "registration_index"),
        route("GET HEAD", r"v3/registration/" + ID + r"/page/(?P<lower>[^/]+)/(?P<upper>[^/]+)\.json",
              "registration_page"),
        route("GET HEAD", r"v3/registration/" + ID + "/" + VER + r"\.json", "registration_leaf"),
        route("GET HEAD", r"v3/registration-semver1/" + ID + r"/index\.json", "semver1_index"),
        route("GET HEAD", r"v3/registration-semver1/" + ID + r"/page/(?P<lower>[^/]+)/(?P<upper>[^/]+)\.json",
              "semver1_page"),
        route("GET HEAD", r"v3/registration-semver1/" + ID + "/" + VER + r"\.json", "semver1_leaf"),
        route("GET HEAD", r"v3/catalog/" + ID + "/" + VER + r"\.json", "catalog_leaf"),
        route("GET HEAD", r"v3/query", "search"),
        route("GET HEAD", r"v3/autocomplete", "autocomplete"),
        route("GET HEAD", r"api/v2/package/?", "push_probe", perm="none"),
        route("PUT POST", r"api/v2/package/?", "push", "hosted group"),
        route("GET HEAD", r"api/v2/package/" + ID + "/" + VER, "v2_download"),
        route("DELETE", r"api/v2/package/" + ID + "/" + VER, "unlist", "hosted group"),
        route("POST", r"api/v2/package/" + ID + "/" + VER, "relist", "hosted group"),
        route("GET HEAD", r"api/v2/?", "v2_service"),
        route("GET HEAD", r"api/v2/\$metadata", "v2_metadata"),
        route("GET HEAD", r"api/v2/Packages\(Id='(?P<id>[^']+)',Version='(?P<version>[^']+)'\)", "v2_package"),
        route("GET HEAD", r"api/v2/(?P<fn>FindPackagesById|Packages|Search)(\(\))?", "v2_feed"),
    )

    def __init__(self) -> None:
        self._resources: dict[str, nu.Resources] = {}

    @classmethod
    def default_upstream(cls) -> str:
        return "https://api.nuget.org/v3/index.json"

    @classmethod
    def default_repositories(cls) -> dict[str, dict[str, Any]]:
        return standard_repositories("nuget")

    @classmethod
    def snippets(cls, repo: RepoConfig, url: str, host: str, insecure: bool) -> list[tuple[str, str]]:
        out = [("nuget.config", '<configuration><packageSources><clear/>\n'
                                f'  <add key="depot" value="{url}/v3/index.json" protocolVersion="3"/>\n'
                                '</packageSources></configuration>'),
               ("nuget.exe 2.x (v2 feed)", f"nuget install Some.Package -Source {url}/api/v2/")]
        if not repo.is_proxy:
            out.append(("push", f"nuget push Some.Package.1.0.0.nupkg -Source {url}/v3/index.json -ApiKey TOKEN\n"
                                f"dotnet nuget push Some.Package.1.0.0.nupkg -s {url}/v3/index.json -k TOKEN"))
        return out

    @classmethod
    def warm_plan(cls, mount: str, filename: str, text: str) -> tuple[list[Any], list[str]] | None:
        """`depot warm <repo> packages.lock.json`: version list, registration and .nupkg of every package."""
        if not filename.endswith("packages.lock.json"):
            return None
        try:
            frameworks = json.loads(text).get("dependencies") or {}
        except ValueError:
            from .warm_plans import PlanError
            raise PlanError("packages.lock.json cannot be parsed") from None
        jobs, seen, ids = [], set(), set()
        for packages in frameworks.values():
            for name, info in (packages or {}).items():
                version = str((info or {}).get("resolved") or "")
                if info.get("type") == "Project" or not version or (name.lower(), version) in seen:
                    continue
                seen.add((name.lower(), version))
                lid, lver = name.lower(), nm.normalize(version).lower()
                if lid not in ids:        # the documents clients resolve with: flat list, registration
                    ids.add(lid)
                    jobs += [Job(f"{mount}/v3-flatcontainer/{lid}/index.json"),
                             Job(f"{mount}/v3/registration/{lid}/index.json")]
                jobs.append(Job(f"{mount}/v3-flatcontainer/{lid}/{lver}/{lid}.{lver}.nupkg"))
        return jobs, []

    def credentials(self, headers: Mapping[str, str]) -> str | None:
        return headers.get("X-NuGet-ApiKey")

    def error(self, ctx: Ctx | None, status: int, message: str, code: str | None = None) -> web.Response:
        """NuGet clients print the reason phrase: it carries the message (one line of ASCII)."""
        reason = re.sub(r"[^\x20-\x7e]", " ", message.splitlines()[0] if message else "")[:200] or None
        return web.Response(status=status, reason=reason, text=message.rstrip("\n") + "\n",
                            headers={"Cache-Control": "no-store"})

    @staticmethod
    def local(ctx: Ctx) -> str | None:
        """X-Cache of a document depot answers itself: HIT for proxies and groups."""
        return None if ctx.repo.is_hosted else "HIT"

    # ------------------------------------------------------------------ service index
    async def service_index(self, ctx: Ctx) -> web.StreamResponse:
        can_push = not ctx.repo.is_proxy and (not ctx.repo.is_group or bool(ctx.repo.deploy_to))
        return _json(nr.service_index(ctx.base_url, can_push), self.local(ctx))

    # ------------------------------------------------------------------ proxy plumbing
    async def resources(self, ctx: Ctx) -> nu.Resources:
        """The upstream's resources, from its service index (metadata, cached)."""
        spec = ctx.pull.spec("upstream/index.json", upstream_index_url(ctx.repo), Kind.METADATA, content_type=JSON)
        cached, body = await ctx.fetch_upstream(spec)
        digest = cached.entry.digest if cached.entry is not None else hashlib.sha256(body).hexdigest()
        found = self._resources.get(digest)
        if found is None:
            try:
                found = nu.parse_service_index(body)
            except nm.NuGetError as exc:
                raise FormatError(502, str(exc)) from None
            self._resources = {digest: found}
        return found

    async def proxy_metadata(self, ctx: Ctx, key: str, rest: str, kind: str) -> Cached:
        """An upstream JSON document (registration, flat index, search) rewritten to depot."""
        res = await self.resources(ctx)
        if kind == "flat":
            url = res.flat + rest
        elif kind == "registration":
            url = res.registration + rest
        else:
            url = (res.search if kind == "search" else res.autocomplete) or ""
            if not url:
                raise FormatError(404, f"the upstream of {ctx.repo.name} offers no {kind}")
            url += rest
        return await ctx.open_upstream(ctx.pull.spec(key, url, Kind.METADATA, transform=nu.rewriter(res),
                                                     content_type=JSON))

    async def proxy_file(self, ctx: Ctx, lid: str, lver: str, file: str) -> Cached:
        key = f"v3-flatcontainer/{lid}/{lver}/{file}"
        stored = await ctx.pull.peek(key)
        if stored is not None:
            await ctx.check_policy(key)
            return Cached("HIT", ctx.repo, stored)
        res = await self.resources(ctx)
        return await ctx.open_upstream(ctx.pull.spec(key, res.flat + f"{lid}/{lver}/{file}", Kind.IMMUTABLE,
                                                     content_type=NUPKG if file.endswith(".nupkg") else
                                                     "application/xml"))

    async def proxy_entries(self, ctx: Ctx, lid: str) -> tuple[list[dict[str, Any]], str]:
        """Catalog entries of a proxied package (pages fetched as needed, policy applied)."""
        key = f"v3/registration/{lid}/index.json"
        cached = await self.proxy_metadata(ctx, key, f"{lid}/index.json", "registration")
        doc = json.loads((await ctx.pull.read(cached)).decode().replace(BASE_PLACEHOLDER, ctx.base_url))
        found = nu.catalog_entries(doc)
        prefix = f"{ctx.base_url}/v3/registration/"
        for url in nu.remote_pages(doc):
            if url.startswith(prefix):
                rest = url[len(prefix):]
                page = await self.proxy_metadata(ctx, f"v3/registration/{rest}", rest, "registration")
                body = (await ctx.pull.read(page)).decode().replace(BASE_PLACEHOLDER, ctx.base_url)
                found += nu.catalog_entries(json.loads(body))
        hidden = ctx.pull.hidden(VersionInfo(lid, nm.normalize(e["version"]), nm.parse_time(e.get("published")))
                                 for e in found)
        found = [{**e, "version": nm.normalize(e["version"]),
                  **({"verbatimVersion": e["version"]} if "+" in str(e["version"]) else {})} for e in found]
        return merge_entries([[e for e in found if (lid, e["version"]) not in hidden]]), cached.status

    # ------------------------------------------------------------------ entries of any repository
    async def hosted_doc(self, ctx: Ctx, lid: str) -> dict[str, Any] | None:
        stored = await ctx.hosted.get(f"meta/{lid}.json")
        return json.loads(await ctx.hosted.read(stored)) if stored is not None else None

    async def entries(self, ctx: Ctx, lid: str) -> tuple[list[dict[str, Any]], str | None]:
        """A package's catalog entries (oldest first) in this repository and the X-Cache; 404 if none."""
        if ctx.repo.is_hosted:
            doc = await self.hosted_doc(ctx, lid)
            if not doc or not doc.get("versions"):
                raise FormatError(404, f"package {lid} not found in {ctx.repo.name}")
            return nm.entries(doc), "HIT"
        if ctx.repo.is_proxy:
            return await self.proxy_entries(ctx, lid)
        answers = await ctx.each_member(lambda m: self.entries(m, lid), lid)
        return merge_entries([e for _, (e, _) in answers]), merge_x_cache(xc for _, (_, xc) in answers)

    async def entry(self, ctx: Ctx, lid: str, lver: str) -> tuple[dict[str, Any], list[dict[str, Any]], str | None]:
        entries, x_cache = await self.entries(ctx, lid)
        for found in entries:
            if found["version"].lower() == lver:
                return found, entries, x_cache
        raise FormatError(404, f"{lid} {lver} not found in {ctx.repo.name}")

    # ------------------------------------------------------------------ flat container
    async def flat_index(self, ctx: Ctx) -> web.StreamResponse:
        lid, _ = _checked(ctx.match["id"])
        if ctx.repo.is_proxy:
            key = f"v3-flatcontainer/{lid}/index.json"
            cached = await self.proxy_metadata(ctx, key, f"{lid}/index.json", "flat")
            return await ctx.pull.answer(ctx.request, cached, key, decoded_headers(cached))
        if ctx.repo.is_hosted:
            entries, _ = await self.entries(ctx, lid)
            return _json(nr.flat_versions(entries))
        answers = await ctx.each_member(lambda m: self.member_versions(m, lid), lid)
        merged = nm.sort_versions({v for _, (versions, _) in answers for v in versions})
        return _json({"versions": merged}, merge_x_cache(xc for _, (_, xc) in answers))

    async def member_versions(self, ctx: Ctx, lid: str) -> tuple[list[str], str | None]:
        if not ctx.repo.is_proxy:
            entries, x_cache = await self.entries(ctx, lid)
            return [e["version"].lower() for e in entries], x_cache
        key = f"v3-flatcontainer/{lid}/index.json"
        cached = await self.proxy_metadata(ctx, key, f"{lid}/index.json", "flat")
        body = self.filter_for_policy(ctx, key, await ctx.pull.read(cached))
        return [str(v).lower() for v in json.loads(body).get("versions", [])], cached.status

    def filter_for_policy(self, ctx: Ctx, key: str, body: bytes) -> bytes:
        hidden = ctx.pull.hidden(self.metadata_versions(key, body) or [])
        return self.filter_metadata(key, body, frozenset(hidden)) if hidden else body

    async def flat_file(self, ctx: Ctx) -> web.StreamResponse:
        lid, lver = _checked(ctx.match["id"], ctx.match["version"])
        file = ctx.match["file"].lower()
        if file not in (f"{lid}.{lver}.nupkg", f"{lid}.nuspec"):
            raise FormatError(404, f"no file {file} for {lid} {lver}")
        return await self.serve_file(ctx, lid, lver, file)

    async def serve_file(self, ctx: Ctx, lid: str, lver: str, file: str,
                         x_cache: str | None = None) -> web.StreamResponse:
        if ctx.repo.is_group:
            return await ctx.first_member(lambda m: self.serve_file(m, lid, lver, file, "HIT"))
        if ctx.repo.is_proxy:
            return ctx.pull.respond(ctx.request, await self.proxy_file(ctx, lid, lver, file))
        stored = await ctx.hosted.get(stored_path(lid, lver, file))
        if stored is None:
            raise FormatError(404, f"{lid} {lver} not found in {ctx.repo.name}")
        return ctx.hosted.serve(ctx.request, stored, x_cache=x_cache)

    async def v2_download(self, ctx: Ctx) -> web.StreamResponse:
        lid, lver = _checked(ctx.match["id"], ctx.match["version"])
        return await self.serve_file(ctx, lid, lver, f"{lid}.{lver}.nupkg")

    # ------------------------------------------------------------------ registration
    async def registration_index(self, ctx: Ctx) -> web.StreamResponse:
        lid, _ = _checked(ctx.match["id"])
        if ctx.repo.is_proxy:
            key = f"v3/registration/{lid}/index.json"
            cached = await self.proxy_metadata(ctx, key, f"{lid}/index.json", "registration")
            return await ctx.pull.answer(ctx.request, cached, key, decoded_headers(cached), ctx.base_url)
        entries, x_cache = await self.entries(ctx, lid)
        return _json(nr.registration_index(ctx.base_url, entries), None if ctx.repo.is_hosted else x_cache)

    async def registration_page(self, ctx: Ctx) -> web.StreamResponse:
        lid, _ = _checked(ctx.match["id"])
        if ctx.repo.is_proxy:
            rest = f"{lid}/page/{ctx.match['lower']}/{ctx.match['upper']}.json"
            key = f"v3/registration/{rest}"
            cached = await self.proxy_metadata(ctx, key, rest, "registration")
            return await ctx.pull.answer(ctx.request, cached, key, decoded_headers(cached), ctx.base_url)
        entries, x_cache = await self.entries(ctx, lid)
        body = nr.registration_page(ctx.base_url, entries, ctx.match["lower"].lower(), ctx.match["upper"].lower())
        if body is None:
            raise FormatError(404, f"no such registration page of {lid}")
        return _json(body, None if ctx.repo.is_hosted else x_cache)

    async def registration_leaf(self, ctx: Ctx) -> web.StreamResponse:
        lid, lver = _checked(ctx.match["id"], ctx.match["version"])
        found, _, x_cache = await self.entry(ctx, lid, lver)
        return _json(nr.leaf_document(ctx.base_url, found), None if ctx.repo.is_hosted else x_cache)

    async def semver1_entries(self, ctx: Ctx) -> tuple[str, list[dict[str, Any]], str | None]:
        """(id, entries, X-Cache) of the SemVer 1 hive: the package without its SemVer 2.0.0
        versions (a proxy reads its upstream's full hive and leaves them out too)."""
        lid, _ = _checked(ctx.match["id"])
        entries, x_cache = await self.entries(ctx, lid)
        entries = [e for e in entries if not nm.is_semver2(e)]
        if not entries:
            raise FormatError(404, f"package {lid} has no SemVer 1 versions in {ctx.repo.name}")
        return lid, entries, None if ctx.repo.is_hosted else x_cache

    async def semver1_index(self, ctx: Ctx) -> web.StreamResponse:
        _, entries, x_cache = await self.semver1_entries(ctx)
        return _json(nr.registration_index(ctx.base_url, entries, nr.SEMVER1), x_cache)

    async def semver1_page(self, ctx: Ctx) -> web.StreamResponse:
        lid, entries, x_cache = await self.semver1_entries(ctx)
        body = nr.registration_page(ctx.base_url, entries, ctx.match["lower"].lower(), ctx.match["upper"].lower(),
                                    nr.SEMVER1)
        if body is None:
            raise FormatError(404, f"no such registration page of {lid}")
        return _json(body, x_cache)

    async def semver1_leaf(self, ctx: Ctx) -> web.StreamResponse:
        _, entries, x_cache = await self.semver1_entries(ctx)
        lver = _checked(ctx.match["id"], ctx.match["version"])[1]
        found = next((e for e in entries if e["version"].lower() == lver), None)
        if found is None:
            raise FormatError(404, f"{ctx.match['id']} {lver} not found in {ctx.repo.name}")
        return _json(nr.leaf_document(ctx.base_url, found, nr.SEMVER1), x_cache)

    async def catalog_leaf(self, ctx: Ctx) -> web.StreamResponse:
        lid, lver = _checked(ctx.match["id"], ctx.match["version"])
        found, _, x_cache = await self.entry(ctx, lid, lver)
        return _json(nr.catalog_leaf(ctx.base_url, found), None if ctx.repo.is_hosted else x_cache)

    # ------------------------------------------------------------------ search
    async def search_items(self, ctx: Ctx) -> tuple[list[dict[str, Any]], str | None]:
        """Search results (v3 `data` items rendered for ctx.base_url) of one repository."""
        query = ctx.request.query
        prerelease = query.get("prerelease", "false").lower() == "true"
        semver2 = wants_semver2(query)
        if ctx.repo.is_proxy:        # the upstream is always asked for SemVer 2.0.0 packages too
            rest = "?" + urlencode(sorted((k, v) for k, v in query.items() if k not in ("skip", "take", "semVerLevel")))
            cached = await self.proxy_metadata(ctx, f"v3/query{rest}", rest + "&take=1000&semVerLevel=2.0.0",
                                               "search")
            body = (await ctx.pull.read(cached)).decode().replace(BASE_PLACEHOLDER, ctx.base_url)
            items = list(json.loads(body).get("data") or [])
            if not semver2:
                items = [found for found in map(nr.semver1_item, items) if found is not None]
            return items, cached.status
        if ctx.repo.is_group:
            answers = await ctx.each_member(self.search_items, "search")
            merged: dict[str, dict[str, Any]] = {}
            for _, (items, _) in answers:
                for item in items:
                    merged.setdefault(str(item.get("id", "")).lower(), item)
            return list(merged.values()), merge_x_cache(xc for _, (_, xc) in answers)
        out = []
        for stored in await ctx.hosted.list("meta/"):
            entries = nr.visible(nm.entries(json.loads(await ctx.hosted.read(stored))), prerelease)
            entries = entries if semver2 else [e for e in entries if not nm.is_semver2(e)]
            if entries and nr.matches(query.get("q", ""), entries):
                out.append(nr.search_item(ctx.base_url, entries))
        return out, "HIT"

    def paging(self, ctx: Ctx) -> tuple[int, int]:
        try:
            return max(0, int(ctx.request.query.get("skip", "0"))), \
                max(0, min(int(ctx.request.query.get("take", "20")), 1000))
        except ValueError:
            raise FormatError(400, "skip and take must be integers") from None

    async def search(self, ctx: Ctx) -> web.StreamResponse:
        skip, take = self.paging(ctx)
        items, x_cache = await self.search_items(ctx)
        return _json({"totalHits": len(items), "data": items[skip:skip + take]},
                     None if ctx.repo.is_hosted else x_cache)

    async def autocomplete(self, ctx: Ctx) -> web.StreamResponse:
        skip, take = self.paging(ctx)
        package_id = ctx.request.query.get("id")
        if package_id:
            lid, _ = _checked(package_id)
            entries, x_cache = await self.entries(ctx, lid)
            prerelease = ctx.request.query.get("prerelease", "false").lower() == "true"
            data = [e["version"] for e in nr.visible(entries, prerelease)
                    if wants_semver2(ctx.request.query) or not nm.is_semver2(e)]
            return _json({"totalHits": len(data), "data": data}, None if ctx.repo.is_hosted else x_cache)
        items, x_cache = await self.search_items(ctx)
        ids = [str(i.get("id")) for i in items]
        return _json({"totalHits": len(ids), "data": ids[skip:skip + take]}, None if ctx.repo.is_hosted else x_cache)

    # ------------------------------------------------------------------ hosted: push, unlist, relist
    async def push_probe(self, ctx: Ctx) -> web.StreamResponse:
        """nuget.exe 2.x asks the push URL before it PUTs; any answer but an error will do."""
        return web.Response(text="depot NuGet push endpoint\n", headers={"X-Cache": "HIT"} if self.local(ctx) else {})

    async def push(self, ctx: Ctx) -> web.StreamResponse:
        target = ctx.deploy_target()
        body = await target.read_body()
        try:
            package = nm.multipart_package(body, ctx.request.headers.get("Content-Type", ""))
            entry, nuspec = await in_thread(nm.read_nupkg, package)
        except nm.NuGetError as exc:
            raise FormatError(400, str(exc)) from None
        lid, lver = entry["id"].lower(), entry["version"].lower()
        doc = await self.hosted_doc(target, lid)
        if doc and lver in doc.get("versions", {}):
            raise FormatError(409, f"{entry['id']} {entry['version']} already exists in {target.repo.name}")
        entry.update(listed=True, published=nm.iso_now(), packageSize=len(package),
                     packageHash=base64.b64encode(hashlib.sha512(package).digest()).decode())
        if doc:
            entry["id"] = doc.get("id", entry["id"])       # the first push fixes the id's spelling
        files = [(stored_path(lid, lver, f"{lid}.{lver}.nupkg"), package, NUPKG),
                 (stored_path(lid, lver, f"{lid}.nuspec"), nuspec, "application/xml")]
        created = []
        for path, data, content_type in files:
            published = await target.publish(path, data, content_type=content_type, overwrite=False)
            created += [path] if published.created else []
        try:
            await target.hosted.update_document(f"meta/{lid}.json", lambda old: nm.add_version(old, entry),
                                                content_type=JSON)
        except nm.NuGetError as exc:          # a concurrent push of the same version won
            for path in created:
                await target.hosted.delete(path)
            raise FormatError(409, str(exc)) from None
        target.hosted.count_publish()
        return web.Response(status=201, text="created\n")

    async def set_listed(self, ctx: Ctx, listed: bool) -> web.StreamResponse:
        lid, lver = _checked(ctx.match["id"], ctx.match["version"])
        target = ctx.deploy_target()
        if not listed and not target.repo.options.get("delete_unlists", True):
            return await self.hard_delete(target, lid, lver)
        try:
            await target.hosted.update_document(f"meta/{lid}.json", lambda old: nm.set_listed(old, lver, listed))
        except KeyError:
            raise FormatError(404, f"{lid} {lver} not found in {target.repo.name}") from None
        return web.Response(status=204 if not listed else 200)

    async def hard_delete(self, target: Ctx, lid: str, lver: str) -> web.StreamResponse:
        def drop(old: bytes | None) -> bytes | None:
            doc = json.loads(old) if old else {"versions": {}}
            if doc["versions"].pop(lver, None) is None:
                raise KeyError(lver)
            return json.dumps(doc, sort_keys=True).encode()
        try:
            await target.hosted.update_document(f"meta/{lid}.json", drop)
        except KeyError:
            raise FormatError(404, f"{lid} {lver} not found in {target.repo.name}") from None
        for file in (f"{lid}.{lver}.nupkg", f"{lid}.nuspec"):
            await target.hosted.delete(stored_path(lid, lver, file), tombstone=True)
        return web.Response(status=204)

    async def unlist(self, ctx: Ctx) -> web.StreamResponse:
        return await self.set_listed(ctx, False)

    async def relist(self, ctx: Ctx) -> web.StreamResponse:
        return await self.set_listed(ctx, True)

    # ------------------------------------------------------------------ policy and admin hooks
    def package_of(self, path: str) -> tuple[str, str] | None:
        found = FLAT_FILE.match(path) or STORED.match(path) or V2_DOWNLOAD.match(path)
        if found is None:
            return None
        try:
            return found["id"].lower(), nm.normalize(found["version"])
        except nm.NuGetError:
            return None

    def metadata_key_for(self, package: str) -> str | None:
        return f"v3/registration/{package.lower()}/index.json"

    def metadata_versions(self, path: str, body: bytes) -> list[VersionInfo] | None:
        """Registration documents (with publish times) and flat-container version lists."""
        found = REGISTRATION.match(path) or FLAT_INDEX.match(path)
        if found is None:
            return None
        lid = found["id"].lower()
        try:
            doc = json.loads(body)
            if path.startswith("v3-flatcontainer/"):
                return [VersionInfo(lid, nm.normalize(str(v))) for v in doc.get("versions", [])]
            return [VersionInfo(lid, nm.normalize(e["version"]), nm.parse_time(e.get("published")))
                    for e in nu.catalog_entries(doc)]
        except (ValueError, KeyError, TypeError, AttributeError):
            return []

    def filter_metadata(self, path: str, body: bytes, hidden: frozenset[tuple[str, str]]) -> bytes:
        """The document without the hidden versions (page counts and bounds kept consistent)."""
        doc = json.loads(body)
        lid = path.split("/")[2 if path.startswith("v3/") else 1].lower()

        def keep(version: str) -> bool:
            try:
                return (lid, nm.normalize(version)) not in hidden
            except nm.NuGetError:
                return True
        if path.startswith("v3-flatcontainer/"):
            doc["versions"] = [v for v in doc.get("versions", []) if keep(str(v))]
            return json.dumps(doc).encode()
        items = doc.get("items") or []
        pages = [doc] if items and "catalogEntry" in items[0] else items
        for page in pages:
            if "items" in page:
                page["items"] = [i for i in page["items"] if keep(str(i.get("catalogEntry", {}).get("version", "")))]
                page["count"] = len(page["items"])
        return json.dumps(doc).encode()


FORMAT = NuGet
