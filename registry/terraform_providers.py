"""Terraform provider registry protocol (providers.v1) and the provider network mirror protocol.

Hosted: release zips are PUT at
`v1/providers/<ns>/<type>/<version>/terraform-provider-<type>_<version>_<os>_<arch>.zip`,
then `…_SHA256SUMS` (every line must name a zip already stored, with its digest); the version is
visible from then on, and depot signs SHA256SUMS with the repository's own key
(terraform_signing) so that `terraform init` verifies it. Proxy: the upstream registry's
`versions` (metadata) and `download/<os>/<arch>` answers (immutable, stored as they came and
rewritten when served, signatures and signing keys kept) and the files they name, fetched once,
zips verified against the promised sha256. The network mirror (`<hostname>/<ns>/<type>/index.json`
and `<version>.json`, zh: hashes) is answered by a proxy from the same documents.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import re
import zipfile
from typing import Any
from urllib.parse import urljoin, urlsplit

from aiohttp import web

from depot.cache.api import Cached, Kind, merge_x_cache

from . import terraform_signing as signing
from .base import Ctx, FormatError
from .json_answer import json_answer
from .terraform_modules import version_key
from .tree import in_thread

ZIP_TYPE = "application/zip"
DEFAULT_PROTOCOLS = ("5.0",)
SUMS_LINE = re.compile(r"^([0-9a-f]{64}) [ *](\S+)$")


def zip_h1(archive: zipfile.ZipFile) -> str:
    """Terraform's `h1:` hash of a package zip (Go's dirhash.HashZip with Hash1): sha256 over the
    lines `<sha256 hex>  <name>\n` of every entry, in the order of their names, base64."""
    lines = [f"{hashlib.sha256(archive.read(info)).hexdigest()}  {info.filename}\n"
             for info in sorted(archive.infolist(), key=lambda i: i.filename)]
    return "h1:" + base64.b64encode(hashlib.sha256("".join(lines).encode()).digest()).decode()


def package_h1(data: bytes) -> str:
    """The h1: hash of a provider zip (blocking: run in a thread); ValueError when not a zip."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return zip_h1(archive)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise ValueError(f"not a valid zip archive: {exc}") from None


