"""Terraform module registry protocol (modules.v1): hosted, proxy and group handlers.

Hosted archives live at `modules/<ns>/<name>/<system>/<version>.tar.gz|.zip`. A proxy keeps the
upstream's `versions` (metadata) and its `download` answer (the 204 with X-Terraform-Get,
immutable), and serves the archive from depot: `X-Terraform-Get` always points at
`<repo>/v1/modules/…/<version>/archive?archive=<type>`, where the archive is cached. A GitHub git
source pinned to a ref (what the public registry answers) is fetched as GitHub's tarball of that
ref (option `github_archive_url`) and stored without its single top directory. Other sources that are
not HTTP archives (git elsewhere, s3::, …) cannot be cached:
they are passed through as they are, with an `X-Depot-Note` saying so.
"""
from __future__ import annotations

import io
import json
import re
import tarfile
import zipfile
from typing import Any
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit

from aiohttp import web

from depot.cache.api import Kind, merge_x_cache

from .base import Ctx, FormatError
from .json_answer import json_answer
from .tree import in_thread

ARCHIVE_TYPES = {"tar.gz": "application/gzip", "zip": "application/zip"}
VERSION = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$")
MAX_ENTRIES = 100_000
NOT_CACHED = "this module's source is not an HTTP archive (git, s3, …): depot cannot cache it"


def version_key(version: str) -> tuple[Any, ...]:
    """Sort key of a semantic version (pre-releases before the release)."""
    found = VERSION.match(version)
    if not found:
        return (0, 0, 0, 0, version)
    major, minor, patch, pre = found.groups()
    return (int(major), int(minor), int(patch), 0 if pre else 1, pre or "")


def module_archive_type(data: bytes) -> str:
    """'tar.gz' or 'zip' for a module archive with at least one .tf file and safe paths
    (blocking: run in a thread); ValueError otherwise."""
    if data[:2] == b"\x1f\x8b":
        try:
            with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
                names = [(m.name, m.issym() or m.islnk(), m.isdev()) for m in tar]
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise ValueError(f"not a valid tar.gz archive: {exc}") from None
        kind = "tar.gz"
    elif data[:4] == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                names = [(i.filename, False, False) for i in archive.infolist()]
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise ValueError(f"not a valid zip archive: {exc}") from None
        kind = "zip"
    else:
        raise ValueError("a module archive must be a .tar.gz or a .zip")
    if len(names) > MAX_ENTRIES:
        raise ValueError(f"more than {MAX_ENTRIES} files in the archive")
    for name, link, dev in names:
        parts = name.replace("\\", "/").split("/")
        if name.startswith("/") or ".." in parts or link or dev:
            raise ValueError(f"unsafe entry in the archive: {name!r}")
    if not any(n.endswith((".tf", ".tf.json")) for n, _, _ in names):
        raise ValueError("the archive holds no .tf or .tf.json file")
    return kind


GITHUB_GIT = re.compile(r"^git::https://github\.com/(?P<owner>[A-Za-z0-9_.-]+)/(?P<repo>[A-Za-z0-9_.-]+?)(?:\.git)?"
                        r"(?://(?P<sub>[^?]*))?\?ref=(?P<ref>[A-Za-z0-9_./-]+)$")


def github_archive(location: str, template: str | None) -> tuple[str, str, str] | None:
    """(tarball URL, '//subdir' or '', 'tar.gz') for `git::https://github.com/o/r?ref=X` (a pinned
    ref), or None (other sources, no ref, or the conversion disabled). The tarball's single top
    directory is stripped when it is stored (strip_top_dir)."""
    found = GITHUB_GIT.match(location)
    if not template or found is None or ".." in found["ref"].split("/"):
        return None
    url = template.format(owner=found["owner"], repo=found["repo"], ref=found["ref"])
    return url, (f"//{found['sub'].strip('/')}" if found["sub"] else ""), "tar.gz"


def resolve_source(location: str, github_template: str | None) -> tuple[str, str, str | None]:
    """split_getter, with GitHub git sources turned into cacheable tarballs first."""
    return github_archive(location, github_template) or split_getter(location)


