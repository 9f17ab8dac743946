"""Conan 2 remotes (the v2 revisions API): proxy (ConanCenter by default), hosted and group.

Paths under /<repo>/ (the remote URL is `<depot>/<repo>`); REF = v2/conans/<name>/<version>/<user>/<channel>
(`_/_` without user and channel):
  v1/ping                                       X-Conan-Server-Capabilities: revisions
  v2/users/authenticate                         Basic → a bearer token (plain text)
  v2/users/check_credentials
  v2/conans/search?q=<pattern>                  {"results": ["name/version@user/channel", …]}
  REF/latest, REF/revisions                     recipe revisions {revision, time}
  REF/revisions/<rrev>[/files[/<path>]]         file list, GET/PUT a file, DELETE a revision
  REF/revisions/<rrev>/search                   binaries {package_id: {"content": conaninfo.txt}}
  REF/revisions/<rrev>/packages/<pkgid>/latest|revisions[/<prev>[/files[/<path>]]]
Hosted: a revision is immutable (a file once uploaded keeps its bytes); the revision lists
(`revisions.json`, compare-and-swap) record when each revision arrived, the newest is `latest`.
Proxy: revision lists, file lists and searches are metadata (revalidated); files are immutable.
Group: revision lists merged (the first member wins per revision), files from the first member
that has the revision.
"""
from __future__ import annotations

import fnmatch
import json
import re
import time
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from depot.cache.api import Kind, merge_x_cache

from .base import Ctx, Format, FormatError, route, standard_repositories
from .repo import RepoConfig
from .warm_plans import Job

PART = r"[A-Za-z0-9_][A-Za-z0-9_.+-]{0,100}"
REF = rf"v2/conans/(?P<name>{PART})/(?P<version>{PART})/(?P<user>{PART})/(?P<channel>{PART})"
RREV = r"/revisions/(?P<rrev>[0-9a-f]{1,64})"
PKG = r"/packages/(?P<pkgid>[0-9a-f]{1,64})"
PREV = r"/revisions/(?P<prev>[0-9a-f]{1,64})"
FILE = r"/files/(?P<file>[A-Za-z0-9_.+-]+(?:/[A-Za-z0-9_.+-]+)*)"
CAPABILITIES = "revisions"
TOKEN_TTL = 24 * 3600
OF_RECIPE = re.compile(rf"(?:v2/conans/)?(?P<name>{PART})/(?P<version>{PART})/{PART}/{PART}/(?:revisions|latest)")


def iso(ts: float) -> str:
    """Times as conan_server and Artifactory write them (ISO 8601, UTC)."""
    return datetime.fromtimestamp(ts, timezone.utc).isoformat()


def _ts(value: str) -> float:
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def add_revision(old: bytes | None, revision: str) -> bytes | None:
    """The revision list with `revision` (kept with its first time when already there)."""
    doc = json.loads(old) if old else {"revisions": []}
    if any(r["revision"] == revision for r in doc["revisions"]):
        return None
    doc["revisions"].insert(0, {"revision": revision, "time": iso(time.time())})
    return json.dumps(doc).encode()


def drop_revision(old: bytes | None, revision: str) -> bytes | None:
    doc = json.loads(old) if old else {"revisions": []}
    kept = [r for r in doc["revisions"] if r["revision"] != revision]
    if len(kept) == len(doc["revisions"]):
        raise KeyError(revision)
    return json.dumps({"revisions": kept}).encode()


