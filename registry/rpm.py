"""RPM / dnf repositories (`format: rpm`): proxy, hosted .rpm uploads with signed repodata, groups.

* proxy: `baseurl=http://depot/<repo>/`. `repodata/repomd.xml` (and `.asc`, `.key`) are metadata;
  every other `repodata/` file is fetched only when the repomd.xml depot serves lists it, verified
  against its checksum (immutable); packages are verified against the checksums of primary.xml and
  refused when primary.xml does not list them.
* hosted: `PUT /<repo>/<path>.rpm`; the header is read (rpmfile) and kept with the file; repodata
  (primary, filelists, other, repomd.xml, and repomd.xml.asc signed with the repository's own key)
  is rendered from what is stored on the first read after a change — a burst of uploads costs one
  regeneration — and kept per state. `GET /<repo>/key.asc` (also `repodata/repomd.xml.key`) is the
  public key for `gpgkey=`.
* group: repodata merged over the members (first member wins a package), signed with the group's key.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from depot.cache.api import FetchSpec, Kind, Staged

from . import rpm_meta as rm
from . import signing
from .base import Ctx, FormatError, route, standard_repositories
from .rendered import Rendered
from .repo import RepoConfig
from .tree import TreeFormat, validate_path

log = logging.getLogger("depot.rpm")

RPM_TYPE = "application/x-rpm"
REPOMD = "repodata/repomd.xml"
SIGNED = {REPOMD + ".asc": "application/pgp-signature", REPOMD + ".key": "application/pgp-keys"}
HASH_FIELDS = {"sha256": "expect_sha256"}


@dataclass
class ProxyState:
    """Per process and repository: packages' checksums as the served primary.xml lists them."""

    packages: dict[str, tuple[str, str]] = field(default_factory=dict)   # href -> (algo, checksum)
    primaries: set[str] = field(default_factory=set)                     # primary hrefs parsed
    parsed: tuple[str, list[dict[str, Any]]] | None = None               # (repomd digest, packages)