def strip_top_dir(body: bytes) -> bytes:
    """A tar.gz of GitHub's form (`<repo>-<ref>/…`) re-packed without that directory; regular
    files and directories only (runs at fill time in a worker thread)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as src, \
            tarfile.open(fileobj=out, mode="w:gz") as dst:
        for member in src:
            parts = member.name.split("/", 1)
            if len(parts) < 2 or not parts[1] or parts[1].startswith("/") or ".." in parts[1].split("/") \
                    or not (member.isfile() or member.isdir()):
                continue
            handle = src.extractfile(member) if member.isfile() else None
            member.name = parts[1]
            dst.addfile(member, handle)
    return out.getvalue()


def split_getter(location: str) -> tuple[str, str, str | None]:
    """(URL to fetch, '//subdir' or '', archive type) of an HTTP go-getter address; archive type
    None when it is not an HTTP(S) archive address (git::, s3::, a plain directory…)."""
    if "::" in location.split("?")[0] and not location.startswith(("http::", "https::")):
        return location, "", None
    url = location.split("::", 1)[1] if location.startswith(("http::", "https::")) else location
    scheme, rest = url.split("://", 1) if "://" in url else ("", url)
    if scheme not in ("http", "https"):
        return location, "", None
    path_part, _, query = rest.partition("?")
    subdir = ""
    if "//" in path_part:
        path_part, sub = path_part.split("//", 1)
        subdir = "//" + sub
    params = parse_qsl(query, keep_blank_values=True)
    kind = next((v for k, v in params if k == "archive"), None)
    params = [(k, v) for k, v in params if k != "archive"]
    fetch = f"{scheme}://{path_part}" + (f"?{urlencode(params)}" if params else "")
    path = urlsplit(fetch).path
    if kind is None:
        kind = "zip" if path.endswith(".zip") else "tar.gz" if path.endswith((".tar.gz", ".tgz")) else None
    kind = {"tgz": "tar.gz"}.get(kind or "", kind)
    if kind not in ARCHIVE_TYPES:
        return location, "", None
    return fetch, subdir, kind


class ModuleRegistry:
    """Handlers of the module registry protocol (mixed into the Terraform format)."""

    async def api_base(self, ctx: Ctx, service: str) -> str:      # provided by the Terraform format
        raise NotImplementedError

    def module_prefix(self, ctx: Ctx) -> str:
        m = ctx.match
        return f"modules/{m['ns']}/{m['name']}/{m['system']}"

    def archive_url(self, ctx: Ctx, kind: str, subdir: str = "") -> str:
        m = ctx.match
        return (f"{ctx.base_url}/v1/modules/{m['ns']}/{m['name']}/{m['system']}/{m['version']}/archive"
                f"{subdir}?archive={kind}")

    # ------------------------------------------------------------------ versions
    async def module_versions(self, ctx: Ctx) -> web.StreamResponse:
        versions, x_cache = await self._module_versions(ctx)
        ordered = sorted(versions, key=version_key, reverse=True)
        return json_answer(ctx.request, {"modules": [{"versions": [{"version": v} for v in ordered]}]},
                           {"X-Cache": x_cache})

    async def _module_versions(self, ctx: Ctx) -> tuple[set[str], str]:
        if ctx.repo.is_hosted:
            files = await ctx.hosted.list(self.module_prefix(ctx) + "/")
            found = {re.sub(r"\.(tar\.gz|zip)$", "", f.path.rsplit("/", 1)[1]) for f in files}
            if not found:
                raise FormatError(404, f"module {self.module_prefix(ctx)[8:]} not found")
            return found, "HIT"
        if ctx.repo.is_proxy:
            base = await self.api_base(ctx, "modules.v1")
            key = self.module_prefix(ctx) + "/versions"
            cached, body = await ctx.fetch_upstream(ctx.pull.spec(key, base + key[8:], Kind.METADATA))
            try:
                modules = json.loads(body)["modules"]
                return {v["version"] for m in modules for v in m["versions"]}, cached.status
            except (ValueError, KeyError, TypeError):
                raise FormatError(502, f"the upstream's versions of {key[8:]} are not usable") from None
        answers = await ctx.each_member(self._module_versions, "module versions")
        return set().union(*(v for _, (v, _) in answers)), merge_x_cache(s for _, (_, s) in answers) or "HIT"

    # ------------------------------------------------------------------ download and archive
    async def module_download(self, ctx: Ctx) -> web.StreamResponse:
        if ctx.repo.is_group:
            return await ctx.first_member(self.module_download, "module version")
        if ctx.repo.is_hosted:
            stored = await self._hosted_archive(ctx)
            kind = "zip" if stored.path.endswith(".zip") else "tar.gz"
            return web.Response(status=204, headers={"X-Terraform-Get": self.archive_url(ctx, kind), "X-Cache": "HIT"})
        location, status = await self._upstream_location(ctx)
        fetch, subdir, found_kind = resolve_source(location, ctx.repo.options.get("github_archive_url"))
        if found_kind is None:
            return web.Response(status=204, headers={"X-Terraform-Get": location, "X-Depot-Note": NOT_CACHED,
                                                     "X-Cache": status})
        return web.Response(status=204, headers={"X-Terraform-Get": self.archive_url(ctx, found_kind, subdir),
                                                 "X-Cache": status})

    async def module_archive(self, ctx: Ctx) -> web.StreamResponse:
        if ctx.repo.is_group:
            return await ctx.first_member(self.module_archive, "module archive")
        if ctx.repo.is_hosted:
            return ctx.hosted.serve(ctx.request, await self._hosted_archive(ctx))
        key = f"{self.module_prefix(ctx)}/{ctx.match['version']}/archive"
        fetch, transform = None, None
        if await ctx.pull.peek(key) is None:
            location, _ = await self._upstream_location(ctx)
            template = ctx.repo.options.get("github_archive_url")
            fetch, _, kind = resolve_source(location, template)
            if kind is None:
                raise FormatError(404, NOT_CACHED)
            transform = strip_top_dir if github_archive(location, template) else None
        spec = ctx.pull.spec(key, fetch, Kind.IMMUTABLE, content_type="application/octet-stream", transform=transform)
        return ctx.pull.respond(ctx.request, await ctx.open_upstream(spec))

    async def _hosted_archive(self, ctx: Ctx) -> Any:
        base = f"{self.module_prefix(ctx)}/{ctx.match['version']}"
        for suffix in (".tar.gz", ".zip"):
            found = await ctx.hosted.get(base + suffix)
            if found is not None:
                return found
        raise FormatError(404, f"module version {base[8:]} not found")

    async def _upstream_location(self, ctx: Ctx) -> tuple[str, str]:
        """The upstream's go-getter address for this version (its download answer is kept)."""
        base = await self.api_base(ctx, "modules.v1")
        key = f"{self.module_prefix(ctx)}/{ctx.match['version']}/download"
        url = base + key[8:]
        cached, body = await ctx.fetch_upstream(ctx.pull.spec(key, url, Kind.IMMUTABLE,
                                                              keep_headers=("X-Terraform-Get",)))
        entry = cached.entry or await ctx.pull.peek(key)
        location = (entry.headers if entry is not None else {}).get("X-Terraform-Get")
        if not location and body[:1] == b"{":
            try:
                location = json.loads(body).get("location")
            except ValueError:
                location = None
        if not location:
            raise FormatError(502, f"the upstream gave no download location for {key[8:]}")
        return urljoin(url, location) if "::" not in location.split("?")[0] else location, cached.status

    # ------------------------------------------------------------------ publish
    async def module_publish(self, ctx: Ctx) -> web.StreamResponse:
        target = ctx.deploy_target()
        version = ctx.match["version"]
        base = f"{self.module_prefix(ctx)}/{version}"
        staged = await target.stage()
        data = await target.hosted.read_staged(staged)
        try:
            kind = await in_thread(module_archive_type, data)
        except ValueError as exc:
            raise FormatError(400, str(exc)) from None
        other = ".zip" if kind == "tar.gz" else ".tar.gz"
        if await target.hosted.get(base + other) is not None:
            raise FormatError(409, f"module version {base[8:]} already exists")
        published = await target.record(f"{base}.{kind}", staged, content_type=ARCHIVE_TYPES[kind],
                                        overwrite=False)
        target.hosted.count_publish()
        return web.json_response({"module": base[8:], "version": version, "sha256": published.file.digest},
                                 status=201 if published.created else 200)

