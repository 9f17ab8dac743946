"""Go modules over the GOPROXY protocol, with the checksum database proxied.

Paths (module path and version case-encoded, `!x` for `X`):
  <module>/@v/list, <module>/@latest                 metadata (revalidated after metadata_ttl)
  <module>/@v/<version>.info|.mod|.zip               immutable (a query like `master.info`: metadata)
  sumdb/<db>/supported, sumdb/<db>/latest            metadata
  sumdb/<db>/lookup/<module>@<version>, …/tile/…      immutable, passed through byte for byte
Proxy: `<upstream>/<path>` (default https://proxy.golang.org, which also proxies sum.golang.org).
Hosted: `PUT <module>/@v/<version>.zip` publishes a module version; its `.mod` (the zip's
go.mod) and `.info` (the publish time) are derived by depot after the zip is checked the way the
go command checks it. Versions are immutable. `list` and `@latest` are generated from what is stored.
Group: `list` merged, `@latest` the highest of the members', first member wins for a version.
"""
from __future__ import annotations

import json
import re
import time
from datetime import datetime, timezone
from typing import Any

from aiohttp import web

from depot.cache.api import Kind, merge_x_cache, parse_time

from . import go_module as gm
from .base import Ctx, FormatError, VersionInfo, standard_repositories
from .repo import RepoConfig
from .tree import TreeFormat, TreeRule, in_thread, rule, validate_path
from .warm_plans import plan_go

TEXT = "text/plain; charset=utf-8"
JSON = "application/json"
LIST = re.compile(r"(?P<module>.+)/@v/list\Z")
LATEST = re.compile(r"(?P<module>.+)/@latest\Z")
VERSION_FILE = re.compile(r"(?P<module>.+)/@v/(?P<version>[^/]+)\.(?P<ext>info|mod|zip)\Z")
SUMDB = re.compile(r"sumdb/[^/]+/")


def _text_response(request: web.Request, body: bytes, content_type: str,
                   x_cache: str | None = None) -> web.Response:
    headers = {"Content-Type": content_type, "Cache-Control": "no-cache"}
    if x_cache:
        headers["X-Cache"] = x_cache
    return web.Response(body=body, headers=headers)