def provider_zip_check(data: bytes, ptype: str) -> str:
    """The h1: hash of a provider release zip that holds a `terraform-provider-<type>`
    executable (blocking: run in a thread); ValueError otherwise."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = [i.filename for i in archive.infolist() if not i.is_dir()]
            if not any(n.rsplit("/", 1)[-1].startswith(f"terraform-provider-{ptype}") for n in names):
                raise ValueError(f"the zip holds no terraform-provider-{ptype} executable")
            if any(n.startswith("/") or ".." in n.split("/") for n in names):
                raise ValueError("unsafe path in the zip")
            return zip_h1(archive)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise ValueError(f"not a valid zip archive: {exc}") from None


def parse_sums(text: bytes) -> dict[str, str]:
    """file name -> sha256 of a SHA256SUMS document; ValueError when malformed."""
    out: dict[str, str] = {}
    for line in text.decode("utf-8", "replace").splitlines():
        if not line.strip():
            continue
        found = SUMS_LINE.match(line.strip())
        if not found:
            raise ValueError(f"SHA256SUMS line is not '<sha256>  <file>': {line[:80]!r}")
        out[found.group(2)] = found.group(1)
    if not out:
        raise ValueError("SHA256SUMS is empty")
    return out


class ProviderRegistry:
    """Handlers of the provider registry and network mirror protocols (mixed into Terraform)."""

    async def api_base(self, ctx: Ctx, service: str) -> str:      # provided by the Terraform format
        raise NotImplementedError

    def provider_prefix(self, ctx: Ctx) -> str:
        return f"providers/{ctx.match['ns']}/{ctx.match['type']}"

    def provider_urls(self, ctx: Ctx, version: str, os_: str, arch: str, filename: str) -> dict[str, str]:
        base = f"{ctx.base_url}/v1/providers/{ctx.match['ns']}/{ctx.match['type']}/{version}"
        return {"download_url": f"{base}/download/{os_}/{arch}/{filename}",
                "shasums_url": f"{base}/SHA256SUMS", "shasums_signature_url": f"{base}/SHA256SUMS.sig"}

    # ------------------------------------------------------------------ versions
    async def provider_versions(self, ctx: Ctx) -> web.StreamResponse:
        versions, x_cache = await self._provider_versions(ctx)
        ordered = [versions[v] for v in sorted(versions, key=version_key, reverse=True)]
        return json_answer(ctx.request, {"versions": ordered}, {"X-Cache": x_cache})

    async def _provider_versions(self, ctx: Ctx) -> tuple[dict[str, dict[str, Any]], str]:
        """version -> {"version", "protocols", "platforms"} of any repository type."""
        if ctx.repo.is_hosted:
            out = {}
            for f in await ctx.hosted.list(self.provider_prefix(ctx) + "/"):
                if f.path.endswith("_SHA256SUMS"):
                    meta = f.meta
                    out[meta["version"]] = {"version": meta["version"], "protocols": meta["protocols"],
                                            "platforms": [{"os": o, "arch": a} for o, a in meta["platforms"]]}
            if not out:
                raise FormatError(404, f"provider {self.provider_prefix(ctx)[10:]} not found")
            return out, "HIT"
        if ctx.repo.is_proxy:
            cached, doc = await self._upstream_json(ctx, self.provider_prefix(ctx) + "/versions", Kind.METADATA)
            try:
                return {v["version"]: v for v in doc["versions"]}, cached.status
            except (KeyError, TypeError):
                raise FormatError(502, "the upstream's provider versions are not usable") from None
        answers = await ctx.each_member(self._provider_versions, "provider versions")
        merged: dict[str, dict[str, Any]] = {}
        for _, (versions, _) in answers:
            for version, item in versions.items():
                merged.setdefault(version, item)
        return merged, merge_x_cache(s for _, (_, s) in answers) or "HIT"

    async def _upstream_json(self, ctx: Ctx, key: str, kind: Kind) -> tuple[Any, Any]:
        base = await self.api_base(ctx, "providers.v1")
        cached, body = await ctx.fetch_upstream(ctx.pull.spec(key, base + key[10:], kind))
        try:
            return cached, json.loads(body)
        except ValueError:
            raise FormatError(502, f"the upstream's {key[10:]} is not JSON") from None

    # ------------------------------------------------------------------ download answer
    async def provider_download(self, ctx: Ctx) -> web.StreamResponse:
        if ctx.repo.is_group:
            return await ctx.first_member(self.provider_download, "provider version")
        m = ctx.match
        if ctx.repo.is_hosted:
            doc = await self._hosted_download(ctx, m["version"], m["os"], m["arch"])
            return json_answer(ctx.request, doc, {"X-Cache": "HIT"})
        cached, doc, _ = await self._upstream_download(ctx, m["version"], m["os"], m["arch"])
        doc = {**doc, **self.provider_urls(ctx, m["version"], m["os"], m["arch"], doc["filename"])}
        return json_answer(ctx.request, doc, {"X-Cache": cached.status})

    async def _hosted_download(self, ctx: Ctx, version: str, os_: str, arch: str) -> dict[str, Any]:
        ptype = ctx.match["type"]
        prefix = f"{self.provider_prefix(ctx)}/{version}"
        sums = await ctx.hosted.get(f"{prefix}/terraform-provider-{ptype}_{version}_SHA256SUMS")
        filename = f"terraform-provider-{ptype}_{version}_{os_}_{arch}.zip"
        archive = await ctx.hosted.get(f"{prefix}/{filename}")
        if sums is None or archive is None or filename not in sums.meta.get("files", {}):
            raise FormatError(404, f"provider {prefix[10:]} has no {os_}_{arch} package")
        key = await signing.signing_key(ctx)
        return {"protocols": sums.meta["protocols"], "os": os_, "arch": arch, "filename": filename,
                **self.provider_urls(ctx, version, os_, arch, filename), "shasum": archive.digest,
                "signing_keys": {"gpg_public_keys": [{"key_id": key.key_id, "ascii_armor": key.public_armor,
                                                      "trust_signature": "", "source": "depot",
                                                      "source_url": None}]}}

    async def _upstream_download(self, ctx: Ctx, version: str, os_: str, arch: str) -> tuple[Any, dict[str, Any], str]:
        """The upstream's download answer as it came (cached, doc, its URL)."""
        key = f"{self.provider_prefix(ctx)}/{version}/download/{os_}/{arch}"
        cached, doc = await self._upstream_json(ctx, key, Kind.IMMUTABLE)
        if not isinstance(doc, dict) or not all(isinstance(doc.get(k), str) for k in
                                                ("filename", "download_url", "shasum")):
            raise FormatError(502, f"the upstream's answer for {key[10:]} is not usable")
        return cached, doc, (await self.api_base(ctx, "providers.v1")) + key[10:]

    # ------------------------------------------------------------------ files
    async def provider_zip(self, ctx: Ctx) -> web.StreamResponse:
        if ctx.repo.is_group:
            return await ctx.first_member(self.provider_zip, "provider package")
        m = ctx.match
        key = f"{self.provider_prefix(ctx)}/{m['version']}/{m['filename']}"
        if ctx.repo.is_hosted:
            found = await ctx.hosted.get(key)
            if found is None or not m["filename"].endswith(f"_{m['os']}_{m['arch']}.zip"):
                raise FormatError(404, f"{m['filename']} not found")
            return ctx.hosted.serve(ctx.request, found)
        if await ctx.pull.peek(key) is not None:
            return ctx.pull.respond(ctx.request, await ctx.open_upstream(ctx.pull.spec(key, None, Kind.IMMUTABLE)))
        _, doc, doc_url = await self._upstream_download(ctx, m["version"], m["os"], m["arch"])
        if doc["filename"] != m["filename"]:
            raise FormatError(404, f"{m['filename']} is not the {m['os']}_{m['arch']} package")
        return ctx.pull.respond(ctx.request, await ctx.open_upstream(self._zip_spec(ctx, key, doc, doc_url)))

    def _zip_spec(self, ctx: Ctx, key: str, doc: dict[str, Any], doc_url: str) -> Any:
        """The fetch of a package zip an upstream download answer names, checked against its shasum."""
        return ctx.pull.spec(key, urljoin(doc_url, doc["download_url"]), Kind.IMMUTABLE, content_type=ZIP_TYPE,
                             expect_sha256=doc["shasum"] if re.fullmatch(r"[0-9a-f]{64}", doc["shasum"]) else None)

    async def provider_sums(self, ctx: Ctx) -> web.StreamResponse:
        if ctx.repo.is_group:
            return await ctx.first_member(self.provider_sums, "SHA256SUMS")
        m = ctx.match
        version, signature = m["version"], m["file"].endswith(".sig")
        if ctx.repo.is_hosted:
            sums = await ctx.hosted.get(f"{self.provider_prefix(ctx)}/{version}/"
                                        f"terraform-provider-{m['type']}_{version}_SHA256SUMS")
            if sums is None:
                raise FormatError(404, f"provider version {version} not found")
            if not signature:
                return ctx.hosted.serve(ctx.request, sums)
            body = await signing.signature(ctx, sums.digest, await ctx.hosted.read(sums))
            return web.Response(body=body, content_type="application/pgp-signature")
        key = f"{self.provider_prefix(ctx)}/{version}/{m['file']}"
        url = None
        if await ctx.pull.peek(key) is None:
            versions, _ = await self._provider_versions(ctx)
            platforms = (versions.get(version) or {}).get("platforms") or []
            if not platforms:
                raise FormatError(404, f"provider version {version} not found upstream")
            _, doc, doc_url = await self._upstream_download(ctx, version, platforms[0]["os"], platforms[0]["arch"])
            field = "shasums_signature_url" if signature else "shasums_url"
            if not isinstance(doc.get(field), str):
                raise FormatError(404, f"the upstream names no {m['file']}")
            url = urljoin(doc_url, doc[field])
        return ctx.pull.respond(ctx.request, await ctx.open_upstream(ctx.pull.spec(key, url, Kind.IMMUTABLE)))

    async def signing_key_public(self, ctx: Ctx) -> web.StreamResponse:
        """The armored public key hosted providers are signed with (to export or pin)."""
        target = ctx.deploy_target("read") if ctx.repo.is_group else ctx
        key = await signing.signing_key(target)
        return web.Response(text=key.public_armor, content_type="application/pgp-keys",
                            headers={"X-Key-Id": key.key_id})

    async def signing_key_rotate(self, ctx: Ctx) -> web.StreamResponse:
        key = await signing.rotate_key(ctx.deploy_target("delete"))
        return web.json_response({"key_id": key.key_id, "ascii_armor": key.public_armor}, status=201)

    # ------------------------------------------------------------------ publish
    async def provider_publish(self, ctx: Ctx) -> web.StreamResponse:
        target = ctx.deploy_target()
        m = ctx.match
        ptype, version, filename = m["type"], m["version"], m["filename"]
        prefix = f"{self.provider_prefix(ctx)}/{version}"
        zip_name = re.fullmatch(_zip_pattern(ptype, version),
                                filename)
        staged = await target.stage()
        data = await target.hosted.read_staged(staged)
        if zip_name:
            try:
                h1 = await in_thread(provider_zip_check, data, ptype)
            except ValueError as exc:
                raise FormatError(400, str(exc)) from None
            published = await target.record(f"{prefix}/{filename}", staged, content_type=ZIP_TYPE, overwrite=False,
                                            meta={"h1": h1})
        elif filename == f"terraform-provider-{ptype}_{version}_SHA256SUMS":
            meta = await self._check_sums(target, prefix, data, ptype, version)
            published = await target.record(f"{prefix}/{filename}", staged, content_type="text/plain",
                                            overwrite=False, meta=meta)
        else:
            raise FormatError(400, f"expected terraform-provider-{ptype}_{version}_<os>_<arch>.zip or "
                                   f"terraform-provider-{ptype}_{version}_SHA256SUMS, not {filename}")
        target.hosted.count_publish()
        return web.json_response({"path": published.file.path, "sha256": published.file.digest},
                                 status=201 if published.created else 200)

    async def _check_sums(self, ctx: Ctx, prefix: str, data: bytes, ptype: str, version: str) -> dict[str, Any]:
        try:
            files = parse_sums(data)
        except ValueError as exc:
            raise FormatError(400, str(exc)) from None
        platforms = []
        for name, digest in files.items():
            found = re.fullmatch(_zip_pattern(ptype, version),
                                 name)
            stored = await ctx.hosted.get(f"{prefix}/{name}")
            if not found or stored is None:
                raise FormatError(400, f"SHA256SUMS names {name}, which is not a published package of {version}")
            if stored.digest != digest:
                raise FormatError(400, f"SHA256SUMS says {digest} for {name}, the stored file is {stored.digest}")
            platforms.append([found.group(1), found.group(2)])
        protocols = [p for p in ctx.request.query.get("protocols", ",".join(DEFAULT_PROTOCOLS)).split(",") if p]
        if not all(re.fullmatch(r"\d+\.\d+", p) for p in protocols):
            raise FormatError(400, "protocols must be a comma-separated list like 5.0,6.0")
        return {"version": version, "protocols": protocols, "platforms": platforms, "files": files}

    # ------------------------------------------------------------------ network mirror
    def mirror_host_ok(self, ctx: Ctx) -> None:
        allowed = ctx.repo.options.get("hostname") or urlsplit(ctx.repo.upstream or "").netloc
        if ctx.match["host"].lower() != allowed.lower():
            raise FormatError(404, f"this mirror serves providers of {allowed}, not {ctx.match['host']}")

    async def mirror_index(self, ctx: Ctx) -> web.StreamResponse:
        if ctx.repo.is_group:
            return await ctx.first_member(self.mirror_index, "provider")
        self.mirror_host_ok(ctx)
        versions, x_cache = await self._provider_versions(ctx)
        return json_answer(ctx.request, {"versions": {v: {} for v in versions}}, {"X-Cache": x_cache})

    async def mirror_version(self, ctx: Ctx) -> web.StreamResponse:
        if ctx.repo.is_group:
            return await ctx.first_member(self.mirror_version, "provider version")
        self.mirror_host_ok(ctx)
        version = ctx.match["version"]
        versions, _ = await self._provider_versions(ctx)
        platforms = (versions.get(version) or {}).get("platforms") or []
        if not platforms:
            raise FormatError(404, f"provider version {version} not found")
        answers = await asyncio.gather(*(self._upstream_download(ctx, version, p["os"], p["arch"])
                                         for p in platforms))
        archives = {}
        for platform, (_, doc, doc_url) in zip(platforms, answers, strict=True):
            os_, arch = platform["os"], platform["arch"]
            key = f"{self.provider_prefix(ctx)}/{version}/{doc['filename']}"
            if ctx.repo.options.get("mirror_h1_all") and await ctx.pull.peek(key) is None:
                await ctx.fetch_upstream(self._zip_spec(ctx, key, doc, doc_url))    # stored; one at a time
            h1 = await self.cached_h1(ctx, key)
            archives[f"{os_}_{arch}"] = {
                "url": self.provider_urls(ctx, version, os_, arch, doc["filename"])["download_url"],
                "hashes": ([h1] if h1 else []) + [f"zh:{doc['shasum']}"]}
        return json_answer(ctx.request, {"archives": archives},
                           {"X-Cache": merge_x_cache(c.status for c, _, _ in answers) or "HIT"})


    async def cached_h1(self, ctx: Ctx, key: str) -> str | None:
        """The h1: hash of a package zip this proxy holds (None until it was fetched once: the h1:
        scheme hashes the files inside, so it needs the zip, and a version lists a dozen of them).
        Computed once per zip (kept in the document cache by its digest), off the event loop."""
        entry = await ctx.pull.peek(key)
        if entry is None:
            return None
        memo = ("terraform-h1", entry.digest)
        found = ctx.documents.get(memo)
        if found is None:
            try:
                body = await ctx.pull.read(Cached("HIT", ctx.repo, entry))
                found = (await in_thread(package_h1, body)).encode()
            except (ValueError, OSError):      # not a zip, or its blob is gone (refetched on download)
                return None
            ctx.documents.put(memo, found)
        return found.decode()


def _zip_pattern(ptype: str, version: str) -> str:
    """The file name of a provider release zip: capture groups os and arch."""
    return rf"terraform-provider-{re.escape(ptype)}_{re.escape(version)}_([a-z0-9]+)_([a-z0-9]+)\.zip"
