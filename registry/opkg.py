"""Opkg feeds (`format: opkg`, OpenWrt and Yocto): hosted signed feeds, proxy, group.

A feed is `src/gz <name> <depot>/<repo>` in opkg.conf. Paths under /<repo>/:

* `Packages`, `Packages.gz` — the index; hosted: generated from the .ipk files stored (control
  data read from each at upload); group: the members' indexes merged (first member wins a
  package/version/arch); proxy: the upstream's, revalidated.
* `Packages.sig` (usign, the signify format opkg's `check_signature` verifies with the keys in
  /etc/opkg/keys) and `Packages.asc` (OpenPGP, for `signature_type gpg`): hosted and group feeds
  are signed with the repository's keys, served at `key.pub` (usign; install it as
  /etc/opkg/keys/<keynum>) and `key.asc`.
* `<name>_<version>_<arch>.ipk` — packages, immutable; `PUT` uploads one (hosted). A proxy
  fetches only packages its upstream's index lists, verified against the SHA256sum there.
"""
from __future__ import annotations

import asyncio
import gzip
import hashlib
import re
from typing import Any

from aiohttp import web

from depot.cache.api import Cached, Conflict, Kind, Staged, respond_bytes

from . import opkg_index as oi
from . import signing
from .base import Ctx, FormatError, VersionInfo, standard_repositories
from .repo import RepoConfig
from .tree import TreeFormat, in_thread, rule, validate_path

INDEX_FILES = ("Packages", "Packages.gz", "Packages.sig", "Packages.asc")
ANCHORS = ("Packages.gz", "Packages")            # the index a proxy's signatures pair with
SIGNATURES = ("Packages.sig", "Packages.asc")
KEY_FILES = ("key.pub", "key.asc")
USIGN_PATH = ".depot/usign-key.json"
IPK = re.compile(r"(?P<name>[a-z0-9][a-z0-9+.-]*)_(?P<version>[^_/]+)_(?P<arch>[A-Za-z0-9_-]+)\.ipk")
TYPES = {"Packages": "text/plain; charset=utf-8", "Packages.gz": "application/gzip",
         "Packages.sig": "text/plain", "Packages.asc": "application/pgp-signature",
         "key.pub": "text/plain", "key.asc": "application/pgp-keys"}