def _info(version: str, when: float) -> bytes:
    stamp = datetime.fromtimestamp(when, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return json.dumps({"Version": version, "Time": stamp}).encode()


class GoProxy(TreeFormat):
    """GOPROXY protocol: proxy (with sumdb), hosted (zip upload), group."""

    name = "go"
    immutable_versions = True          # the checksum database remembers every version's hash
    tree = (
        rule(r"sumdb/[^/]+/(supported|latest)", "metadata"),
        rule(r"sumdb/[^/]+/(lookup|tile)/.+"),
        rule(r".+/@v/list", "metadata", content_type=TEXT),
        rule(r".+/@latest", "metadata", content_type=JSON),
        rule(r".+/@v/[^/]+\.info", content_type=JSON),
        rule(r".+/@v/[^/]+\.mod", content_type=TEXT),
        rule(r".+/@v/[^/]+\.zip", content_type="application/zip"),
    )

    @classmethod
    def default_upstream(cls) -> str:
        return "https://proxy.golang.org"

    @classmethod
    def default_repositories(cls) -> dict[str, dict[str, Any]]:
        return standard_repositories("go")

    @classmethod
    def warm_plan(cls, mount: str, filename: str, text: str) -> tuple[list[Any], list[str]] | None:
        """`depot warm <repo> go.sum`: .info, .mod and .zip of every module version it lists."""
        return plan_go(mount, text) if filename.endswith("go.sum") else None

    @classmethod
    def snippets(cls, repo: RepoConfig, url: str, host: str, insecure: bool) -> list[tuple[str, str]]:
        if repo.is_proxy:
            return [("go", f"export GOPROXY={url}")]
        return [("go", f"export GOPROXY={url}\n"
                       "# modules published here are private: keep them out of the public checksum database\n"
                       "export GONOSUMDB=example.com/your-org/*"),
                ("publish a module version (a zip of module@version/…)",
                 f"curl -u \"$REGISTRY_USER:$REGISTRY_TOKEN\" -T m.zip {url}/example.com/your-org/m/@v/v1.0.0.zip")]

    def classify(self, repo: RepoConfig, path: str) -> TreeRule | None:
        entry = super().classify(repo, path)
        found = VERSION_FILE.match(path)
        if entry is not None and found and found["ext"] == "info" and not gm.is_canonical(found["version"]):
            return TreeRule(entry.pattern, Kind.METADATA, content_type=JSON)   # a query (`master`)
        return entry

    # ------------------------------------------------------------------ hosted: generated documents
    async def hosted_versions(self, ctx: Ctx, module: str) -> list[str]:
        """Versions stored in a hosted repository (those whose .info is recorded)."""
        prefix = f"{module}/@v/"
        versions = []
        for file in await ctx.hosted.list(prefix):
            rest = file.path[len(prefix):]
            if rest.endswith(".info") and "/" not in rest:
                versions.append(gm.unescape(rest[:-5]))
        return gm.sort_versions(versions)

    async def hosted_document(self, ctx: Ctx, path: str) -> web.StreamResponse | None:
        found = LIST.match(path)
        if found:
            versions = await self.hosted_versions(ctx, found["module"])
            if not versions:
                raise FormatError(404, f"no versions of {found['module']} in {ctx.repo.name}")
            ctx.pull.count("hosted")
            return _text_response(ctx.request, "".join(v + "\n" for v in versions).encode(), TEXT)
        found = LATEST.match(path)
        if found:
            best = gm.latest(await self.hosted_versions(ctx, found["module"]))
            stored = best and await ctx.hosted.get(f"{found['module']}/@v/{gm.escape(best)}.info")
            if not stored:
                raise FormatError(404, f"no versions of {found['module']} in {ctx.repo.name}")
            return ctx.hosted.serve(ctx.request, stored)
        return None

    # ------------------------------------------------------------------ group: merged documents
    async def member_versions(self, member: Ctx, module: str) -> tuple[list[str], str | None]:
        """A member's versions of `module` and the X-Cache of that answer."""
        if member.repo.is_hosted:
            versions = await self.hosted_versions(member, module)
            if not versions:
                raise FormatError(404, f"no versions of {module}")
            return versions, "HIT"
        path = f"{module}/@v/list"
        entry = self.classify(member.repo, path)
        assert entry is not None
        cached, body = await member.fetch_upstream(self.fetch_spec(member, path, entry))
        return [line.strip() for line in body.decode("utf-8", "replace").splitlines() if line.strip()], \
            cached.status

    async def group_document(self, ctx: Ctx, path: str) -> web.StreamResponse | None:
        found = LIST.match(path) or LATEST.match(path)
        if found is None:
            return None
        module, is_list = found["module"], path.endswith("/@v/list")
        try:
            answers = await ctx.each_member(lambda m: self.member_versions(m, module), path)
        except FormatError as exc:
            if is_list or exc.status != 404:
                raise
            answers = []
        merged = gm.sort_versions(list({v for _, (versions, _) in answers for v in versions}))
        if is_list:
            x_cache = merge_x_cache(xc for _, (_, xc) in answers)
            return _text_response(ctx.request, "".join(v + "\n" for v in merged).encode(), TEXT, x_cache)
        best = gm.latest([v for v in merged if gm.is_canonical(v)])
        if best is None:   # only the members' own @latest can name a pseudo-version
            return await ctx.first_member(lambda m: self.answer_member(m, path), path)
        info = f"{module}/@v/{gm.escape(best)}.info"
        return await ctx.first_member(lambda m: self.answer_member(m, info), path)

    # ------------------------------------------------------------------ hosted: publish and delete
    async def put_path(self, ctx: Ctx) -> web.StreamResponse:
        path = validate_path(ctx.match["path"])
        found = VERSION_FILE.match(path)
        if found is None or found["ext"] != "zip":
            raise FormatError(400, "publish a module version with PUT <module>/@v/<version>.zip")
        try:
            module, version = gm.unescape(found["module"]), gm.unescape(found["version"])
            gm.check_path(module)
            if not gm.is_canonical(version):
                raise gm.ModuleError(f"{version!r} is not a canonical semantic version (vX.Y.Z[-pre])")
            gm.check_path_major(module, version)
        except gm.ModuleError as exc:
            raise FormatError(400, str(exc)) from None
        target = ctx.deploy_target()
        staged = await target.stage(max_size=min(target.repo.max_upload, gm.MAX_ZIP_FILE))
        data = await target.hosted.read_staged(staged)
        try:
            zipped = await in_thread(gm.check_zip, data, module, version)
            go_mod = gm.check_go_mod(zipped.go_mod, module, version)
        except gm.ModuleError as exc:
            raise FormatError(400, f"invalid module zip for {module}@{version}: {exc}") from None
        base = f"{found['module']}/@v/{found['version']}"
        published = await target.record(base + ".zip", staged, content_type="application/zip", overwrite=False)
        existing = await target.hosted.get(base + ".info")
        if not published.created and existing is not None:
            return web.json_response({"module": module, "version": version, "created": False})
        await target.publish(base + ".mod", go_mod, content_type=TEXT, overwrite=False)
        if existing is None:
            await target.publish(base + ".info", _info(version, time.time()), content_type=JSON, overwrite=False)
        target.hosted.count_publish()
        return web.json_response({"module": module, "version": version, "created": True}, status=201)

    async def delete_path(self, ctx: Ctx) -> web.StreamResponse:
        path = validate_path(ctx.match["path"])
        found = VERSION_FILE.match(path)
        if found is None:
            raise FormatError(404, "delete a module version with DELETE <module>/@v/<version>.zip")
        target = ctx.deploy_target("delete")
        base = f"{found['module']}/@v/{found['version']}"
        deleted = [await target.hosted.delete(base + ext, tombstone=True) for ext in (".info", ".mod", ".zip")]
        if not any(deleted):
            raise FormatError(404, f"{base} not found in {target.repo.name}")
        return web.Response(status=204)

    # ------------------------------------------------------------------ policy and admin hooks
    def package_of(self, path: str) -> tuple[str, str] | None:
        found = VERSION_FILE.match(path)
        if found is None or SUMDB.match(path):
            return None
        try:
            return gm.unescape(found["module"]), gm.unescape(found["version"])
        except gm.ModuleError:
            return None

    def metadata_versions(self, path: str, body: bytes) -> list[VersionInfo] | None:
        """`list` (versions without times), `.info` and `@latest` (with their `Time`)."""
        if SUMDB.match(path):
            return None
        found = LIST.match(path)
        try:
            if found:
                module = gm.unescape(found["module"])
                return [VersionInfo(module, line.strip()) for line in body.decode("utf-8", "replace").splitlines()
                        if line.strip()]
            found = LATEST.match(path) or VERSION_FILE.match(path)
            if found is None or found.groupdict().get("ext", "info") != "info":
                return None
            info = json.loads(body)
            return [VersionInfo(gm.unescape(found["module"]), str(info["Version"]), parse_time(info.get("Time")))]
        except (gm.ModuleError, ValueError, KeyError, TypeError):
            return []

    def filter_metadata(self, path: str, body: bytes, hidden: frozenset[tuple[str, str]]) -> bytes:
        """`list` without the hidden versions (an `.info` or `@latest` naming a hidden version
        is refused as a whole through package_of / metadata_versions)."""
        found = LIST.match(path)
        if found is None:
            return body
        module = gm.unescape(found["module"])
        lines = [line for line in body.decode("utf-8", "replace").splitlines()
                 if line.strip() and (module, line.strip()) not in hidden]
        return "".join(line + "\n" for line in lines).encode()


FORMAT = GoProxy