class Rpm(TreeFormat):
    """dnf/yum repositories."""

    name = "rpm"
    routes = (
        route("GET HEAD", r"key\.asc", "get_key", "hosted group"),
        route("GET HEAD", r"(?P<path>.*)", "get_path"),
        route("PUT", r"(?P<path>(?!repodata/|\.depot/)[^?]+\.rpm)", "upload", "hosted group"),
        route("DELETE", r"(?P<path>(?!repodata/).+\.rpm)", "delete_path", "hosted group"),
    )

    def __init__(self) -> None:
        self._rendered = Rendered()
        self._proxy: dict[str, ProxyState] = {}

    @classmethod
    def default_repositories(cls) -> dict[str, dict[str, Any]]:
        repos = standard_repositories("rpm")
        del repos["rpm-remote"]            # no distribution's mirror is a safe default
        repos["rpm"]["members"] = ["rpm-local"]
        return repos

    @classmethod
    def snippets(cls, repo: RepoConfig, url: str, host: str, insecure: bool) -> list[tuple[str, str]]:
        text = f"[{repo.name}]\nname={repo.name}\nbaseurl={url}/\nenabled=1\ngpgcheck=0\n"
        if not repo.is_proxy:
            text += f"repo_gpgcheck=1\ngpgkey={url}/key.asc\n"
        snippets = [(f"/etc/yum.repos.d/{repo.name}.repo", text)]
        if not repo.is_proxy:
            snippets.append(("upload", "curl -fsS -u USER:TOKEN -T pkg-1.0-1.noarch.rpm "
                                       f"{url}/Packages/pkg-1.0-1.noarch.rpm"))
        return snippets

    def package_of(self, path: str) -> tuple[str, str] | None:
        if path.endswith(".rpm"):
            parts = path.rpartition("/")[2][:-4].rsplit("-", 2)
            if len(parts) == 3:
                return parts[0], parts[1]
        return None

    # ------------------------------------------------------------------ reads
    async def get_path(self, ctx: Ctx) -> web.StreamResponse:
        path = ctx.match["path"]
        if path.startswith(".depot/") or path == ".depot":
            raise FormatError(404, f"{path} not found")
        return await self.answer(ctx, validate_path(path))

    async def answer_member(self, ctx: Ctx, path: str) -> web.StreamResponse:
        if ctx.repo.is_group:
            return await self.answer(ctx, path)
        return await super().answer_member(ctx, path)

    async def get_key(self, ctx: Ctx) -> web.StreamResponse:
        return await signing.public_key_response(ctx.hosted, ctx.repo.name)

    async def hosted_document(self, ctx: Ctx, path: str) -> web.StreamResponse | None:
        if not path.startswith("repodata/"):
            return None
        return respond_document(ctx, await self.repodata(ctx, await self.hosted_packages(ctx)), path)

    async def group_document(self, ctx: Ctx, path: str) -> web.StreamResponse | None:
        if not path.startswith("repodata/"):
            return None
        found = await self.group_packages(ctx)
        before = self._rendered.has(ctx.repo.name, found[1])
        response = respond_document(ctx, await self.repodata(ctx, found), path)
        response.headers["X-Cache"] = "HIT" if before else "MISS"
        return response

    async def repodata(self, ctx: Ctx, found: tuple[list[dict[str, Any]], str]) -> dict[str, bytes]:
        """Every repodata file of one state (rendered and signed once per state and process),
        plus the checksum-named files of the repository's earlier remembered states."""
        packages, state = found

        async def render() -> dict[str, bytes]:
            repo_key = await signing.repo_key(ctx.hosted, ctx.repo.name)
            revision = max((int(p["time"]) for p in packages), default=0)
            return await signing.signed(lambda: render_signed(packages, revision, repo_key))
        files = await self._rendered.get(ctx.repo.name, state, render)
        earlier = self._rendered.earlier(ctx.repo.name, files, lambda name: name != REPOMD and name not in SIGNED)
        return {**earlier, **files}

    async def hosted_packages(self, ctx: Ctx) -> tuple[list[dict[str, Any]], str]:
        files = [f for f in await ctx.hosted.list() if f.path.endswith(".rpm") and "rpm" in f.meta]
        state = hashlib.sha256("\n".join(f"{f.path} {f.digest}" for f in files).encode()).hexdigest()
        packages = [{**f.meta["rpm"], "sha256": f.digest, "href": f.path, "size": f.size, "time": int(f.created)}
                    for f in files]
        return packages, state

    async def group_packages(self, ctx: Ctx) -> tuple[list[dict[str, Any]], str]:
        async def one(member: Ctx) -> tuple[list[dict[str, Any]], str]:
            if member.repo.is_proxy:
                return await self.proxy_packages(member)
            if member.repo.is_group:
                return await self.group_packages(member)
            return await self.hosted_packages(member)
        answers = await ctx.each_member(one, REPOMD)
        seen: set[tuple[str, str, str, str, str]] = set()
        packages = []
        for _, (found, _) in answers:
            for p in found:
                nevra = (p["name"], p["epoch"], p["version"], p["release"], p["arch"])
                if nevra not in seen:
                    seen.add(nevra)
                    packages.append(p)
        state = hashlib.sha256(" ".join(s for _, (_, s) in answers).encode()).hexdigest()
        return packages, state

    # ------------------------------------------------------------------ proxy
    def state_of(self, ctx: Ctx) -> ProxyState:
        return self._proxy.setdefault(ctx.repo.name, ProxyState())

    def url(self, ctx: Ctx, path: str) -> str:
        return (ctx.repo.upstream or "").rstrip("/") + "/" + path

    async def serve_proxy(self, ctx: Ctx, path: str) -> web.StreamResponse:
        if path == REPOMD or path in SIGNED:
            key = path
            if path == REPOMD + ".asc":     # the signature of the repomd.xml depot serves, not a newer one
                _, body = await ctx.fetch_upstream(ctx.pull.spec(REPOMD, self.url(ctx, REPOMD), Kind.METADATA))
                key = f"{path}@{hashlib.sha256(body).hexdigest()}"
            cached = await ctx.open_upstream(ctx.pull.spec(key, self.url(ctx, path), Kind.METADATA))
            return ctx.pull.respond(ctx.request, cached)
        if path.startswith("repodata/"):
            cached = await ctx.open_upstream(await self.repodata_spec(ctx, path))
            return ctx.pull.respond(ctx.request, cached)
        state = self.state_of(ctx)
        if path not in state.packages:
            await self.learn_packages(ctx)
        if path not in state.packages:
            raise FormatError(404, f"{path} is not listed in the primary.xml of {ctx.repo.name}")
        algo, checksum = state.packages[path]
        spec = ctx.pull.spec(path, self.url(ctx, path), Kind.IMMUTABLE, **checksum_fields(algo, checksum))
        return ctx.pull.respond(ctx.request, await ctx.open_upstream(spec))

    async def repomd_entries(self, ctx: Ctx) -> tuple[dict[str, dict[str, str]], str]:
        _, body = await ctx.fetch_upstream(ctx.pull.spec(REPOMD, self.url(ctx, REPOMD), Kind.METADATA))
        try:
            entries = await asyncio.to_thread(rm.repomd_entries, body)
        except Exception as exc:
            raise FormatError(502, f"upstream repomd.xml of {ctx.repo.name} is not readable: {exc}") from None
        return entries, hashlib.sha256(body).hexdigest()

    async def repodata_spec(self, ctx: Ctx, path: str) -> FetchSpec:
        entries, _ = await self.repomd_entries(ctx)
        entry = entries.get(path)
        if entry is None:
            raise FormatError(404, f"{path} is not listed in the repomd.xml of {ctx.repo.name}")
        key = path if entry["checksum"] in path else f"{path}@{entry['algo']}:{entry['checksum']}"
        return ctx.pull.spec(key, self.url(ctx, path), Kind.IMMUTABLE,
                             **checksum_fields(entry["algo"], entry["checksum"]))

    async def learn_packages(self, ctx: Ctx) -> None:
        """Learn the checksums of the packages the current primary.xml lists (once per primary)."""
        entries, _ = await self.repomd_entries(ctx)
        state = self.state_of(ctx)
        for href, entry in entries.items():
            if entry["type"] == "primary" and href not in state.primaries:
                _, body = await ctx.fetch_upstream(await self.repodata_spec(ctx, href))
                state.packages.update(await asyncio.to_thread(
                    _checksums_of, href, body))
                state.primaries.add(href)

    async def proxy_packages(self, ctx: Ctx) -> tuple[list[dict[str, Any]], str]:
        """The upstream's packages as its (cached, verified) primary.xml lists them."""
        entries, digest = await self.repomd_entries(ctx)
        state = self.state_of(ctx)
        if state.parsed is not None and state.parsed[0] == digest:
            return state.parsed[1], digest              # parsed once per upstream revision
        wanted = {e["type"]: href for href, e in entries.items()}
        if "primary" not in wanted:
            raise FormatError(502, f"upstream repomd.xml of {ctx.repo.name} lists no primary")
        bodies: dict[str, bytes] = {}
        for kind in ("primary", "filelists"):
            if kind in wanted:
                _, body = await ctx.fetch_upstream(await self.repodata_spec(ctx, wanted[kind]))
                bodies[kind] = body
        packages = await asyncio.to_thread(parse_packages, wanted, bodies)
        state.packages.update(rm.package_hrefs(packages))
        state.parsed = (digest, packages)
        return packages, digest

    # ------------------------------------------------------------------ writes
    async def upload(self, ctx: Ctx) -> web.StreamResponse:
        path = validate_path(ctx.match["path"])
        target = ctx.deploy_target()
        staged = await target.stage()
        meta = await self.read_upload(target, staged)
        published = await target.record(path, staged, content_type=RPM_TYPE, meta={"rpm": meta})
        target.hosted.count_publish()
        return web.json_response({"path": path, "name": meta["name"], "version": meta["version"],
                                  "release": meta["release"], "arch": meta["arch"],
                                  "sha256": published.file.digest}, status=201 if published.created else 200)

    @staticmethod
    async def read_upload(ctx: Ctx, staged: Staged) -> dict[str, Any]:
        data = await ctx.hosted.read_staged(staged)
        try:
            return await asyncio.to_thread(rm.read_rpm, data)
        except rm.BadRpm as exc:
            raise FormatError(400, str(exc)) from None


