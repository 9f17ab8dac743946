"""Debian proxy: one consistent suite per Release, pool files verified against Packages.

* `InRelease`, `Release`, `Release.gpg` are metadata (revalidated after metadata_ttl), passed
  through byte for byte (the upstream's signature stays valid).
* Every other file under `dists/<suite>/` is fetched only as the Release depot serves lists it:
  by its SHA256 (the upstream's `by-hash/` URL when the Release offers it), so a Packages newer
  than the InRelease that lists it is never served; paths the Release does not list are 404s.
* `by-hash/SHA256/<hex>` files are immutable and verified against the hex in their name.
* `pool/` files are immutable and verified against the SHA256 of the Packages (or, for source
  package files, Sources) index that lists them; the filename -> sha256 map is learnt from the
  Packages and Sources files the proxy serves (and, for a file not seen yet, from the cached
  Packages and Sources of every suite the proxy has served).
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
from dataclasses import dataclass, field

from aiohttp import web

from depot.cache.api import Cached, FetchSpec, Kind

from . import debian_index as di
from . import debian_sources as ds
from .base import Ctx, FormatError

log = logging.getLogger("depot.debian")

RELEASE_NAMES = ("InRelease", "Release", "Release.gpg")
RELEASE_FILE = re.compile(r"(?P<dir>(?:dists/[^/]+/)?)(?P<name>InRelease|Release|Release\.gpg)")
SUITE_FILE = re.compile(r"(?P<dir>dists/[^/]+/)(?P<rest>.+)")
BY_HASH = re.compile(r"(?:.*/)?by-hash/(?P<algo>[A-Za-z0-9]+)/(?P<hex>[0-9a-fA-F]+)")
PACKAGES = re.compile(r"(?:.*/)?Packages(?:\.(?:gz|xz|bz2))?")
POOL_INDEX = re.compile(r"(?P<stem>(?:.*/)?(?:Packages|Sources))(?P<ext>\.(?:gz|xz|bz2))?")   # they list pool files
SUITES_DOC = ".depot/suites.json"      # suites this proxy served, so any worker can verify pool files
PREFERRED = (".xz", ".gz", "")


@dataclass
class ReleaseInfo:
    entries: dict[str, di.ReleaseEntry]
    by_hash: bool
    by_sha: dict[str, str]                      # sha256 -> name
    components: list[str]
    architectures: list[str]
    digest: str


@dataclass
class ProxyState:
    """Per process and repository: parsed Releases, learnt pool hashes, known suite dirs."""

    releases: dict[str, ReleaseInfo] = field(default_factory=dict)       # body sha256 -> parsed
    pool: dict[str, str] = field(default_factory=dict)                   # Filename -> sha256
    learning: dict[str, asyncio.Task[None]] = field(default_factory=dict)   # index key -> its parse
    suites: set[str] = field(default_factory=set)                        # "dists/x/" or ""
    indexes: dict[str, tuple[tuple[str, frozenset[str]], dict[tuple[str, str], bytes], dict[str, bytes]]] = \
        field(default_factory=dict)                         # directory -> decompressed Packages and Sources


_STATES: dict[str, ProxyState] = {}


def state_of(ctx: Ctx) -> ProxyState:
    return _STATES.setdefault(ctx.repo.name, ProxyState())


def upstream_url(ctx: Ctx, path: str) -> str:
    return (ctx.repo.upstream or "").rstrip("/") + "/" + path


async def release_of(ctx: Ctx, directory: str) -> ReleaseInfo:
    """The parsed Release (InRelease first, else Release) of `directory` ("dists/x/" or "")."""
    cached: Cached | None = None
    for name in ("InRelease", "Release"):
        spec = ctx.pull.spec(directory + name, upstream_url(ctx, directory + name), Kind.METADATA)
        try:
            cached, body = await ctx.fetch_upstream(spec)
            break
        except FormatError as exc:
            if exc.status != 404 or name == "Release":
                raise
    state = state_of(ctx)
    digest = hashlib.sha256(body).hexdigest()
    found = state.releases.get(digest)
    if found is None:
        entries, by_hash, release = await asyncio.to_thread(di.parse_release, body)
        components, architectures = di.suite_components(release)
        found = ReleaseInfo(entries, by_hash, {e.sha256: n for n, e in entries.items()},
                            components, architectures, digest)
        state.releases[digest] = found
        while len(state.releases) > 32:          # suites x a few revisions; the oldest go first
            state.releases.pop(next(iter(state.releases)))
    await remember_suite(ctx, directory)
    return found


async def remember_suite(ctx: Ctx, directory: str) -> None:
    """Record a suite directory (process memory, and once in the repository's store)."""
    state = state_of(ctx)
    if directory in state.suites:
        return
    state.suites.add(directory)

    def add(old: bytes | None) -> bytes | None:
        known = set(json.loads(old)) if old else set()
        if directory in known:
            return None
        return json.dumps(sorted(known | {directory})).encode()
    await ctx.hosted.update_document(SUITES_DOC, add, content_type="application/json")


def index_spec(ctx: Ctx, directory: str, name: str, info: ReleaseInfo) -> FetchSpec:
    """How to fetch an index the Release lists: by hash, verified, immutable."""
    entry = info.entries[name]
    if info.by_hash:
        parent = name.rpartition("/")[0]
        key = f"{directory}{parent + '/' if parent else ''}by-hash/SHA256/{entry.sha256}"
    else:
        key = f"{directory}{name}@sha256:{entry.sha256}"
    return ctx.pull.spec(key, upstream_url(ctx, key if info.by_hash else directory + name), Kind.IMMUTABLE,
                         expect_sha256=entry.sha256)


async def serve(ctx: Ctx, path: str) -> web.StreamResponse:
    """GET/HEAD of any path of a Debian proxy repository."""
    found = RELEASE_FILE.fullmatch(path)
    if found:
        key = path
        if found["name"] == "Release.gpg":   # the signature of the Release depot serves, not a newer one
            release = found["dir"] + "Release"
            _, body = await ctx.fetch_upstream(ctx.pull.spec(release, upstream_url(ctx, release), Kind.METADATA))
            key = f"{path}@{hashlib.sha256(body).hexdigest()}"
        cached = await ctx.open_upstream(ctx.pull.spec(key, upstream_url(ctx, path), Kind.METADATA))
        if found["name"] != "Release.gpg":
            await remember_suite(ctx, found["dir"])
        return ctx.pull.respond(ctx.request, cached)
    suite = SUITE_FILE.fullmatch(path)
    if suite:
        return await serve_index(ctx, suite["dir"], suite["rest"])
    if not path.startswith("pool/") and (PACKAGES.fullmatch(path) or path.startswith("by-hash/")
                                         or path.startswith(("Sources", "Translation-", "Contents-"))):
        return await serve_index(ctx, "", path)          # a flat repository's root indexes
    return await serve_pool(ctx, path)


async def serve_index(ctx: Ctx, directory: str, rest: str) -> web.StreamResponse:
    """An index file of a suite (or of a flat repository's root)."""
    by_hash = BY_HASH.fullmatch(rest)
    if by_hash and by_hash["algo"] == "SHA256":
        sha = by_hash["hex"].lower()
        spec = ctx.pull.spec(directory + rest, upstream_url(ctx, directory + rest), Kind.IMMUTABLE,
                             expect_sha256=sha)
        cached = await ctx.open_upstream(spec)
        info = await release_of(ctx, directory)
        name = info.by_sha.get(sha)
        if name and POOL_INDEX.fullmatch(name):
            learn_later(ctx, name, spec)
        return ctx.pull.respond(ctx.request, cached)
    info = await release_of(ctx, directory)
    if rest not in info.entries:
        raise FormatError(404, f"{directory}{rest} is not listed in the suite's Release")
    spec = index_spec(ctx, directory, rest, info)
    cached = await ctx.open_upstream(spec)
    if POOL_INDEX.fullmatch(rest):
        learn_later(ctx, rest, spec)
    return ctx.pull.respond(ctx.request, cached)


def learn_later(ctx: Ctx, name: str, spec: FetchSpec) -> "asyncio.Task[None]":
    """Parse a Packages or Sources index in the background (once, whoever asks) and remember its
    pool hashes."""
    state = state_of(ctx)
    task = state.learning.get(spec.key)
    if task is None:
        task = state.learning[spec.key] = asyncio.ensure_future(learn(ctx, name, spec))
    return task


async def learn(ctx: Ctx, name: str, spec: FetchSpec) -> None:
    """Read an index (its own open: the client's answer streams from another) and learn it."""
    state = state_of(ctx)
    try:
        _, body = await ctx.pull.open_read(spec)
        read = ds.source_hashes if name.rpartition("/")[2].startswith("Sources") else di.pool_hashes
        found = await asyncio.to_thread(lambda: read(di.decompress(name, body)))
        state.pool.update(found)
    except Exception as exc:     # a broken index must not break the answers that served it
        state.learning.pop(spec.key, None)          # try again next time
        log.warning("cannot read index repository=%s name=%s error=%s", ctx.repo.name, name, exc)


async def learn_all(ctx: Ctx) -> None:
    """Read the cached Packages and Sources of every suite this repository has served."""
    state = state_of(ctx)
    stored = await ctx.hosted.get(SUITES_DOC)
    directories = set(state.suites)
    if stored is not None:
        directories |= set(json.loads(await ctx.hosted.read(stored)))
    for directory in sorted(directories):
        try:
            info = await release_of(ctx, directory)
        except FormatError:
            continue
        for name in packages_indexes(info):
            await asyncio.shield(learn_later(ctx, name, index_spec(ctx, directory, name, info)))


def packages_indexes(info: ReleaseInfo) -> list[str]:
    """One Packages (and Sources) variant per directory the Release lists (the best compressed one)."""
    best: dict[str, tuple[int, str]] = {}
    for name in info.entries:
        found = POOL_INDEX.fullmatch(name)
        if found:
            stem, ext = found["stem"], found["ext"] or ""
            rank = PREFERRED.index(ext) if ext in PREFERRED else len(PREFERRED)
            if stem not in best or rank < best[stem][0]:
                best[stem] = (rank, name)
    return sorted(name for _, name in best.values())


async def serve_pool(ctx: Ctx, path: str) -> web.StreamResponse:
    """A package file, verified against the Packages index that lists it."""
    state = state_of(ctx)
    sha = state.pool.get(path)
    if sha is None:
        await learn_all(ctx)
        sha = state.pool.get(path)
    if sha is None:
        raise FormatError(404, f"{path} is not listed in any Packages or Sources index of {ctx.repo.name}")
    spec = ctx.pull.spec(path, upstream_url(ctx, path), Kind.IMMUTABLE, expect_sha256=sha)
    return ctx.pull.respond(ctx.request, await ctx.open_upstream(spec))


async def packages_of(ctx: Ctx, directory: str,
                      architectures: set[str]) -> tuple[dict[tuple[str, str], bytes], dict[str, bytes], str]:
    """A proxy member's Packages per (component, arch) and Sources per component for a group
    merge, and its Release digest."""
    info = await release_of(ctx, directory)
    state, version = state_of(ctx), (info.digest, frozenset(architectures))
    kept = state.indexes.get(directory)
    if kept is not None and kept[0] == version:
        return kept[1], kept[2], info.digest         # read and decompressed once per upstream Release
    packages: dict[tuple[str, str], bytes] = {}
    sources: dict[str, bytes] = {}
    for name in packages_indexes(info):
        parts = name.split("/")
        if len(parts) != 3 or not (parts[1] == "source" or parts[1].removeprefix("binary-") in architectures):
            continue
        cached = await ctx.open_upstream(index_spec(ctx, directory, name, info))
        text = await asyncio.to_thread(di.decompress, name, await ctx.pull.read(cached))
        if parts[1] == "source":
            sources[parts[0]] = text
        elif parts[1].startswith("binary-"):
            packages[(parts[0], parts[1].removeprefix("binary-"))] = text
    state.indexes[directory] = (version, packages, sources)
    return packages, sources, info.digest
