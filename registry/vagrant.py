"""Vagrant boxes (`format: vagrant`): box catalogs and box files.

Paths, relative to `/<repo>/` (`VAGRANT_SERVER_URL=<depot>/<repo>` makes `vagrant box add org/box`
ask `GET <repo>/org/box`):

* `GET <org>/<box>` (or `<org>/<box>.json`) — the catalog: versions → providers → url, checksum,
  checksum_type. Hosted: generated from the boxes stored; proxy: the upstream's catalog (metadata,
  kept as it came) with every box URL pointing at depot when served; group: merged.
* `GET <org>/<box>/<version>/<provider>.box` — the box, immutable (Range, HEAD, resumable). A proxy
  fetches only the URL the upstream's catalog names for that version and provider, streamed to
  every waiting client while it downloads (one upstream fetch), verified against the catalog's
  checksum when it is a sha256 or sha512.
* `PUT <org>/<box>/<version>/<provider>.box` — upload a box (hosted; a group forwards to
  `deploy_to`): a tar or tar.gz whose `metadata.json` is checked; its sha256 is recorded.
  `DELETE` the same path removes it.
"""
from __future__ import annotations

import base64
import gzip
import io
import json
import re
import tarfile
import zlib
from typing import Any, AsyncIterator

from aiohttp import web

from depot.cache.api import Kind, merge_x_cache

from .base import Ctx, Format, FormatError, route, standard_repositories
from .json_answer import json_answer
from .repo import RepoConfig
from .terraform_modules import version_key
from .tree import in_thread

N = r"[A-Za-z0-9][A-Za-z0-9._-]*"
VERSION = r"[0-9][0-9A-Za-z.+-]*"
BOX = rf"(?P<org>{N})/(?P<box>{N})/(?P<version>{VERSION})/(?P<provider>{N})\.box"
JSON_TYPE = "application/json"
BOX_TYPE = "application/octet-stream"
PREFIX_BYTES = 64 * 2**20            # of an upload read to find metadata.json (boxes are multi-GB)
CHECKSUMS = {"sha256": 64, "sha512": 128}


def box_metadata(prefix: bytes, complete: bool) -> dict[str, Any] | None:
    """metadata.json of a box from the first bytes of the upload (blocking: run in a thread).
    None when the archive is bigger than the prefix and metadata.json comes later; ValueError
    for what is not a box."""
    raw = prefix
    if prefix[:2] == b"\x1f\x8b":
        try:
            raw = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(prefix, 4 * PREFIX_BYTES)
        except zlib.error as exc:
            raise ValueError(f"not a valid gzip stream: {exc}") from None
    try:
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
            for member in tar:
                if member.name.lstrip("./") == "metadata.json":
                    handle = tar.extractfile(member)
                    return _check_metadata(handle.read() if handle else b"")
    except (tarfile.TarError, EOFError, OSError, gzip.BadGzipFile) as exc:
        if complete or not raw:
            raise ValueError(f"not a box (a tar or tar.gz archive): {exc}") from None
        return None
    if complete:
        raise ValueError("the box has no metadata.json")
    return None


def _check_metadata(body: bytes) -> dict[str, Any]:
    try:
        meta = json.loads(body)
    except ValueError as exc:
        raise ValueError(f"metadata.json is not JSON: {exc}") from None
    if not isinstance(meta, dict):
        raise ValueError("metadata.json is not an object")
    return meta


def rewrite_catalog(catalog: dict[str, Any], base: str, org: str, box: str) -> dict[str, Any]:
    """The catalog with every provider's url at depot (checksums kept)."""
    out = {**catalog, "versions": []}
    for version in catalog.get("versions") or []:
        providers = []
        for provider in version.get("providers") or []:
            if re.fullmatch(N, str(provider.get("name", ""))) and re.fullmatch(VERSION, str(version.get("version"))):
                providers.append({**provider, "url": f"{base}/{org}/{box}/{version['version']}/{provider['name']}.box"})
        out["versions"].append({**version, "providers": providers})
    return out


def parse_catalog(body: bytes) -> dict[str, Any]:
    try:
        catalog = json.loads(body)
    except ValueError:
        raise FormatError(502, "the upstream's box catalog is not JSON") from None
    if not isinstance(catalog, dict) or not isinstance(catalog.get("versions", []), list):
        raise FormatError(502, "the upstream's box catalog has no versions list")
    return catalog


