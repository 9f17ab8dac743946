"""Bower registry (`format: bower`): the package lookup, tarball packages and git registrations.

Paths, relative to `/<repo>/` (`.bowerrc`: `{"registry": "<depot>/<repo>"}`):

* `GET packages/<name>` — the lookup bower does first: `{"name", "url"}`. Hosted: the newest
  uploaded tarball (url at depot), else a registered git URL. Proxy: the upstream's answer
  (metadata, revalidated), a tarball/zip url rewritten to depot (`archives/<name>/<file>`, served
  as `application/x-gzip`, one upstream fetch, immutable); a git url is left as it is — bower
  clones it directly and depot cannot cache it: the answer says so in `depot_note`. Group: the
  first member knowing the name.
* `GET archives/<name>/<file>` — a package archive.
* `PUT archives/<name>/<version>.tar.gz` — upload a tarball package (hosted; a group forwards to
  `deploy_to`): a readable .tar.gz whose bower.json, when present, names the same package.
* `POST packages` (form `name`, `url`) — `bower register`: a git URL for a name (hosted).
"""
from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

from aiohttp import web

from depot.cache.api import BASE_PLACEHOLDER, Kind

from .base import Ctx, Format, FormatError, VersionInfo, route, standard_repositories
from .group_answer import first_member_hit
from .json_answer import json_answer
from .repo import RepoConfig
from .tarball_meta import json_member
from .terraform_modules import version_key
from .tree import in_thread

NAME = r"[A-Za-z0-9][A-Za-z0-9._-]*"
VERSION = r"v?[0-9][0-9A-Za-z.+-]*"
ARCHIVE = re.compile(r"[^/?#]+\.(?:tar\.gz|tgz|zip)")
GZIP_TYPE = "application/x-gzip"
GIT_NOTE = "git URL: bower clones it itself; depot cannot cache git sources"


def archive_version(name: str, file: str) -> str:
    """The version in an archive's file name (`1.2.3.tar.gz`, `name-1.2.3.tgz`, `v1.2.3.zip`), or
    the file name without its extension when none is there."""
    stem = re.sub(r"\.(?:tar\.gz|tgz|zip)$", "", file)
    stem = stem.removeprefix(name + "-").removeprefix(name + "_")
    found = re.search(r"v?(\d+(?:\.\d+)*(?:[-+][0-9A-Za-z.-]+)?)$", stem)
    return found[1] if found else stem


def rewrite_lookup(body: bytes, name: str) -> bytes:
    """The upstream's lookup with an archive url at depot (the original kept in upstream_url);
    git urls stay, with a note (blocking: runs at fill time in a worker thread)."""
    try:
        doc = json.loads(body)
    except ValueError:
        raise ValueError("the upstream's lookup is not JSON") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("url"), str):
        raise ValueError("the upstream's lookup has no url")
    url = doc["url"]
    path = urlsplit(url).path
    file = path.rsplit("/", 1)[-1]
    if url.startswith(("http://", "https://")) and ARCHIVE.fullmatch(file):
        return json.dumps({"name": name, "url": f"{BASE_PLACEHOLDER}/archives/{name}/{file}",
                           "upstream_url": url}).encode()
    return json.dumps({"name": name, "url": url, "depot_note": GIT_NOTE}).encode()