class Opkg(TreeFormat):
    """Opkg feeds over the static-tree helper."""

    name = "opkg"
    tree = (rule(r"(?:.+/)?Packages(?:\.gz|\.sig|\.asc|\.manifest)?", "metadata"),
            rule(r"(?:.+/)?index\.json", "metadata", content_type="application/json"),
            rule(r"(?:.+/)?[^/]+\.ipk", content_type="application/octet-stream"))

    @classmethod
    def default_repositories(cls) -> dict[str, dict[str, Any]]:
        """Feeds are per release and architecture: no default upstream; hosted and group only."""
        repos = standard_repositories("opkg")
        del repos["opkg-remote"]
        repos["opkg"]["members"] = ["opkg-local"]
        return repos

    @classmethod
    def snippets(cls, repo: RepoConfig, url: str, host: str, insecure: bool) -> list[tuple[str, str]]:
        out = [("opkg", f"# /etc/opkg/customfeeds.conf (or opkg.conf)\nsrc/gz depot {url}\n"
                        f"# signed feed: wget -O /tmp/key.pub {url}/key.pub && opkg-key add /tmp/key.pub\n"
                        "opkg update && opkg install <package>")]
        if not repo.is_proxy:
            out.append(("upload", f"curl -u USER:TOKEN -T mypkg_1.0-1_all.ipk {url}/mypkg_1.0-1_all.ipk"))
        return out

    def package_of(self, path: str) -> tuple[str, str] | None:
        found = IPK.fullmatch(path.rsplit("/", 1)[-1])
        return (found["name"], found["version"]) if found else None

    # ------------------------------------------------------------------ reads
    async def get_path(self, ctx: Ctx) -> web.StreamResponse:
        path = ctx.match["path"]
        if path.startswith(".depot"):
            raise FormatError(404, f"{path} not found")           # the signing keys
        return await self.answer(ctx, validate_path(path))

    async def hosted_document(self, ctx: Ctx, path: str) -> web.StreamResponse | None:
        if path not in INDEX_FILES + KEY_FILES:
            return None
        return _respond(ctx, path, await self.feed(ctx, path))

    async def group_document(self, ctx: Ctx, path: str) -> web.StreamResponse | None:
        return await self.hosted_document(ctx, path)

    async def feed(self, ctx: Ctx, name: str) -> bytes:
        """A generated file of this hosted or group feed (rendered once per state)."""
        if name in KEY_FILES:
            if name == "key.pub":
                return oi.usign_public(await _usign_secret(ctx))
            return (await signing.repo_key(ctx.hosted, ctx.repo.name)).public.encode()
        packages, state = await self.packages(ctx)
        key = ("opkg", ctx.repo.name, state, name)
        found = ctx.documents.get(key)
        if found is None:
            files = await self._render(ctx, packages)
            for file, body in files.items():
                ctx.documents.put(("opkg", ctx.repo.name, state, file), body)
            found = files[name]
        return found

    async def _render(self, ctx: Ctx, packages: bytes) -> dict[str, bytes]:
        usign = await _usign_secret(ctx)
        pgp = await signing.repo_key(ctx.hosted, ctx.repo.name)
        sig = await in_thread(oi.usign_sign, usign, packages)
        asc = await signing.signed(lambda: signing.sign(pgp.secret, packages, clearsign=False))
        return {"Packages": packages, "Packages.gz": await in_thread(oi.gz, packages),
                "Packages.sig": sig, "Packages.asc": asc}

    async def packages(self, ctx: Ctx) -> tuple[bytes, str]:
        """(Packages text, state digest) of a hosted, proxy or group repository."""
        if ctx.repo.is_hosted:
            files = sorted((f for f in await ctx.hosted.list() if IPK.fullmatch(f.path) and "stanza" in f.meta),
                           key=lambda f: f.path)
            state = oi.digest(f"{f.path} {f.digest}" for f in files)
            return oi.packages_text(f.meta["stanza"] for f in files), state
        if ctx.repo.is_proxy:
            body = await self._policy_filtered(ctx, await self._upstream_index(ctx, ""))
            return body, hashlib.sha256(body).hexdigest()
        answers = await ctx.each_member(self.packages, "Packages")
        state = oi.digest(s for _, (_, s) in answers)
        return await in_thread(oi.merge, [body for _, (body, _) in answers]), state

    async def _upstream_index(self, ctx: Ctx, directory: str) -> bytes:
        """The upstream's Packages of `directory` (from Packages.gz, else Packages)."""
        try:
            _, body = await ctx.fetch_upstream(self.fetch_spec(ctx, directory + "Packages.gz", self.tree[0]))
            try:
                return await in_thread(gzip.decompress, body)
            except (OSError, EOFError) as exc:
                raise FormatError(502, f"upstream Packages.gz of {ctx.repo.name} is not gzip: {exc}") from None
        except FormatError as exc:
            if exc.status != 404:
                raise
        _, body = await ctx.fetch_upstream(self.fetch_spec(ctx, directory + "Packages", self.tree[0]))
        return body

    async def serve_proxy(self, ctx: Ctx, path: str) -> web.StreamResponse:
        directory, _, filename = path.rpartition("/")
        if filename in INDEX_FILES + KEY_FILES and ctx.pull.policy_active():
            return await self._resigned(ctx, directory + "/" if directory else "", filename)
        if filename in INDEX_FILES:
            return await self._proxy_index(ctx, directory + "/" if directory else "", filename)
        entry = self.classify(ctx.repo, path)
        if entry is None or not path.endswith(".ipk") or await ctx.pull.peek(path) is not None:
            return await super().serve_proxy(ctx, path)
        directory, _, filename = path.rpartition("/")
        index = await self._upstream_index(ctx, directory + "/" if directory else "")
        expected = oi.sha256_of(index, filename)
        if expected is None:
            raise FormatError(404, f"{path} is not in the upstream feed of {ctx.repo.name}")
        spec = self.fetch_spec(ctx, path, entry, expect_sha256=expected)
        return ctx.pull.respond(ctx.request, await ctx.open_upstream(spec))

    # ------------------------------------------------------------------ proxy: index and signature pairs
    async def _proxy_index(self, ctx: Ctx, prefix: str, filename: str) -> web.StreamResponse:
        """The upstream's index and its signatures as one consistent pair. The index (Packages.gz,
        else Packages: the anchor) is revalidated only when a client asks for the index, which is
        what `opkg update` does first; each signature is stored per anchor digest, fetched in that
        same request, so the .sig a client gets next signs the very Packages it got, whatever the
        upstream published in between (a racy pair heals at the next revalidation of the index)."""
        if filename in SIGNATURES:
            anchor = await self._stored_anchor(ctx, prefix)
            if anchor is None:
                cached, anchor_name = await self._open_anchor(ctx, prefix)
                anchor = ((await self._digest(ctx, cached))[0], anchor_name)
            sig, status = await self._signature(ctx, prefix, filename, anchor[0], refresh=False)
            return respond_bytes(ctx.request, sig, TYPES[filename],
                                 {"X-Cache": status, "Cache-Control": "no-cache"})
        cached, anchor_name = await self._open_anchor(ctx, prefix)
        digest, body = await self._digest(ctx, cached)
        for signature in SIGNATURES:        # fetched with the index (a feed may have only one of them)
            try:
                await self._signature(ctx, prefix, signature, digest, refresh=True)
            except FormatError:
                pass                            # the index is still good; a signature request retries
        if filename == anchor_name:
            if body is None:
                return ctx.pull.respond(ctx.request, cached)
            return respond_bytes(ctx.request, body, TYPES[filename], {"X-Cache": cached.status})
        if filename == "Packages.gz":
            raise FormatError(404, f"the upstream feed of {ctx.repo.name} has no {prefix}Packages.gz")
        plain = await in_thread(gzip.decompress, body if body is not None else await ctx.pull.read(cached))
        return respond_bytes(ctx.request, plain, TYPES["Packages"], {"X-Cache": cached.status})

    async def _policy_filtered(self, ctx: Ctx, packages: bytes) -> bytes:
        """The upstream's Packages without the versions the supply-chain policy hides (deny and
        allow rules: opkg feeds carry no publish times)."""
        if not ctx.pull.policy_active():
            return packages
        offered = await in_thread(oi.offered, packages)
        hidden = ctx.pull.hidden(VersionInfo(name, version) for name, version in offered)
        return await in_thread(oi.without, packages, frozenset(hidden)) if hidden else packages

    async def _resigned(self, ctx: Ctx, prefix: str, filename: str) -> web.StreamResponse:
        """A proxy under a supply-chain policy: the upstream's index filtered, and so signed with
        this repository's own keys (`key.pub`, `key.asc`) like a hosted feed."""
        if filename in KEY_FILES:
            return _respond(ctx, filename, await self.feed(ctx, filename))
        packages = await self._policy_filtered(ctx, await self._upstream_index(ctx, prefix))
        state = hashlib.sha256(packages).hexdigest()
        found = ctx.documents.get(("opkg", ctx.repo.name, state, filename))
        if found is None:
            files = await self._render(ctx, packages)
            for file, body in files.items():
                ctx.documents.put(("opkg", ctx.repo.name, state, file), body)
            found = files[filename]
        return _respond(ctx, filename, found)

    async def _open_anchor(self, ctx: Ctx, prefix: str) -> tuple[Cached, str]:
        """The upstream's Packages.gz (else Packages), revalidated when due."""
        for name in ANCHORS:
            try:
                return await ctx.open_upstream(self.fetch_spec(ctx, prefix + name, self.tree[0])), name
            except FormatError as exc:
                if exc.status != 404 or name == ANCHORS[-1]:
                    raise
        raise AssertionError("unreachable")    # pragma: no cover

    async def _stored_anchor(self, ctx: Ctx, prefix: str) -> tuple[str, str] | None:
        """(digest, name) of the index as stored now, without asking the upstream."""
        for name in ANCHORS:
            entry = await ctx.pull.peek(prefix + name)
            if entry is not None:
                return entry.digest, name
        return None

    async def _digest(self, ctx: Ctx, cached: Cached) -> tuple[str, bytes | None]:
        """The anchor's digest, and its body when reading it was needed (a first fill still
        streaming in: it can be followed once, so the answer is made from these bytes)."""
        if cached.entry is not None:
            return cached.entry.digest, None
        body = await ctx.pull.read(cached)
        return hashlib.sha256(body).hexdigest(), body

    async def _signature(self, ctx: Ctx, prefix: str, filename: str, anchor: str, refresh: bool) -> tuple[bytes, str]:
        """The upstream's `filename` stored for the index of digest `anchor`: (bytes, X-Cache).
        `refresh`: revalidate it when due (with the index); else the stored one as it is."""
        key = f"{prefix}{filename}@{anchor}"
        if not refresh and (entry := await ctx.pull.peek(key)) is not None:
            try:
                return await ctx.pull.read(Cached("HIT", ctx.repo, entry)), "HIT"
            except OSError:
                pass                            # its blob was evicted: fetch it again
        url = self.upstream_url(ctx.repo, prefix + filename)
        cached = await ctx.open_upstream(ctx.pull.spec(key, url, Kind.METADATA, content_type=TYPES[filename]))
        return await ctx.pull.read(cached), cached.status

    # ------------------------------------------------------------------ uploads
    async def put_path(self, ctx: Ctx) -> web.StreamResponse:
        path = ctx.match["path"]
        if not IPK.fullmatch(path):
            raise FormatError(400, "only <package>_<version>_<arch>.ipk files can be uploaded to a feed")
        return await super().put_path(ctx)

    async def delete_path(self, ctx: Ctx) -> web.StreamResponse:
        if not IPK.fullmatch(ctx.match["path"]):
            raise FormatError(405, "the feed index is generated; delete .ipk files instead")
        return await super().delete_path(ctx)

    async def validate_upload(self, ctx: Ctx, path: str, staged: Staged) -> dict[str, Any]:
        data = await ctx.hosted.read_staged(staged)
        try:
            info = await in_thread(oi.read_ipk, data)
        except oi.BadPackage as exc:
            raise FormatError(400, str(exc)) from None
        if oi.filename_of(info) != path:
            raise FormatError(400, f"the package is {oi.filename_of(info)}, not {path}")
        return {"stanza": oi.stanza(info.control, path, staged.size, staged.digest)}


def _respond(ctx: Ctx, name: str, body: bytes) -> web.Response:
    etag = '"' + hashlib.sha256(body).hexdigest() + '"'
    headers = {"Cache-Control": "no-cache", "ETag": etag}
    if ctx.request.headers.get("If-None-Match") == etag:
        return web.Response(status=304, headers=headers)
    return web.Response(body=body, headers={**headers, "Content-Type": TYPES[name]})


async def _usign_secret(ctx: Ctx) -> bytes:
    """The repository's usign key, generated at first use (concurrent first uses agree)."""
    found = await ctx.hosted.get(USIGN_PATH)
    if found is None:
        try:
            await ctx.hosted.publish(USIGN_PATH, await asyncio.to_thread(oi.new_usign_key),
                                     content_type="application/json", overwrite=False)
        except Conflict:
            pass
        found = await ctx.hosted.get(USIGN_PATH)
        assert found is not None
    return await ctx.hosted.read(found)


FORMAT = Opkg