def checksum_fields(algo: str, checksum: str) -> dict[str, str]:
    """FetchSpec verification fields for a repodata checksum (sha256, or SRI for sha384/512)."""
    algo = algo.lower()
    if algo in ("sha256",):
        return {"expect_sha256": checksum}
    if algo in ("sha384", "sha512"):
        return {"expect_integrity": f"{algo}-" + base64.b64encode(bytes.fromhex(checksum)).decode()}
    raise FormatError(502, f"unsupported checksum type {algo} upstream")


def parse_packages(wanted: dict[str, str], bodies: dict[str, bytes]) -> list[dict[str, Any]]:
    """Packages of an upstream primary.xml (+ files from filelists.xml) (blocking)."""
    packages = list(rm.iter_primary(rm.decompress(wanted["primary"], bodies["primary"])))
    if "filelists" in bodies:
        rm.merge_filelists(packages, rm.decompress(wanted["filelists"], bodies["filelists"]))
    for p in packages:
        if p.get("base"):
            log.warning("ignoring xml:base of package href=%s base=%s", p["href"], p["base"])
    return packages


def render_signed(packages: list[dict[str, Any]], revision: int, key: signing.RepoKey) -> dict[str, bytes]:
    """repodata files plus repomd.xml.asc and repomd.xml.key (blocking)."""
    files = rm.render_repodata(packages, revision)
    files[REPOMD + ".asc"] = signing.sign(key.secret, files[REPOMD], clearsign=False)
    files[REPOMD + ".key"] = key.public.encode()
    return files


def respond_document(ctx: Ctx, files: dict[str, bytes], path: str) -> web.StreamResponse:
    body = files.get(path)
    if body is None:
        raise FormatError(404, f"{path} not found in {ctx.repo.name}")
    etag = '"' + hashlib.sha256(body).hexdigest() + '"'
    headers = {"ETag": etag, "Cache-Control": "no-cache" if path == REPOMD or path in SIGNED else
               "public, max-age=31536000, immutable"}
    if ctx.request.headers.get("If-None-Match") == etag:
        return web.Response(status=304, headers=headers)
    ctype = SIGNED.get(path) or ("text/xml" if path.endswith(".xml") else "application/gzip")
    return web.Response(body=body, content_type=ctype, headers=headers)     # HEAD: aiohttp sends no body


FORMAT = Rpm


def _checksums_of(href: str, body: bytes) -> dict[str, Any]:
    """Package checksums listed in a (compressed) primary.xml (in a worker thread)."""
    return rm.package_checksums(rm.decompress(href, body))
