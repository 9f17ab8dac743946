"""Static-tree formats: a declaration of which paths are metadata, which are immutable, and
how metadata is rewritten; the plumbing (hosted, proxy, group, upload, delete) is shared here.

A format whose repository is a tree of files (Go, Helm, CRAN, Conda, apt, dnf, Opkg, P2,
generic files) subclasses TreeFormat and declares `tree`:

    class Helm(TreeFormat):
        name = "helm"
        tree = (rule(r"index\\.yaml", "metadata", rewrite=rewrite_index),
                rule(r"[^/]+\\.tgz(\\.prov)?"))

A rule's `rewrite(body, rw)` runs once at fill time (in a worker thread) on the upstream's
body; URLs pointing at depot are written as `rw.base + "/" + path`, where rw.base is a
placeholder substituted with the URL of the repository the client asked (group or proxy)
when the answer is sent, so one stored copy serves every Host.
Hooks for what differs: `validate_upload` (parse and check a published file), `hosted_document`
(documents generated from what is stored, e.g. index.yaml), `group_document` (merged indexes).
"""
from __future__ import annotations

import asyncio
import mimetypes
import re
from dataclasses import dataclass
from typing import Any, Callable, ClassVar
from urllib.parse import quote

from aiohttp import web

from depot.cache.api import BASE_PLACEHOLDER, FetchSpec, Kind, Staged

from .base import Ctx, Format, FormatError, Route, route
from .repo import RepoConfig

PATH_SEGMENT = re.compile(r"^[A-Za-z0-9._+~@!-]+$")
MAX_PATH = 1024


@dataclass(frozen=True)
class Rewrite:
    """What a fill-time rewrite knows: the repository, its upstream and the path."""

    repo: RepoConfig
    upstream: str            # the upstream's base URL, no trailing slash
    path: str
    base: str = BASE_PLACEHOLDER   # stands for the URL of the repository the client asked


@dataclass(frozen=True)
class TreeRule:
    """How paths matching `pattern` behave in a proxy (and what content type they carry)."""

    pattern: re.Pattern[str]
    kind: Kind
    rewrite: Callable[[bytes, Rewrite], bytes] | None = None
    content_type: str | None = None


def rule(pattern: str, kind: str = "immutable", rewrite: Callable[[bytes, Rewrite], bytes] | None = None,
         content_type: str | None = None) -> TreeRule:
    """One row of a tree declaration; `pattern` must match the whole path."""
    return TreeRule(re.compile(pattern + r"\Z"), Kind(kind), rewrite, content_type)


def validate_path(path: str) -> str:
    """A safe relative path: no '..' or '.', no empty segment, conservative characters."""
    if not path or len(path.encode()) > MAX_PATH:
        raise FormatError(400, f"path must be 1 to {MAX_PATH} bytes")
    for segment in path.split("/"):
        if segment in ("", ".", "..") or not PATH_SEGMENT.match(segment):
            raise FormatError(400, f"invalid path segment {segment!r}: use [A-Za-z0-9._+~@!-], no '..'")
    return path


def content_type_for(path: str) -> str:
    """A content type guessed from the file name."""
    return mimetypes.guess_type(path)[0] or "application/octet-stream"