class Bower(Format):
    """Bower lookups and tarball packages: hosted, proxy and group."""

    name = "bower"
    version_scheme = "semver"
    routes = (
        route("GET HEAD", rf"packages/(?P<name>{NAME})", "lookup"),
        route("POST", r"packages", "register", "hosted group"),
        route("GET HEAD", rf"archives/(?P<name>{NAME})/(?P<file>[^/]+)", "archive"),
        route("PUT", rf"archives/(?P<name>{NAME})/(?P<version>{VERSION})\.tar\.gz", "upload", "hosted group"),
        route("DELETE", rf"archives/(?P<name>{NAME})/(?P<version>{VERSION})\.tar\.gz", "delete", "hosted group"),
    )

    @classmethod
    def default_repositories(cls) -> dict[str, dict[str, Any]]:
        return standard_repositories("bower")

    @classmethod
    def default_upstream(cls) -> str | None:
        return "https://registry.bower.io"

    @classmethod
    def snippets(cls, repo: RepoConfig, url: str, host: str, insecure: bool) -> list[tuple[str, str]]:
        out = [(".bowerrc", json.dumps({"registry": url}) + "\nbower install <package>")]
        if not repo.is_proxy:
            out.append(("upload a tarball package",
                        f"curl -u USER:TOKEN -T pkg.tar.gz {url}/archives/<name>/<version>.tar.gz"))
        return out

    def error(self, ctx: Ctx | None, status: int, message: str, code: str | None = None) -> web.Response:
        """The registry's shape: {"error": "…"} (bower shows the status and the text)."""
        return web.json_response({"error": message}, status=status, headers={"Cache-Control": "no-store"})

    def package_of(self, path: str) -> tuple[str, str] | None:
        found = re.fullmatch(rf"archives/({NAME})/({VERSION})\.tar\.gz", path)
        if found:
            return found[1], found[2]
        found = re.fullmatch(rf"archives/({NAME})/([^/]+)", path)      # a proxied archive, as its upstream named it
        return (found[1], archive_version(found[1], found[2])) if found else None

    # ------------------------------------------------------------------ supply-chain policy
    def metadata_versions(self, path: str, body: bytes) -> list[VersionInfo] | None:
        """A lookup names one package and one source: its version is the archive's (from the file
        name), unknown ("") for a git URL, which bower resolves itself. No publish times: deny and
        allow rules apply, the cooldown cannot."""
        if not path.startswith("packages/"):
            return None
        try:
            doc = json.loads(body)
        except ValueError:
            return None
        name, url = str(doc.get("name") or path.removeprefix("packages/")), str(doc.get("url") or "")
        file = urlsplit(url).path.rsplit("/", 1)[-1]
        return [VersionInfo(name, archive_version(name, file) if ARCHIVE.fullmatch(file) else "")]

    # ------------------------------------------------------------------ lookup
    async def lookup(self, ctx: Ctx) -> web.StreamResponse:
        name = ctx.match["name"]
        if ctx.repo.is_group:
            return await first_member_hit(ctx, self.lookup, f"package {name}")
        if ctx.repo.is_proxy:
            cached = await ctx.open_upstream(self._lookup_spec(ctx, name))
            await self._refuse_hidden(ctx, f"packages/{name}", await ctx.pull.read(cached))
            return await ctx.pull.answer(ctx.request, cached, f"packages/{name}", base_url=ctx.base_url)
        return json_answer(ctx.request, await self._hosted_lookup(ctx, name), {"X-Cache": "HIT"})

    async def _refuse_hidden(self, ctx: Ctx, path: str, body: bytes) -> None:
        """A lookup offers a single source: when the policy hides it, the answer is the 403 naming
        the rule (there is nothing left to resolve from)."""
        hidden = ctx.pull.hidden(self.metadata_versions(path, body) or [])
        for (package, version), verdict in hidden.items():
            raise FormatError(403, verdict.message(package, version or None), code="DENIED",
                              headers={"X-Depot-Policy": verdict.header()})

    def _lookup_spec(self, ctx: Ctx, name: str) -> Any:
        return ctx.pull.spec(f"packages/{name}", kind=Kind.METADATA, content_type="application/json",
                             transform=lambda body: rewrite_lookup(body, name))

    async def _hosted_lookup(self, ctx: Ctx, name: str) -> dict[str, Any]:
        versions = [f.path.rsplit("/", 1)[-1].removesuffix(".tar.gz")
                    for f in await ctx.hosted.list(f"archives/{name}/")]
        if versions:
            newest = max(versions, key=lambda v: version_key(v.lstrip("v")))
            return {"name": name, "url": f"{ctx.base_url}/archives/{name}/{newest}.tar.gz"}
        found = await ctx.hosted.get(f"registrations/{name}.json")
        if found is None:
            raise FormatError(404, f"Package {name} not found")
        url = json.loads(await ctx.hosted.read(found))["url"]
        return {"name": name, "url": url, "depot_note": GIT_NOTE}

    # ------------------------------------------------------------------ archives
    async def archive(self, ctx: Ctx) -> web.StreamResponse:
        name, file = ctx.match["name"], ctx.match["file"]
        if ctx.repo.is_group:
            return await first_member_hit(ctx, self.archive, file)
        path = f"archives/{name}/{file}"
        if ctx.repo.is_hosted:
            found = await ctx.hosted.get(path)
            if found is None:
                raise FormatError(404, f"{file} not found")
            return ctx.hosted.serve(ctx.request, found, headers={"Content-Type": GZIP_TYPE})
        if await ctx.pull.peek(path) is None:
            _, body = await ctx.fetch_upstream(self._lookup_spec(ctx, name))
            doc = json.loads(body)
            upstream = doc.get("upstream_url")
            if not upstream or urlsplit(upstream).path.rsplit("/", 1)[-1] != file:
                raise FormatError(404, f"{file} is not the archive the upstream names for {name}")
        else:
            upstream = None
        spec = ctx.pull.spec(path, upstream, Kind.IMMUTABLE,
                             content_type=GZIP_TYPE if not file.endswith(".zip") else "application/zip")
        return ctx.pull.respond(ctx.request, await ctx.open_upstream(spec))

    async def upload(self, ctx: Ctx) -> web.StreamResponse:
        target = ctx.deploy_target()
        name, version = ctx.match["name"], ctx.match["version"]
        staged = await target.stage()
        data = await target.hosted.read_staged(staged)
        try:
            meta = await in_thread(json_member, data, ("bower.json",))
        except ValueError as exc:
            raise FormatError(400, str(exc)) from None
        if meta is not None and meta.get("name") not in (None, name):
            raise FormatError(400, f"bower.json names {meta.get('name')!r}, the upload is for {name!r}")
        published = await target.record(f"archives/{name}/{version}.tar.gz", staged, content_type=GZIP_TYPE,
                                        meta={"bower": {"name": name, "version": version}})
        target.hosted.count_publish()
        return web.json_response({"name": name, "version": version, "sha256": published.file.digest},
                                 status=201 if published.created else 200)

    async def delete(self, ctx: Ctx) -> web.StreamResponse:
        target = ctx.deploy_target("delete")
        path = f"archives/{ctx.match['name']}/{ctx.match['version']}.tar.gz"
        if not await target.hosted.delete(path, tombstone=not target.repo.allow_overwrite):
            raise FormatError(404, f"{path} not found")
        return web.Response(status=204)

    async def register(self, ctx: Ctx) -> web.StreamResponse:
        """`bower register <name> <git-url>`: form fields name and url."""
        target = ctx.deploy_target()
        form = parse_qs((await ctx.read_body(64 * 1024)).decode("utf-8", "replace"))
        name, url = (form.get("name") or [""])[0], (form.get("url") or [""])[0]
        if not re.fullmatch(NAME, name) or not re.match(r"(git|https?|ssh)://|git@", url):
            raise FormatError(400, "register needs a package name and a git URL")
        await target.publish(f"registrations/{name}.json", json.dumps({"name": name, "url": url}).encode(),
                             content_type="application/json")
        target.hosted.count_publish()
        return web.json_response({"name": name, "url": url}, status=201)


FORMAT = Bower