def verification(provider: dict[str, Any]) -> dict[str, str]:
    """expect_sha256 / expect_integrity fields for a catalog entry's checksum (when usable)."""
    kind = str(provider.get("checksum_type") or "").lower()
    value = str(provider.get("checksum") or "").lower()
    if kind not in CHECKSUMS or not re.fullmatch(rf"[0-9a-f]{{{CHECKSUMS[kind]}}}", value):
        return {}
    if kind == "sha256":
        return {"expect_sha256": value}
    return {"expect_integrity": "sha512-" + base64.b64encode(bytes.fromhex(value)).decode()}


async def _teed(source: AsyncIterator[bytes], keep: bytearray, limit: int) -> AsyncIterator[bytes]:
    """The chunks of `source`, keeping its first `limit` bytes in `keep`."""
    async for chunk in source:
        if len(keep) < limit:
            keep.extend(chunk[:limit - len(keep)])
        yield chunk


class Vagrant(Format):
    """Box catalogs and boxes: hosted, proxy and group."""

    name = "vagrant"
    routes = (
        route("GET HEAD", BOX, "box_file"),
        route("PUT", BOX, "box_upload", "hosted group"),
        route("DELETE", BOX, "box_delete", "hosted group"),
        route("GET HEAD", rf"(?P<org>{N})/(?P<box>{N}?)(?:\.json)?", "catalog"),
    )

    @classmethod
    def default_repositories(cls) -> dict[str, dict[str, Any]]:
        return standard_repositories("vagrant")

    @classmethod
    def default_upstream(cls) -> str | None:
        return "https://vagrantcloud.com"

    @classmethod
    def snippets(cls, repo: RepoConfig, url: str, host: str, insecure: bool) -> list[tuple[str, str]]:
        out = [("vagrant", f"export VAGRANT_SERVER_URL={url}\nvagrant box add <org>/<box>")]
        if not repo.is_proxy:
            out.append(("upload a box", f"curl -u USER:TOKEN -T my.box {url}/<org>/<box>/<version>/<provider>.box"))
        return out

    def challenge(self, base_url: str) -> str:
        return 'Bearer realm="depot"'

    def error(self, ctx: Ctx | None, status: int, message: str, code: str | None = None) -> web.Response:
        """Vagrant Cloud's shape: {"errors": [...], "success": false}."""
        return web.json_response({"errors": [message], "success": False}, status=status,
                                 headers={"Cache-Control": "no-store"})

    def package_of(self, path: str) -> tuple[str, str] | None:
        parts = path.split("/")
        return ("/".join(parts[1:3]), parts[3]) if parts[0] == "boxes" and len(parts) == 5 else None

    # ------------------------------------------------------------------ catalog
    async def catalog(self, ctx: Ctx) -> web.StreamResponse:
        catalog, x_cache = await self._catalog(ctx)
        return json_answer(ctx.request, catalog, {"X-Cache": x_cache})

    async def _catalog(self, ctx: Ctx) -> tuple[dict[str, Any], str]:
        org, box = ctx.match["org"], ctx.match["box"]
        if ctx.repo.is_hosted:
            return await self._hosted_catalog(ctx, org, box), "HIT"
        if ctx.repo.is_proxy:
            cached, body = await self._upstream_catalog(ctx)
            key = ("vagrant-catalog", cached.entry.digest if cached.entry else None, ctx.base_url, org, box)
            found = ctx.documents.get(key) if key[1] else None
            if found is None:
                found = json.dumps(rewrite_catalog(parse_catalog(body), ctx.base_url, org, box)).encode()
                if key[1]:
                    ctx.documents.put(key, found)
            return json.loads(found), cached.status
        answers = await ctx.each_member(self._catalog, f"box {org}/{box}")
        merged: dict[str, Any] = {"name": f"{org}/{box}", "versions": []}
        index: dict[str, dict[str, Any]] = {}
        for _, (catalog, _) in answers:
            merged.setdefault("description", catalog.get("description"))
            for version in catalog.get("versions") or []:
                have = index.get(version.get("version"))
                if have is None:
                    index[version.get("version")] = {**version, "providers": list(version.get("providers") or [])}
                    merged["versions"].append(index[version.get("version")])
                else:
                    names = {p.get("name") for p in have["providers"]}
                    have["providers"] += [p for p in version.get("providers") or [] if p.get("name") not in names]
        return merged, merge_x_cache(s for _, (_, s) in answers) or "HIT"

    async def _hosted_catalog(self, ctx: Ctx, org: str, box: str) -> dict[str, Any]:
        files = await ctx.hosted.list(f"boxes/{org}/{box}/")
        versions: dict[str, list[dict[str, Any]]] = {}
        for f in files:
            _, _, _, version, name = f.path.split("/")
            provider = name.removesuffix(".box")
            versions.setdefault(version, []).append({
                "name": provider, "url": f"{ctx.base_url}/{org}/{box}/{version}/{provider}.box",
                "checksum_type": "sha256", "checksum": f.digest})
        if not versions:
            raise FormatError(404, f"box {org}/{box} not found")
        return {"name": f"{org}/{box}", "description": "",
                "versions": [{"version": v, "status": "active", "providers": versions[v]}
                             for v in sorted(versions, key=version_key, reverse=True)]}

    async def _upstream_catalog(self, ctx: Ctx) -> tuple[Any, bytes]:
        org, box = ctx.match["org"], ctx.match["box"]
        url = f"{(ctx.repo.upstream or '').rstrip('/')}/{org}/{box}"
        spec = ctx.pull.spec(f"catalogs/{org}/{box}", url, Kind.METADATA, content_type=JSON_TYPE,
                             request_headers={"Accept": JSON_TYPE})
        return await ctx.fetch_upstream(spec)

    # ------------------------------------------------------------------ boxes
    def box_path(self, ctx: Ctx) -> str:
        m = ctx.match
        return f"boxes/{m['org']}/{m['box']}/{m['version']}/{m['provider']}.box"

    async def box_file(self, ctx: Ctx) -> web.StreamResponse:
        if ctx.repo.is_group:
            return await ctx.first_member(self.box_file, "box")
        path = self.box_path(ctx)
        if ctx.repo.is_hosted:
            found = await ctx.hosted.get(path)
            if found is None:
                raise FormatError(404, f"{path[6:]} not found")
            return ctx.hosted.serve(ctx.request, found)
        if await ctx.pull.peek(path) is not None:
            return ctx.pull.respond(ctx.request, await ctx.open_upstream(ctx.pull.spec(path, None, Kind.IMMUTABLE)))
        _, body = await self._upstream_catalog(ctx)
        provider = self._find(parse_catalog(body), ctx.match["version"], ctx.match["provider"])
        spec = ctx.pull.spec(path, str(provider["url"]), Kind.IMMUTABLE, content_type=BOX_TYPE,
                             **verification(provider))
        return ctx.pull.respond(ctx.request, await ctx.open_upstream(spec))

    @staticmethod
    def _find(catalog: dict[str, Any], version: str, name: str) -> dict[str, Any]:
        for entry in catalog.get("versions") or []:
            if str(entry.get("version")) == version:
                for provider in entry.get("providers") or []:
                    if provider.get("name") == name and isinstance(provider.get("url"), str) \
                            and provider["url"].startswith(("http://", "https://")):
                        return provider
        raise FormatError(404, f"the upstream catalog has no {name} box for version {version}")

    async def box_upload(self, ctx: Ctx) -> web.StreamResponse:
        target = ctx.deploy_target()
        path = self.box_path(ctx)
        prefix = bytearray()
        staged = await target.stage(_teed(target.body(), prefix, PREFIX_BYTES))
        try:
            meta = await in_thread(box_metadata, bytes(prefix), staged.size <= PREFIX_BYTES)
        except ValueError as exc:
            raise FormatError(400, str(exc)) from None
        if meta is not None and meta.get("provider") not in (None, ctx.match["provider"]):
            raise FormatError(400, f"metadata.json says provider {meta.get('provider')!r}, "
                                   f"the upload is for {ctx.match['provider']!r}")
        published = await target.record(path, staged, content_type=BOX_TYPE, overwrite=None,
                                        meta={"box": meta or {}})
        target.hosted.count_publish()
        return web.json_response({"path": path[6:], "checksum_type": "sha256", "checksum": published.file.digest},
                                 status=201 if published.created else 200)

    async def box_delete(self, ctx: Ctx) -> web.StreamResponse:
        target = ctx.deploy_target("delete")
        if not await target.hosted.delete(self.box_path(ctx), tombstone=not target.repo.allow_overwrite):
            raise FormatError(404, f"{self.box_path(ctx)[6:]} not found")
        return web.Response(status=204)


FORMAT = Vagrant