def merge_revisions(lists: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Revision lists of several members, newest first; the first member wins per revision."""
    seen: dict[str, dict[str, Any]] = {}
    for revisions in lists:
        for entry in revisions:
            seen.setdefault(entry["revision"], entry)
    return sorted(seen.values(), key=lambda r: _ts(r.get("time", "")), reverse=True)


def _each_file(body: bytes, url: str) -> list[Job]:
    """The files of a revision's file list (a warm plan's second step)."""
    try:
        files = json.loads(body).get("files") or {}
    except (ValueError, AttributeError):
        return []
    return [Job(f"{url}/{name}") for name in files]


def _json(doc: Any, x_cache: str | None = None) -> web.Response:
    headers = {"Cache-Control": "no-cache", **({"X-Cache": x_cache} if x_cache else {})}
    return web.Response(body=json.dumps(doc).encode(), content_type="application/json", headers=headers)


class Conan(Format):
    """The Conan 2 server API (revisions)."""

    name = "conan"
    routes = (
        route("GET HEAD", r"v[12]/ping", "ping", perm="none"),
        route("GET", r"v2/users/authenticate", "authenticate", perm="none"),
        route("GET", r"v2/users/check_credentials", "check_credentials", perm="none"),
        route("GET", r"v2/conans/search", "search"),
        route("GET", REF + r"/latest", "revisions"),
        route("GET", REF + r"/revisions", "revisions"),
        route("GET", REF + r"(?:" + RREV + r")?/search", "package_search"),
        route("GET", REF + RREV + PKG + r"/latest", "revisions"),
        route("GET", REF + RREV + PKG + r"/revisions", "revisions"),
        route("GET HEAD", REF + RREV + rf"(?:{PKG}{PREV})?/files", "file_list"),
        route("GET HEAD", REF + RREV + rf"(?:{PKG}{PREV})?{FILE}", "download"),
        route("PUT", REF + RREV + rf"(?:{PKG}{PREV})?{FILE}", "upload", "hosted group"),
        route("DELETE", REF + RREV + rf"(?:{PKG}{PREV})?", "delete", "hosted group"),
        route("DELETE", REF + RREV + r"/packages", "delete", "hosted group"),
    )

    @classmethod
    def default_upstream(cls) -> str:
        return "https://center2.conan.io"

    @classmethod
    def default_repositories(cls) -> dict[str, dict[str, Any]]:
        return standard_repositories("conan")

    @classmethod
    def snippets(cls, repo: RepoConfig, url: str, host: str, insecure: bool) -> list[tuple[str, str]]:
        out = [("conan", f"conan remote add depot {url}\nconan remote login depot USER -p TOKEN_OR_PASSWORD\n"
                         "conan install --requires zlib/1.3.1 -r depot")]
        if not repo.is_proxy:
            out.append(("upload", 'conan upload "mypkg/1.0" -r depot -c'))
        return out

    @classmethod
    def warm_plan(cls, mount: str, filename: str, text: str) -> tuple[list[Any], list[str]] | None:
        """`depot warm <repo> conan.lock`: the revision list and the files of every locked recipe
        revision (binaries depend on the profile: conan fetches them on its first install)."""
        if not filename.endswith("conan.lock"):
            return None
        try:
            doc = json.loads(text)
        except ValueError:
            from .warm_plans import PlanError
            raise PlanError("conan.lock cannot be parsed") from None
        jobs, notes = [], []
        for ref in [*doc.get("requires", []), *doc.get("build_requires", []), *doc.get("python_requires", [])]:
            found = re.match(rf"({PART})/({PART})(?:@({PART})/({PART}))?#([0-9a-f]+)", str(ref))
            if not found:
                notes.append(f"not understood, skipped: {ref}")
                continue
            name, version, user, channel, rrev = found.groups()
            base = f"{mount}/v2/conans/{name}/{version}/{user or '_'}/{channel or '_'}"
            jobs += [Job(f"{base}/revisions"), Job(f"{base}/revisions/{rrev}/files", then=_each_file)]
        return jobs, notes

    def challenge(self, base_url: str) -> str:
        return 'Bearer realm="depot"'

    def error(self, ctx: Ctx | None, status: int, message: str, code: str | None = None) -> web.Response:
        """Conan clients print the body of an error answer as text."""
        return web.Response(status=status, text=message.rstrip("\n") + "\n", content_type="text/plain",
                            headers={"Cache-Control": "no-store"})

    # ------------------------------------------------------------------ session
    async def ping(self, ctx: Ctx) -> web.StreamResponse:
        headers = {"X-Conan-Server-Capabilities": CAPABILITIES, "Cache-Control": "no-store"}
        if not ctx.repo.is_hosted:
            headers["X-Cache"] = "HIT"          # answered by depot, no upstream contact
        return web.Response(headers=headers)

    async def authenticate(self, ctx: Ctx) -> web.StreamResponse:
        if not ctx.request.headers.get("Authorization", "").lower().startswith("basic "):
            raise FormatError(401, "Wrong user or password")
        return web.Response(text=ctx.session_token(TOKEN_TTL), content_type="text/plain")

    async def check_credentials(self, ctx: Ctx) -> web.StreamResponse:
        principal = ctx.principal
        if principal is None or principal.anonymous:
            try:                          # conan asks before every upload: fine when anyone may write
                ctx.deploy_target("write")
            except FormatError:
                raise FormatError(401, "Logged user needed!") from None
            return web.Response(text="anonymous", content_type="text/plain")
        return web.Response(text=str(principal.user or principal.label), content_type="text/plain")

    # ------------------------------------------------------------------ paths
    @staticmethod
    def ref_path(ctx: Ctx) -> str:
        m = ctx.match
        return f"{m['name']}/{m['version']}/{m['user']}/{m['channel']}"

    def stored_prefix(self, ctx: Ctx) -> str:
        """Where the recipe revision (or package revision) the route names is stored."""
        m = ctx.match.groupdict()
        out = self.ref_path(ctx) + f"/revisions/{m['rrev']}"
        if m.get("pkgid") and m.get("prev"):
            out += f"/packages/{m['pkgid']}/revisions/{m['prev']}"
        return out

    def revisions_doc(self, ctx: Ctx) -> str:
        m = ctx.match.groupdict()
        base = self.ref_path(ctx)
        return f"{base}/revisions/{m['rrev']}/packages/{m['pkgid']}/revisions.json" if m.get("pkgid") \
            else f"{base}/revisions.json"

    # ------------------------------------------------------------------ reading
    async def metadata(self, ctx: Ctx, key: str) -> tuple[bytes, str | None]:
        """A proxied metadata answer (revision list, file list, search) and its X-Cache."""
        cached, body = await ctx.fetch_upstream(ctx.pull.spec(key, None, Kind.METADATA,
                                                              content_type="application/json"))
        return body, cached.status

    async def member_revisions(self, ctx: Ctx) -> tuple[list[dict[str, Any]], str | None]:
        """The revision list (recipe or package) the route names, newest first."""
        if ctx.repo.is_hosted:
            stored = await ctx.hosted.get(self.revisions_doc(ctx))
            doc = json.loads(await ctx.hosted.read(stored)) if stored else {"revisions": []}
            if not doc["revisions"]:
                raise FormatError(404, f"{ctx.path.rsplit('/', 1)[0]} not found in {ctx.repo.name}")
            return doc["revisions"], "HIT"
        if ctx.repo.is_proxy:
            key = re.sub(r"/latest\Z", "/revisions", ctx.path)
            body, x_cache = await self.metadata(ctx, key)
            return list(json.loads(body).get("revisions") or []), x_cache
        answers = await ctx.each_member(self.member_revisions, ctx.path)
        return merge_revisions([r for _, (r, _) in answers]), merge_x_cache(xc for _, (_, xc) in answers)

    async def revisions(self, ctx: Ctx) -> web.StreamResponse:
        revisions, x_cache = await self.member_revisions(ctx)
        x_cache = None if ctx.repo.is_hosted else x_cache
        if ctx.path.endswith("/latest"):
            if not revisions:
                raise FormatError(404, f"no revisions of {ctx.path.rsplit('/', 1)[0]}")
            newest = max(revisions, key=lambda r: _ts(r.get("time", "")))
            return _json({"revision": newest["revision"], "time": newest["time"]}, x_cache)
        m = ctx.match.groupdict()
        reference = f"{m['name']}/{m['version']}" + ("" if m["user"] == "_" else f"@{m['user']}/{m['channel']}")
        if m.get("pkgid"):
            reference += f"#{m['rrev']}:{m['pkgid']}"
        return _json({"reference": reference, "revisions": revisions}, x_cache)

    async def member_files(self, ctx: Ctx) -> tuple[dict[str, Any], str | None]:
        if ctx.repo.is_hosted:
            prefix = self.stored_prefix(ctx) + "/files/"
            files: dict[str, Any] = {f.path[len(prefix):]: {} for f in await ctx.hosted.list(prefix)}
            if not files:
                raise FormatError(404, f"{ctx.path.rsplit('/', 1)[0]} not found in {ctx.repo.name}")
            return {"files": files}, "HIT"
        if ctx.repo.is_proxy:
            body, x_cache = await self.metadata(ctx, ctx.path)
            return json.loads(body), x_cache
        return await ctx.first_member(self.member_files, ctx.path)

    async def file_list(self, ctx: Ctx) -> web.StreamResponse:
        doc, x_cache = await self.member_files(ctx)
        return _json(doc, None if ctx.repo.is_hosted else x_cache)

    async def download(self, ctx: Ctx, x_cache: str | None = None) -> web.StreamResponse:
        if ctx.repo.is_group:
            return await ctx.first_member(lambda m: self.download(m, "HIT"), ctx.path)
        if ctx.repo.is_proxy:
            return ctx.pull.respond(ctx.request, await ctx.open_upstream(ctx.pull.spec(ctx.path)))
        stored = await ctx.hosted.get(f"{self.stored_prefix(ctx)}/files/{ctx.match['file']}")
        if stored is None:
            raise FormatError(404, f"{ctx.path} not found in {ctx.repo.name}")
        return ctx.hosted.serve(ctx.request, stored, x_cache=x_cache)

    async def search(self, ctx: Ctx) -> web.StreamResponse:
        results, x_cache = await self.member_search(ctx)
        return _json({"results": sorted(results)}, None if ctx.repo.is_hosted else x_cache)

    async def member_search(self, ctx: Ctx) -> tuple[list[str], str | None]:
        query = ctx.request.query
        if ctx.repo.is_proxy:
            key = "v2/conans/search" + ("?" + urlencode(sorted(query.items())) if query else "")
            body, x_cache = await self.metadata(ctx, key)
            return [str(r) for r in json.loads(body).get("results") or []], x_cache
        if ctx.repo.is_group:
            answers = await ctx.each_member(self.member_search, "search")
            return sorted({r for _, (found, _) in answers for r in found}), \
                merge_x_cache(xc for _, (_, xc) in answers)
        pattern = query.get("q", "*")
        case = query.get("ignorecase", "true").lower() != "false"
        regex = re.compile(fnmatch.translate(pattern), re.IGNORECASE if case else 0)
        found = []
        for stored in await ctx.hosted.list():
            parts = stored.path.split("/")
            if len(parts) == 5 and parts[4] == "revisions.json":
                name, version, user, channel = parts[:4]
                ref = f"{name}/{version}" + ("" if user == "_" else f"@{user}/{channel}")
                if regex.match(ref) or regex.match(f"{name}/{version}"):
                    found.append(ref)
        return found, "HIT"

    async def package_search(self, ctx: Ctx) -> web.StreamResponse:
        doc, x_cache = await self.member_package_search(ctx)
        return _json(doc, None if ctx.repo.is_hosted else x_cache)

    async def member_package_search(self, ctx: Ctx) -> tuple[dict[str, Any], str | None]:
        if ctx.repo.is_proxy:
            query = ctx.request.query
            key = ctx.path + ("?" + urlencode(sorted(query.items())) if query else "")
            body, x_cache = await self.metadata(ctx, key)
            return json.loads(body), x_cache
        if ctx.repo.is_group:
            return await ctx.first_member(self.member_package_search, ctx.path)
        rrev = ctx.match["rrev"]
        if rrev is None:
            revisions, _ = await self.member_revisions(ctx)
            rrev = revisions[0]["revision"]
        return await self.hosted_binaries(ctx, rrev), "HIT"

    async def hosted_binaries(self, ctx: Ctx, rrev: str) -> dict[str, Any]:
        """{package_id: {"content": conaninfo.txt of its latest revision}} of a recipe revision."""
        base = f"{self.ref_path(ctx)}/revisions/{rrev}"
        if await ctx.hosted.get(f"{self.ref_path(ctx)}/revisions.json") is None:
            raise FormatError(404, f"recipe {self.ref_path(ctx)} not found in {ctx.repo.name}")
        list_only = ctx.request.query.get("list_only", "false").lower() == "true"
        out: dict[str, Any] = {}
        for stored in await ctx.hosted.list(f"{base}/packages/"):
            rest = stored.path[len(base) + len("/packages/"):].split("/")
            if len(rest) != 2 or rest[1] != "revisions.json":
                continue
            revisions = json.loads(await ctx.hosted.read(stored))["revisions"]
            if not revisions:
                continue
            if list_only:
                out[rest[0]] = {}
                continue
            info = await ctx.hosted.get(f"{base}/packages/{rest[0]}/revisions/{revisions[0]['revision']}"
                                        "/files/conaninfo.txt")
            out[rest[0]] = {"content": (await ctx.hosted.read(info)).decode("utf-8", "replace") if info else ""}
        return out

    # ------------------------------------------------------------------ hosted writes
    async def upload(self, ctx: Ctx) -> web.StreamResponse:
        target = ctx.deploy_target()
        m = ctx.match.groupdict()
        if m.get("pkgid") and await target.hosted.get(f"{self.ref_path(ctx)}/revisions/{m['rrev']}/files/"
                                                      "conanmanifest.txt") is None:
            raise FormatError(404, f"recipe revision {m['rrev']} is not in {target.repo.name}: upload it first")
        path = f"{self.stored_prefix(target)}/files/{m['file']}"
        await target.publish(path, target.body(), content_type="application/octet-stream", overwrite=False)
        revision, doc = (m["prev"], self.revisions_doc(target)) if m.get("pkgid") else \
            (m["rrev"], self.revisions_doc(target))
        await target.hosted.update_document(doc, lambda old: add_revision(old, revision),
                                            content_type="application/json")
        if m["file"] == "conanmanifest.txt":
            target.hosted.count_publish()
        return web.Response(status=201)

    async def delete(self, ctx: Ctx) -> web.StreamResponse:
        """A recipe revision (with its binaries), a package revision, or every binary of a
        recipe revision (`…/packages`)."""
        target = ctx.deploy_target()
        m = ctx.match.groupdict()
        if ctx.path.endswith("/packages"):
            prefix = f"{self.ref_path(target)}/revisions/{m['rrev']}/packages/"
        else:
            prefix = self.stored_prefix(target) + "/"
        files = await target.hosted.list(prefix)
        if not files:
            raise FormatError(404, f"{ctx.path} not found in {target.repo.name}")
        if not ctx.path.endswith("/packages"):
            revision = m["prev"] if m.get("pkgid") else m["rrev"]
            try:
                await target.hosted.update_document(self.revisions_doc(target),
                                                    lambda old: drop_revision(old, revision))
            except KeyError:
                raise FormatError(404, f"revision {revision} not found in {target.repo.name}") from None
        for file in files:
            await target.hosted.delete(file.path)
        ctx.extra["audit_action"] = "delete"
        return web.Response(status=200)

    # ------------------------------------------------------------------ admin hooks
    def package_of(self, path: str) -> tuple[str, str] | None:
        """(name, version) of anything under a recipe: proxy keys (`v2/conans/…`, so that the
        policy refuses a denied version's revision lists and files) and stored paths."""
        found = OF_RECIPE.match(path)
        return (found["name"], found["version"]) if found else None


FORMAT = Conan