class TreeFormat(Format):
    """A format served as a tree of files; subclasses declare `tree` and override hooks."""

    tree: ClassVar[tuple[TreeRule, ...]] = ()
    # paths matching no rule: 404 (strict formats) or immutable files (generic trees)
    unmatched: ClassVar[str | None] = None
    routes: ClassVar[tuple[Route, ...]] = (
        route("GET HEAD", r"(?P<path>.*)", "get_path"),
        route("PUT", r"(?P<path>.+)", "put_path", "hosted group"),
        route("DELETE", r"(?P<path>.+)", "delete_path", "hosted group"),
    )

    # ------------------------------------------------------------------ hooks
    def classify(self, repo: RepoConfig, path: str) -> TreeRule | None:
        """The rule for a path (first match), or the `unmatched` default, or None (404)."""
        for entry in self.tree:
            if entry.pattern.match(path):
                return entry
        return None if self.unmatched is None else TreeRule(re.compile(".*"), Kind(self.unmatched))

    def upstream_url(self, repo: RepoConfig, path: str) -> str:
        """Where a proxy fetches `path` (default: `<upstream>/<path>`)."""
        assert repo.upstream is not None
        return repo.upstream.rstrip("/") + "/" + quote(path)

    async def validate_upload(self, ctx: Ctx, path: str, staged: Staged) -> dict[str, Any]:
        """Check a published file before it is recorded (parse it with
        `await ctx.hosted.read_staged(staged)`; FormatError 400 on bad input); returns the meta
        stored with it. The default accepts anything (generic trees)."""
        return {}

    async def after_upload(self, ctx: Ctx, path: str, meta: dict[str, Any]) -> None:
        """Called after a file was stored (e.g. regenerate an index document)."""

    async def after_delete(self, ctx: Ctx, path: str) -> None:
        """Called after a file was deleted (e.g. regenerate an index document)."""

    async def hosted_document(self, ctx: Ctx, path: str) -> web.StreamResponse | None:
        """A document a hosted repository generates from what it stores (None: not one)."""
        return None

    async def group_document(self, ctx: Ctx, path: str) -> web.StreamResponse | None:
        """A document a group merges from its members (None: first member wins)."""
        return None

    # ------------------------------------------------------------------ handlers
    async def get_path(self, ctx: Ctx) -> web.StreamResponse:
        path = validate_path(ctx.match["path"])
        return await self.answer(ctx, path)

    async def answer(self, ctx: Ctx, path: str) -> web.StreamResponse:
        """GET/HEAD of a path in any repository type."""
        if ctx.repo.is_hosted:
            return await self.serve_hosted(ctx, path)
        if ctx.repo.is_proxy:
            return await self.serve_proxy(ctx, path)
        merged = await self.group_document(ctx, path)
        if merged is not None:
            return merged
        return await ctx.first_member(lambda member: self.answer_member(member, path), path)

    async def answer_member(self, ctx: Ctx, path: str) -> web.StreamResponse:
        """A group member's answer (hosted answers carry X-Cache: HIT like the rest)."""
        if ctx.repo.is_hosted:
            return await self.serve_hosted(ctx, path, x_cache="HIT")
        return await self.serve_proxy(ctx, path)

    async def serve_hosted(self, ctx: Ctx, path: str, x_cache: str | None = None) -> web.StreamResponse:
        generated = await self.hosted_document(ctx, path)
        if generated is not None:
            if x_cache:
                generated.headers["X-Cache"] = x_cache
            return generated
        found = await ctx.hosted.get(path)
        if found is None:
            raise FormatError(404, f"{path} not found in {ctx.repo.name}")
        return ctx.hosted.serve(ctx.request, found, x_cache=x_cache)

    async def serve_proxy(self, ctx: Ctx, path: str) -> web.StreamResponse:
        entry = self.classify(ctx.repo, path)
        if entry is None:
            raise FormatError(404, f"{path} is not a {self.name} repository path")
        spec = self.fetch_spec(ctx, path, entry)
        cached = await ctx.open_upstream(spec)
        return await ctx.pull.answer(ctx.request, cached, path,
                                     base_url=ctx.base_url if entry.rewrite is not None else None)

    def fetch_spec(self, ctx: Ctx, path: str, entry: TreeRule, **fields: Any) -> FetchSpec:
        """The FetchSpec for a proxied path (formats add expect_sha256 etc. through fields)."""
        transform = None
        if entry.rewrite is not None:
            rw = Rewrite(ctx.repo, (ctx.repo.upstream or "").rstrip("/"), path)
            rewrite = entry.rewrite
            transform = lambda body: rewrite(body, rw)  # noqa: E731  (runs in a worker thread)
        return ctx.pull.spec(path, self.upstream_url(ctx.repo, path), entry.kind, transform=transform,
                             content_type=entry.content_type, **fields)

    async def put_path(self, ctx: Ctx) -> web.StreamResponse:
        path = validate_path(ctx.match["path"])
        target = ctx.deploy_target()
        expect = ctx.request.headers.get("X-Checksum-Sha256")
        if expect is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", expect):
            raise FormatError(400, "X-Checksum-Sha256 must be 64 hex digits")
        staged = await target.stage(expect_sha256=expect)         # streamed, verified, bounded
        meta = await self.validate_upload(target, path, staged)
        ctype = ctx.request.headers.get("Content-Type") or content_type_for(path)
        if ctype == "application/x-www-form-urlencoded":   # curl's default for --data-binary
            ctype = content_type_for(path)
        published = await target.record(path, staged, content_type=ctype, meta=meta)
        target.hosted.count_publish()
        await self.after_upload(target, path, meta)
        return web.json_response({"path": path, "sha256": published.file.digest, "size": published.file.size},
                                 status=201 if published.created else 200,
                                 headers={"ETag": f'"{published.file.digest}"'})

    async def delete_path(self, ctx: Ctx) -> web.StreamResponse:
        path = validate_path(ctx.match["path"])
        target = ctx.deploy_target("delete")
        if not await target.hosted.delete(path):
            raise FormatError(404, f"{path} not found in {target.repo.name}")
        await self.after_delete(target, path)
        return web.Response(status=204)


async def in_thread(fn: Callable[..., Any], *args: Any) -> Any:
    """Run blocking parsing (archives, big documents) off the event loop."""
    return await asyncio.to_thread(fn, *args)
