"""Conda channels (conda, mamba, micromamba, pixi, py-rattler).

A repository is a channel: `channeldata.json`, `<subdir>/repodata.json` (with `.zst`,
`current_repodata.json`) and the packages `<subdir>/<name>-<version>-<build>.conda|.tar.bz2`.
Proxy (default upstream conda-forge): repodata and its variants are metadata (revalidated with
ETag), streamed and stored once; the sharded, bz2 and jlap variants pass through or 404 so
clients fall back. Packages are immutable and verified against the sha256 of the repodata
that lists them. Hosted: `PUT <subdir>/<file>` (info/index.json read from the archive);
repodata and channeldata are generated from what is stored. Group: repodata merged per subdir
(first member wins per file name) without parsing big upstream documents (conda_repodata).
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any, AsyncIterator, Awaitable, Callable

from aiohttp import web

from depot.cache.api import StreamingResponse, UpstreamFailed, merge_x_cache, respond_bytes

from . import conda_repodata as cr
from .base import Ctx, FormatError, VersionInfo, standard_repositories
from .repo import RepoConfig
from .tree import TreeFormat, in_thread, rule, validate_path
from .warm_plans import Job

JSON = "application/json"
ZST = "application/zstd"
REPODATA = re.compile(r"(?P<subdir>[a-z0-9_-]+)/(?P<doc>current_repodata\.json|repodata\.json)(?P<zst>\.zst)?\Z")
UNMERGEABLE = re.compile(r"[a-z0-9_-]+/(repodata\.json\.bz2|repodata\.jlap|repodata_shards\.msgpack\.zst)\Z")
CHUNK = 1 << 20
# https://<host>/<channel…>/<subdir>/<file> in explicit specs and lock files (a #md5 or sha256 may follow)
PACKAGE_URL = re.compile(r"https?://\S+?/([a-z0-9_-]+)/([A-Za-z0-9_.+-]+-[^-/\s]+-[^-/\s]+\.(?:conda|tar\.bz2))\b")


class Conda(TreeFormat):
    """Conda channels: proxy, hosted (PUT a package), group (repodata merged per subdir)."""

    name = "conda"
    tree = (
        rule(r"channeldata\.json", "metadata", content_type=JSON),
        rule(r"[a-z0-9_-]+/(current_)?repodata\.json", "metadata", content_type=JSON),
        rule(r"[a-z0-9_-]+/repodata\.json\.zst", "metadata", content_type=ZST),
        rule(r"[a-z0-9_-]+/repodata\.json\.bz2", "metadata", content_type="application/x-bzip2"),
        rule(r"[a-z0-9_-]+/repodata\.jlap", "metadata"),
        rule(r"[a-z0-9_-]+/repodata_shards\.msgpack\.zst", "metadata", content_type=ZST),
        rule(r"[a-z0-9_-]+/shards/[0-9a-f]{64}\.msgpack\.zst", content_type=ZST),
        rule(r"[a-z0-9_-]+/[^/]+\.conda", content_type="application/octet-stream"),
        rule(r"[a-z0-9_-]+/[^/]+\.tar\.bz2", content_type="application/x-tar"),
    )

    @classmethod
    def default_upstream(cls) -> str:
        return "https://conda.anaconda.org/conda-forge"

    @classmethod
    def default_repositories(cls) -> dict[str, dict[str, Any]]:
        return standard_repositories("conda")

    @classmethod
    def warm_plan(cls, mount: str, filename: str, text: str) -> tuple[list[Any], list[str]] | None:
        """`depot warm <repo> FILE` from an explicit spec (`conda list --explicit`), a conda-lock
        or pixi.lock file: the repodata of each subdir, then every package URL it names."""
        urls = PACKAGE_URL.findall(text)
        if not urls:
            return None
        paths = list(dict.fromkeys(f"{subdir}/{fn}" for subdir, fn in urls))
        subdirs = list(dict.fromkeys(p.split("/", 1)[0] for p in paths))
        jobs = [Job(f"{mount}/{subdir}/repodata.json") for subdir in subdirs]
        return jobs + [Job(f"{mount}/{path}") for path in paths], []

    @classmethod
    def snippets(cls, repo: RepoConfig, url: str, host: str, insecure: bool) -> list[tuple[str, str]]:
        out = [("conda / mamba (~/.condarc)", f"channels:\n  - {url}\nchannel_alias: {url}\n"),
               ("pixi (pixi.toml)", f'channels = ["{url}"]'),
               ("py-rattler", f'await rattler.solve(sources=["{url}"], specs=["numpy"], '
                              'platforms=["linux-64", "noarch"])')]
        if not repo.is_proxy:
            out.append(("publish a package", f"curl -u USER:TOKEN -T pkg-1.0-0.conda {url}/noarch/pkg-1.0-0.conda"))
        return out

    def error(self, ctx: Ctx | None, status: int, message: str, code: str | None = None) -> web.Response:
        return web.json_response({"error": message, "status": status}, status=status,
                                 headers={"Cache-Control": "no-store"})

    # ------------------------------------------------------------------ proxy
    async def serve_proxy(self, ctx: Ctx, path: str) -> web.StreamResponse:
        found = cr.PACKAGE.match(path)
        if found is None:
            return await super().serve_proxy(ctx, path)
        entry = self.classify(ctx.repo, path)
        assert entry is not None
        expect = await self.listed_sha256(ctx, found["subdir"], found["fn"])
        cached = await ctx.open_upstream(self.fetch_spec(ctx, path, entry, expect_sha256=expect))
        return ctx.pull.respond(ctx.request, cached)

    async def listed_sha256(self, ctx: Ctx, subdir: str, fn: str) -> str | None:
        """The sha256 the subdir's repodata promises for `fn` (None: not listed, no repodata, or
        the package is stored already: it was verified when it was filled)."""
        if await ctx.pull.peek(f"{subdir}/{fn}") is not None:
            return None
        path = f"{subdir}/repodata.json"
        entry = self.classify(ctx.repo, path)
        assert entry is not None
        try:
            cached = await ctx.open_upstream(self.fetch_spec(ctx, path, entry))
        except FormatError as exc:
            if exc.status == 404:
                return None
            raise
        digest = cached.entry.digest if cached.entry is not None else None
        key = ("conda-sha256", ctx.repo.name, digest, fn)
        found = ctx.documents.get(key) if digest else None
        if found is None:
            # one big repodata in memory at a time per subdir, however many downloads start at once
            async with _LOOKUP_LOCKS.setdefault((ctx.repo.name, subdir), asyncio.Lock()):
                found = ctx.documents.get(key) if digest else None
                if found is None:
                    body = await ctx.pull.read(cached)
                    found = await in_thread(_listed, body, fn)
                    if digest:
                        ctx.documents.put(key, found)
        return found.decode() or None

    # ------------------------------------------------------------------ hosted
    async def hosted_records(self, ctx: Ctx, subdir: str | None) -> list[tuple[str, dict[str, Any]]]:
        """(path, repodata record) of every stored package (of one subdir, or all)."""
        files = await ctx.hosted.list(f"{subdir}/" if subdir else "")
        return [(f.path, f.meta["conda"]) for f in files if isinstance(f.meta.get("conda"), dict)]

    async def hosted_repodata(self, ctx: Ctx, subdir: str) -> bytes:
        """repodata.json of a hosted subdir (a known subdir with no packages: an empty one)."""
        records = await self.hosted_records(ctx, subdir)
        if not records and subdir not in cr.SUBDIRS:
            raise FormatError(404, f"no subdir {subdir} in {ctx.repo.name}")
        fingerprint = hashlib.sha256(json.dumps([(p, r["sha256"]) for p, r in records]).encode()).hexdigest()
        return ctx.documents.get_or_render(
            ("conda-repodata", ctx.repo.name, subdir, fingerprint),
            lambda: cr.render_repodata(subdir, [(p.rsplit("/", 1)[-1], r) for p, r in records]))

    async def hosted_document(self, ctx: Ctx, path: str) -> web.StreamResponse | None:
        if path == "channeldata.json":
            records = await self.hosted_records(ctx, None)
            body = cr.render_channeldata((p.split("/", 1)[0], r) for p, r in records)
            ctx.pull.count("hosted")
            return _json_response(ctx.request, body)
        found = REPODATA.match(path)
        if found is None:
            if self.classify(ctx.repo, path) is not None and not cr.PACKAGE.match(path):
                raise FormatError(404, f"{path} is not generated by a hosted channel (use repodata.json)")
            return None
        body = await self.hosted_repodata(ctx, found["subdir"])
        ctx.pull.count("hosted")
        if found["zst"]:
            return await self.zst_response(ctx, body)
        return _json_response(ctx.request, body)

    async def zst_response(self, ctx: Ctx, body: bytes, x_cache: str | None = None) -> web.StreamResponse:
        digest = hashlib.sha256(body).hexdigest()
        packed = ctx.documents.get(("conda-zst", digest))
        if packed is None:
            packed = await in_thread(cr.compress, body)
            ctx.documents.put(("conda-zst", digest), packed)
        headers = {"Cache-Control": "no-cache", **({"X-Cache": x_cache} if x_cache else {})}
        return respond_bytes(ctx.request, packed, ZST, headers)

    async def put_path(self, ctx: Ctx) -> web.StreamResponse:
        path = validate_path(ctx.match["path"])
        if cr.PACKAGE.match(path) is None:
            raise FormatError(400, "upload packages as PUT <subdir>/<name>-<version>-<build>.conda or .tar.bz2")
        target = ctx.deploy_target()
        staged = await target.stage()
        data = await target.hosted.read_staged(staged)
        try:
            index = await in_thread(cr.read_index, path, data)
        except cr.PackageError as exc:
            raise FormatError(400, f"invalid conda package: {exc}") from None
        md5 = await in_thread(lambda: hashlib.md5(data, usedforsecurity=False).hexdigest())
        record = cr.package_record(index, staged.digest, md5, staged.size)
        published = await target.record(path, staged, content_type="application/octet-stream",
                                        meta={"conda": record}, overwrite=False)
        target.hosted.count_publish()
        return web.json_response({"path": path, "sha256": staged.digest, "size": staged.size},
                                 status=201 if published.created else 200)

    async def delete_path(self, ctx: Ctx) -> web.StreamResponse:
        path = validate_path(ctx.match["path"])
        if cr.PACKAGE.match(path) is None:
            raise FormatError(404, "delete packages as DELETE <subdir>/<file>")
        target = ctx.deploy_target("delete")
        if not await target.hosted.delete(path, tombstone=True):
            raise FormatError(404, f"{path} not found in {target.repo.name}")
        return web.Response(status=204)

    # ------------------------------------------------------------------ group
    async def member_repodata(self, member: Ctx, subdir: str) -> "_MemberDoc":
        """A member's repodata.json for `subdir` (policy applied): its digest and X-Cache at once,
        the body when needed (a 304 or a cached merge never reads a big upstream document)."""
        if member.repo.is_hosted:
            body = await self.hosted_repodata(member, subdir)
            return _MemberDoc(hashlib.sha256(body).hexdigest(), "HIT", body)
        path = f"{subdir}/repodata.json"
        entry = self.classify(member.repo, path)
        assert entry is not None
        cached = await member.open_upstream(self.fetch_spec(member, path, entry))

        async def load() -> bytes:
            try:
                return await member.pull.read(cached)
            except UpstreamFailed as exc:
                raise FormatError(exc.status, f"upstream of {member.repo.name} failed: {exc.reason}") from None

        if cached.entry is not None and not member.pull.policy_active():
            return _MemberDoc(cached.entry.digest, cached.status, load=load)
        body = await load()
        if member.pull.policy_active():        # the supply-chain policy applies to merged answers too
            hidden = member.pull.hidden(await in_thread(self.metadata_versions, path, body) or [])
            if hidden:
                body = await in_thread(self.filter_metadata, path, body, frozenset(hidden))
        return _MemberDoc(hashlib.sha256(body).hexdigest(), cached.status, body)

    async def member_channeldata(self, member: Ctx) -> tuple[bytes, str]:
        if member.repo.is_hosted:
            records = await self.hosted_records(member, None)
            return cr.render_channeldata((p.split("/", 1)[0], r) for p, r in records), "HIT"
        entry = self.classify(member.repo, "channeldata.json")
        assert entry is not None
        cached, body = await member.fetch_upstream(self.fetch_spec(member, "channeldata.json", entry))
        return body, cached.status

    async def group_document(self, ctx: Ctx, path: str) -> web.StreamResponse | None:
        if path == "channeldata.json":
            docs = await ctx.each_member(self.member_channeldata, path)
            body = await in_thread(cr.merge_channeldata, [b for _, (b, _) in docs])
            x_cache = merge_x_cache(x for _, (_, x) in docs) or "HIT"
            return respond_bytes(ctx.request, body, JSON, {"Cache-Control": "no-cache", "X-Cache": x_cache})
        if UNMERGEABLE.match(path):
            # a member's sharded/incremental index would hide the other members' packages
            raise FormatError(404, f"{path}: a group merges repodata.json(.zst) only; clients fall back to it")
        found = REPODATA.match(path)
        if found is None:
            return None
        subdir = found["subdir"]
        answers = [doc for _, doc in await ctx.each_member(lambda m: self.member_repodata(m, subdir), path)]
        etag = hashlib.sha256(" ".join([subdir, *(doc.digest for doc in answers)]).encode()).hexdigest()
        headers = {"ETag": f'"{etag}"', "Cache-Control": "no-cache",
                   "X-Cache": merge_x_cache(doc.x_cache for doc in answers) or "HIT"}
        if headers["ETag"] in ctx.request.headers.get("If-None-Match", ""):
            return web.Response(status=304, headers=headers)
        if found["zst"]:
            key = ("conda-group-zst", etag)
            packed = ctx.documents.get(key)
            if packed is None:
                bodies = [await doc.read() for doc in answers]
                packed = await in_thread(_compress_pieces, cr.splice_repodata(subdir, bodies))
                ctx.documents.put(key, packed)
            return respond_bytes(ctx.request, packed, ZST, headers, digest=etag)
        bodies = [await doc.read() for doc in answers]
        pieces = await in_thread(cr.splice_repodata, subdir, bodies)
        return StreamingResponse(_chunks(pieces), sum(len(p) for p in pieces), {"Content-Type": JSON, **headers})

    # ------------------------------------------------------------------ policy and admin hooks
    def package_of(self, path: str) -> tuple[str, str] | None:
        found = cr.PACKAGE.match(path)
        return (found["name"], found["version"]) if found else None

    def metadata_versions(self, path: str, body: bytes) -> list[VersionInfo] | None:
        """Every record of a repodata.json with its `timestamp` (ms or s since the epoch)."""
        if not re.fullmatch(r"[a-z0-9_-]+/(current_)?repodata\.json", path):
            return None
        try:
            doc = json.loads(body)
            records = [r for section in ("packages", "packages.conda") for r in doc.get(section, {}).values()]
            return [VersionInfo(r["name"], r["version"], _seconds(r.get("timestamp"))) for r in records]
        except (ValueError, KeyError, TypeError, AttributeError):
            return []

    def filter_metadata(self, path: str, body: bytes, hidden: frozenset[tuple[str, str]]) -> bytes:
        doc = json.loads(body)
        for section in ("packages", "packages.conda"):
            entries = doc.get(section, {})
            doc[section] = {fn: r for fn, r in entries.items() if (r.get("name"), r.get("version")) not in hidden}
        return json.dumps(doc).encode()


@dataclass
class _MemberDoc:
    """A group member's repodata: known by digest first, read only when it is merged."""

    digest: str
    x_cache: str
    body: bytes | None = None
    load: Callable[[], Awaitable[bytes]] | None = None

    async def read(self) -> bytes:
        if self.body is None:
            assert self.load is not None
            self.body = await self.load()
        return self.body


_LOOKUP_LOCKS: dict[tuple[str, str], asyncio.Lock] = {}


def _listed(body: bytes, fn: str) -> bytes:
    record = cr.find_record(body, fn) or {}
    return str(record.get("sha256") or "").encode()


def _seconds(stamp: Any) -> float | None:
    if not isinstance(stamp, (int, float)) or stamp <= 0:
        return None
    return stamp / 1000 if stamp > 1e11 else float(stamp)


def _json_response(request: web.Request, body: bytes) -> web.StreamResponse:
    return respond_bytes(request, body, JSON, {"Cache-Control": "no-cache"})


async def _chunks(pieces: list[bytes | memoryview]) -> AsyncIterator[bytes | memoryview]:
    for piece in pieces:
        for at in range(0, len(piece), CHUNK):
            yield piece[at:at + CHUNK]


def _compress_pieces(pieces: list[bytes | memoryview]) -> bytes:
    import zstandard
    compressor = zstandard.ZstdCompressor(level=3).compressobj()
    out = [compressor.compress(piece) for piece in pieces]
    out.append(compressor.flush())
    return b"".join(out)


FORMAT = Conda
