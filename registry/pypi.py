"""PyPI (`format: pypi`): the simple API for pip/uv, the legacy upload API for twine.

Routes, relative to `/<repo>/`:

* `GET simple/` — project list (PEP 503 HTML or PEP 691 JSON, chosen by `Accept`).
* `GET simple/<project>/` — one project's files. Names that are not normalised get a 301 to the
  normalised URL. Links are relative: `../../files/<project>/<file-id>/<filename>#sha256=…`,
  where `<file-id>` is the file's sha256 (or `url-<sha256 of its upstream URL>` when the upstream
  promised no sha256). `<link>.metadata` is the file's core metadata (PEP 658/714).
* `GET files/<project>/<file-id>/<filename>[.metadata]` — the file. A proxy never fetches a URL
  taken from the request: it looks the (file-id, filename) pair up in the project page it fetched
  from its upstream and fetches the URL that page gave, verified against the promised sha256.
* `POST ` (the repository root, also `legacy/`) — twine upload (`:action=file_upload`); 400 on
  invalid input or an existing file unless the repository has `allow_overwrite`.
* `POST <project>/<version>/yank` — yank every file of a version (reason: urlencoded field `reason` or a text
  body), e.g. `curl -X POST --data "broken build" …/<repo>/<project>/<version>/yank`;
  `DELETE <project>/<version>/yank` — un-yank.
* `DELETE <project>/<version>` — delete every file of a version.

Write routes work on hosted repositories and on groups (they go to `deploy_to`). Uploading needs
the `write` permission, yanking and deleting `delete` (checked by the front door before a handler
runs); pip/twine send Basic credentials (`user:password` or `user:<token>`).
"""
from __future__ import annotations

import asyncio
import functools
import hashlib
import os
import subprocess
import sys
import time
from dataclasses import replace
from typing import Any, AsyncIterator, Awaitable, Callable
from urllib.parse import parse_qs, urlsplit

from aiohttp import BodyPartReader, web
from cachetools import LRUCache
from packaging.version import InvalidVersion, Version

from depot.cache.api import (ANY, Cached, DigestMismatch, FetchSpec, HostedFile, Kind, NotFound, Staged, TooLarge,
                             UpstreamFailed, Write, merge_x_cache, respond_bytes)

from . import pypi_index as ix
from . import pypi_upload as upl
from .base import Ctx, Format, FormatError, engine_errors, route
from .pypi_policy import policy_page
from .repo import RepoConfig, UpstreamAuth

PAGE_CACHE_ITEMS = 512


def _pull_errors(handler: Callable[["PyPI", Ctx], Awaitable[web.StreamResponse]]
                 ) -> Callable[["PyPI", Ctx], Awaitable[web.StreamResponse]]:
    """Turn the engine's NotFound / UpstreamFailed into plain-text errors with their status."""
    @functools.wraps(handler)
    async def wrapper(self: "PyPI", ctx: Ctx) -> web.StreamResponse:
        try:
            return await handler(self, ctx)
        except NotFound:
            raise FormatError(404, f"not found in {ctx.repo.name}: {ctx.path}") from None
        except UpstreamFailed as exc:
            raise FormatError(exc.status, f"upstream failed: {exc.reason}") from None
    return wrapper


class PyPI(Format):
    """Simple API (proxy, hosted, group) and twine uploads (hosted, group)."""

    name = "pypi"
    routes = (
        route("GET HEAD", r"simple", "redirect_index"),
        route("GET HEAD", r"simple/", "index_page"),
        route("GET HEAD", r"simple/(?P<project>[^/]+)/?", "project_page"),
        route("GET HEAD", r"files/(?P<project>[^/]+)/(?P<fid>[^/]+)/(?P<filename>[^/]+)", "file"),
        route("POST", r"(?:legacy/?)?", "upload", "hosted group"),
        route("POST DELETE", r"(?P<project>[^/]+)/(?P<version>[^/]+)/yank", "yank", "hosted group",
              perm="delete"),
        route("DELETE", r"(?P<project>[^/]+)/(?P<version>[^/]+)", "delete_version", "hosted group"),
    )

    version_scheme = "pep440"

    def __init__(self) -> None:
        self._pages: LRUCache[str, ix.ProjectPage] = LRUCache(maxsize=PAGE_CACHE_ITEMS)
        self._rendered: LRUCache[tuple[str, str], tuple[bytes, str]] = LRUCache(maxsize=PAGE_CACHE_ITEMS)

    @classmethod
    def forward_prefixes(cls, repo: RepoConfig) -> list[tuple[str, str]]:
        """The index URL maps onto /<repo>/simple/, its parent onto /<repo>/ (so the relative
        `../../files/…` links of depot's pages resolve back into this repository)."""
        if not repo.upstream:
            return []
        base = _upstream_base(repo)
        return [(base, "simple/"), (base.rstrip("/").rpartition("/")[0] + "/", "")]

    @classmethod
    def default_upstream(cls) -> str | None:
        """The index pip on this machine uses (PIP_INDEX_URL, pip config, pip's built-in default)."""
        return pip_index_url()

    def error(self, ctx: Ctx | None, status: int, message: str, code: str | None = None) -> web.Response:
        """Plain text; twine shows the reason phrase, so the message goes there too."""
        reason = " ".join(message.split())[:200].encode("latin-1", "replace").decode("latin-1")
        return web.Response(status=status, reason=reason or None, text=message.rstrip("\n") + "\n",
                            headers={"Cache-Control": "no-store"})

    # ------------------------------------------------------------ simple API

    async def redirect_index(self, ctx: Ctx) -> web.StreamResponse:
        raise web.HTTPMovedPermanently(ctx.base_url + "/simple/")

    @_pull_errors
    async def index_page(self, ctx: Ctx) -> web.StreamResponse:
        """The project list of a repository (a group lists the union of its members)."""
        variant = _variant(ctx)
        names: set[str] = set()
        statuses: list[tuple[RepoConfig, str]] = []
        digests: list[str] = []
        for repo in _read_repos(ctx):
            if repo.is_hosted:
                names.update(f.path.split("/", 1)[0] for f in await ctx.for_repo(repo).hosted.list())
                digests.append("hosted")
                continue
            try:
                cached, body = await self._open(ctx, _index_spec(repo))
            except (NotFound, UpstreamFailed):
                if not ctx.repo.is_group:
                    raise
                continue
            statuses.append((repo, cached.status))
            digests.append(cached.entry.digest if cached.entry else "hosted")
            names.update(ix.load_names(body))
        key = None if "hosted" in digests else "index:" + "+".join(digests)
        found = self._rendered.get((key, variant)) if key else None
        if found is None:
            ordered = sorted(names)
            body = ix.render_index_json(ordered) if variant == "json" else ix.render_index_html(ordered)
            found = (body, hashlib.sha256(body).hexdigest())
            if key:
                self._rendered[(key, variant)] = found
        return self._answer(ctx, found[0], variant, statuses, found[1])

    @_pull_errors
    async def project_page(self, ctx: Ctx) -> web.StreamResponse:
        """One project's page, merged over a group's members in order."""
        raw = ctx.match["project"]
        project = ix.normalize_project(raw)
        if project is None:
            raise FormatError(404, f"not a valid project name: {raw!r}")
        if raw != project or not ctx.path.endswith("/"):
            raise web.HTTPMovedPermanently(f"{ctx.base_url}/simple/{project}/")
        variant = _variant(ctx)
        pages, statuses, key = await self._collect(ctx, project)
        page = pages[0] if len(pages) == 1 else ix.merge_pages(project, pages)
        link = functools.partial(ix.relative_link, project)
        if key is None:
            body = ix.render_json(page, link) if variant == "json" else ix.render_html(page, link)
            return self._answer(ctx, body, variant, statuses)
        found = self._rendered.get((key, variant))
        if found is None:
            body = ix.render_json(page, link) if variant == "json" else ix.render_html(page, link)
            found = self._rendered[(key, variant)] = (body, hashlib.sha256(body).hexdigest())
        return self._answer(ctx, found[0], variant, statuses, found[1])

    async def _collect(self, ctx: Ctx, project: str
                       ) -> tuple[list[ix.ProjectPage], list[tuple[RepoConfig, str]], str | None]:
        """Pages of every readable member, their X-Cache statuses, and a render-cache key.

        The key is None when a hosted member contributes (hosted pages change without a digest).
        """
        pages: list[ix.ProjectPage] = []
        statuses: list[tuple[RepoConfig, str]] = []
        digests: list[str | None] = []
        failure: UpstreamFailed | None = None
        for repo in _read_repos(ctx):
            try:
                if repo.is_hosted:
                    page = await self._hosted_page(ctx, repo, project)
                    digests.append(None)
                else:
                    cached, page = await self._proxy_page(ctx, repo, project)
                    page, hidden = policy_page(ctx.for_repo(repo), page)
                    statuses.append((repo, cached.status))
                    digests.append(cached.entry.digest + hidden if cached.entry else None)
            except NotFound:
                continue
            except UpstreamFailed as exc:
                failure = exc
                continue
            if page.files or repo.is_proxy:
                pages.append(page)
        if not pages:
            if failure is not None:
                raise failure
            raise NotFound(project)
        key = None if None in digests else "+".join(d for d in digests if d)
        return pages, statuses, key

    def _answer(self, ctx: Ctx, body: bytes, variant: str, statuses: list[tuple[RepoConfig, str]],
                etag: str | None = None) -> web.StreamResponse:
        headers = {"Vary": "Accept", "Cache-Control": "max-age=0, must-revalidate"}
        if ctx.repo.is_proxy or ctx.repo.is_group:
            # the engine's one precedence for merged answers (STALE > MISS > REVALIDATED > HIT)
            headers["X-Cache"] = merge_x_cache(found for _, found in statuses) or "HIT"
            for member, found in statuses:      # counted at the members that answered (a group: also served)
                ctx.for_repo(member).pull.count_served(ctx.request, found.lower())
        return respond_bytes(ctx.request, body, ix.content_type(variant), headers, digest=etag)

    # ------------------------------------------------------------ files

    @_pull_errors
    async def file(self, ctx: Ctx) -> web.StreamResponse:
        """A distribution file or its `.metadata`, from the first member that lists it."""
        project, fid, filename = ctx.match["project"], ctx.match["fid"], ctx.match["filename"]
        if ix.normalize_project(project) != project or not ix.valid_file_id(fid) \
                or not ix.safe_filename(filename):
            raise FormatError(404, "no such file")
        failure: UpstreamFailed | None = None
        for repo in _read_repos(ctx):
            try:
                if repo.is_hosted:
                    response = await self._hosted_file(ctx, repo, project, fid, filename)
                else:
                    response = await self._proxy_file(ctx, repo, project, fid, filename)
            except NotFound:
                continue
            except UpstreamFailed as exc:
                failure = exc
                continue
            if response is not None:
                return response
        if failure is not None:
            raise failure
        raise FormatError(404, f"{filename} is not a file of {project} in {ctx.repo.name}")

    async def _proxy_file(self, ctx: Ctx, repo: RepoConfig, project: str, fid: str,
                          filename: str) -> web.StreamResponse | None:
        key = f"files/{fid}/{filename}"
        member = ctx.for_repo(repo)
        await member.check_policy(key)        # a hidden version: 403 naming the rule
        stored = await member.pull.stored(key)
        if stored is not None:
            # already stored: answer without consulting the project page (or its upstream)
            return member.pull.respond(ctx.request, stored)
        is_metadata = filename.endswith(".metadata")
        base = filename[: -len(".metadata")] if is_metadata else filename
        _, page = await self._proxy_page(ctx, repo, project)
        record = ix.find_file(page, fid, base)
        if record is not None and is_metadata:
            record = ix.metadata_record(record)
        if record is None:
            return None
        spec = FetchSpec(_auth_for(repo, record.url), key, record.url,
                         Kind.IMMUTABLE, expect_sha256=record.sha256,
                         content_type="text/plain; charset=utf-8" if is_metadata else None)
        cached = await member.pull.open(spec)
        return member.pull.respond(ctx.request, cached)

    async def _hosted_file(self, ctx: Ctx, repo: RepoConfig, project: str, fid: str,
                           filename: str) -> web.StreamResponse | None:
        is_metadata = filename.endswith(".metadata")
        base = filename[: -len(".metadata")] if is_metadata else filename
        hosted = ctx.for_repo(repo).hosted
        stored = await hosted.get(f"{project}/{base}")
        if stored is None or stored.digest != fid:
            return None
        if is_metadata:
            stored = await hosted.get(f"{project}/{filename}")
            if stored is None:
                return None
        return hosted.serve(ctx.request, stored, x_cache="HIT" if ctx.repo.is_group else None)

    # ------------------------------------------------------------ reading pages

    async def _open(self, ctx: Ctx, spec: FetchSpec) -> tuple[Cached, bytes]:
        return await ctx.pull.open_read(spec)

    async def _proxy_page(self, ctx: Ctx, repo: RepoConfig, project: str) -> tuple[Cached, ix.ProjectPage]:
        """The upstream's page for `project` (cached, revalidated after metadata_ttl)."""
        cached, body = await self._open(ctx, _page_spec(repo, project))
        digest = cached.entry.digest if cached.entry else hashlib.sha256(body).hexdigest()
        page = self._pages.get(digest)
        if page is None:
            page = self._pages[digest] = await asyncio.to_thread(ix.load_page, body, project)
        return cached, page

    async def _hosted_page(self, ctx: Ctx, repo: RepoConfig, project: str) -> ix.ProjectPage:
        stored = await ctx.for_repo(repo).hosted.list(prefix=f"{project}/")
        if not stored:
            raise NotFound(project)
        records = [_hosted_record(f) for f in stored if not f.path.endswith(".metadata")]
        records.sort(key=lambda r: (_version_key(r.filename), r.filename))
        return ix.ProjectPage(project, records)

    # ------------------------------------------------------------ publishing

    async def upload(self, ctx: Ctx) -> web.StreamResponse:
        """twine's legacy upload: validate, store the blob, extract METADATA, record it."""
        target = ctx.deploy_target()       # a group's deploy_to, the caller's right re-checked
        if not ctx.request.content_type.startswith("multipart/form-data"):
            raise FormatError(400, "expected a multipart/form-data upload (twine legacy API)")
        fields, stored = await _read_upload(target)
        if stored is None:
            raise FormatError(400, "missing file in the 'content' part")
        filename, staged, hasher = stored
        upload = upl.validate_form(fields, filename)
        upl.check_digests(upload, staged.digest, hasher)
        meta = {"name": upload.name, "version": upload.version, "filetype": upload.filetype,
                "requires_python": upload.requires_python, "yanked": False,
                "upload_time": _iso_now()}
        path = f"{upload.project}/{upload.filename}"
        core = None
        if upload.filetype == "bdist_wheel":
            metadata = await target.hosted.inspect_staged(staged, functools.partial(upl.wheel_metadata,
                                                                                    upload=upload))
            core = await target.hosted.stage(metadata)
            meta["metadata_sha256"], meta["metadata_size"] = core.digest, core.size
        ctype = "application/zip" if filename.endswith((".whl", ".zip")) else "application/gzip"
        writes = [Write(path, staged.digest, staged.size, ctype, meta, once=True)]
        if core is not None:   # its own row, so that blob GC sees the reference
            writes.append(Write(path + ".metadata", core.digest, core.size, "text/plain; charset=utf-8",
                                {"metadata_of": upload.filename}))
        return await _record_upload(target, upload.filename, writes)

    async def yank(self, ctx: Ctx) -> web.StreamResponse:
        """POST yanks a version's files (optional `reason`); DELETE un-yanks them."""
        target = ctx.deploy_target()
        files = await _version_files(target)
        value: bool | str = False
        if ctx.request.method == "POST":
            value = await _yank_reason(ctx.request, ctx.client_timeout) or True
        for stored in files:
            await target.hosted.update_meta(stored.path, {**stored.meta, "yanked": value})
        state = "yanked" if value is not False else "un-yanked"
        return web.Response(text=f"{state} {len(files)} file(s)\n")

    def package_of(self, path: str) -> tuple[str, str] | None:
        """(project, version) of a hosted file `<project>/<filename>[.metadata]` or a proxied one
        `files/<file-id>/<filename>[.metadata]` (its URL: `files/<project>/<file-id>/<filename>`); pages and
        indexes belong to no version."""
        parts = path.split("/")
        if len(parts) == 2 or (len(parts) in (3, 4) and parts[0] == "files"):
            return ix.file_package(parts[-1])
        return None

    async def delete_version(self, ctx: Ctx) -> web.StreamResponse:
        """Delete every file of one version of a project."""
        target = ctx.deploy_target()
        files = await _version_files(target)
        with engine_errors(target.repo):
            for stored in files:
                await target.hosted.check_write(stored.path, delete=True, current=stored)
        # the file names stay used: re-uploading one later must bring the same bytes
        await target.hosted.commit([
            Write(path, "", 0, delete=True, once=not path.endswith(".metadata"))
            for stored in files for path in (stored.path, stored.path + ".metadata")])
        return web.Response(text=f"deleted {len(files)} file(s)\n")


FORMAT = PyPI


# ---------------------------------------------------------------- helpers

def _variant(ctx: Ctx) -> str:
    variant = ix.choose_variant(ctx.request.headers.get("Accept"), ctx.request.query.get("format"))
    if variant is None:
        raise FormatError(406, f"none of the accepted types is served; use {ix.JSON_TYPE} or text/html")
    return variant


def _read_repos(ctx: Ctx) -> list[RepoConfig]:
    return [ctx.member(m) for m in ctx.repo.members] if ctx.repo.is_group else [ctx.repo]


def _upstream_base(repo: RepoConfig) -> str:
    assert repo.upstream, "a proxy repository always has an upstream"
    return repo.upstream.rstrip("/") + "/"


def _page_spec(repo: RepoConfig, project: str) -> FetchSpec:
    url = f"{_upstream_base(repo)}{project}/"
    return FetchSpec(repo, f"simple/{project}/", url, Kind.METADATA,
                     transform=functools.partial(_store_page, url, project),
                     request_headers={"Accept": ix.UPSTREAM_ACCEPT},
                     content_type="application/json")


def _store_page(url: str, project: str, body: bytes) -> bytes:
    return ix.dump_page(ix.parse_page(body, url, project))


def _index_spec(repo: RepoConfig) -> FetchSpec:
    return FetchSpec(repo, "simple/", _upstream_base(repo), Kind.METADATA,
                     transform=lambda body: ix.dump_index(ix.parse_index(body)),
                     request_headers={"Accept": ix.UPSTREAM_ACCEPT},
                     content_type="application/json")


def _auth_for(repo: RepoConfig, url: str) -> RepoConfig:
    """Upstream credentials go only to the upstream's own host, never to a file host."""
    if urlsplit(url).netloc == urlsplit(repo.upstream or "").netloc:
        return repo
    return replace(repo, auth=UpstreamAuth())


def _hosted_record(stored: HostedFile) -> ix.FileRecord:
    meta = stored.meta
    core: bool | dict[str, str] = {"sha256": meta["metadata_sha256"]} if meta.get("metadata_sha256") else False
    return ix.FileRecord(filename=stored.path.split("/", 1)[1], url="", hashes={"sha256": stored.digest},
                         requires_python=meta.get("requires_python"), yanked=meta.get("yanked", False),
                         core_metadata=core, size=stored.size, upload_time=meta.get("upload_time"))


def _version_key(filename: str) -> tuple[int, Version | str]:
    version = ix.file_version(filename)
    try:
        return (0, Version(version)) if version else (1, filename)
    except InvalidVersion:
        return (1, filename)


def _iso_now() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1e6):06d}Z"


async def _record_upload(target: Ctx, filename: str, writes: list[Write]) -> web.StreamResponse:
    """Record an uploaded file (writes[0]) and its core metadata in one transaction, under the
    rules of a PyPI index: a file name never names other bytes, an identical re-upload is OK."""
    repo, hosted, path, digest = target.repo, target.hosted, writes[0].path, writes[0].digest
    with engine_errors(repo):
        await hosted.check_write(path, digest)      # protection and duplicates (every format's rule)
    overwrite = hosted.overwrite_allowed(path=path)
    before = await hosted.published_digest(path)
    if before is not None and before != digest and not overwrite:
        # as on PyPI: a file name, once used, never names other bytes (not even after a delete)
        raise FormatError(400, f"File already exists: {filename} was uploaded to {repo.name} "
                               "before with other content; file names cannot be reused")
    current = await hosted.get(path)
    if current is not None and current.digest == digest:
        # as on PyPI: uploading the very same file again succeeds (retries, `uv publish` twice)
        return web.Response(text=f"OK: {filename} (identical file already stored)\n")
    writes[0] = replace(writes[0], expect=ANY if overwrite else None)
    if not await hosted.commit(writes):          # the file and its metadata, or nothing
        raise FormatError(400, f"File already exists: {filename} in {repo.name}")
    hosted.count_publish()
    return web.Response(text=f"OK: {filename}\n")


async def _timed(step: Awaitable[Any], idle: float) -> Any:
    """One read of the upload body: 408 when the client stalls, 400 when the body is malformed."""
    try:
        return await asyncio.wait_for(step, timeout=idle)
    except asyncio.TimeoutError:
        raise FormatError(408, f"client sent nothing for {idle:.0f} s") from None
    except (ValueError, AssertionError, LookupError) as exc:   # aiohttp's multipart parser
        raise FormatError(400, f"malformed multipart body: {exc}") from None


async def _read_upload(ctx: Ctx) -> tuple[dict[str, str], tuple[str, Staged, upl.Hasher] | None]:
    """Form fields and the staged `content` part: (filename, staged blob, hasher).

    Streamed: the file is staged in `ctx`'s repository as it arrives, limited to its
    `max_upload`, and every read gives up after `client_timeout` without data.
    """
    limit, idle = ctx.repo.max_upload, ctx.client_timeout
    declared = ctx.request.content_length
    if declared is not None and declared > limit + upl.MAX_FIELDS_TOTAL:
        raise FormatError(413, f"upload of {declared} bytes is larger than the limit of {limit}")
    try:
        reader = await ctx.request.multipart()
    except (ValueError, AssertionError, LookupError) as exc:   # e.g. no boundary in Content-Type
        raise FormatError(400, f"malformed multipart request: {exc}") from None
    fields: dict[str, str] = {}
    stored = None
    total = count = 0
    while (part := await _timed(reader.next(), idle)) is not None:
        if not isinstance(part, BodyPartReader):
            raise FormatError(400, "nested multipart is not supported")
        count += 1
        if count > upl.MAX_FIELD_COUNT:
            raise FormatError(400, "too many form fields")
        if part.name == "content" and part.filename is not None:
            if stored is not None:
                raise FormatError(400, "more than one file in the upload")
            stored = await _store_content(ctx, part, limit, idle)
            continue
        value = await _read_field(part, upl.MAX_FIELD_SIZE, idle)
        total += len(value)
        if total > upl.MAX_FIELDS_TOTAL:
            raise FormatError(400, "form fields too large")
        if part.name:
            fields.setdefault(part.name, value.decode("utf-8", errors="replace"))
    return fields, stored


async def _store_content(ctx: Ctx, part: BodyPartReader, limit: int,
                         idle: float) -> tuple[str, Staged, upl.Hasher]:
    hasher = upl.Hasher()

    async def chunks() -> AsyncIterator[bytes]:
        while chunk := await _timed(part.read_chunk(256 * 1024), idle):
            hasher.update(chunk)
            yield chunk

    try:
        staged = await ctx.hosted.stage(chunks(), max_size=limit)
    except TooLarge:
        raise FormatError(413, f"file larger than the limit of {limit} bytes") from None
    except DigestMismatch as exc:  # pragma: no cover - no expectation is passed
        raise FormatError(400, str(exc)) from None
    return os.path.basename(part.filename or ""), staged, hasher


async def _read_field(part: BodyPartReader, limit: int, idle: float) -> bytes:
    data = bytearray()
    while chunk := await _timed(part.read_chunk(64 * 1024), idle):
        data += chunk
        if len(data) > limit:
            raise FormatError(400, f"form field {part.name!r} too large")
    return bytes(data)


async def _version_files(ctx: Ctx) -> list[HostedFile]:
    """The files of the version the route names in `ctx`'s (hosted) repository; 404 when none."""
    project = ix.normalize_project(ctx.match["project"])
    try:
        version = Version(ctx.match["version"])
    except InvalidVersion:
        raise FormatError(400, f"invalid version {ctx.match['version']!r}") from None
    if project is None:
        raise FormatError(400, f"invalid project name {ctx.match['project']!r}")
    files = []
    for stored in await ctx.hosted.list(prefix=f"{project}/"):
        try:
            if Version(stored.meta.get("version", "")) == version:
                files.append(stored)
        except InvalidVersion:
            continue
    if not files:
        raise FormatError(404, f"{project} {version} not found in {ctx.repo.name}")
    return files


async def _yank_reason(request: web.Request, idle: float) -> str:
    """The reason: form field `reason` (urlencoded) or the plain-text body (its first 4 KiB)."""
    text = (await _timed(request.content.read(4096), idle)).decode("utf-8", errors="replace").strip()
    if request.content_type == "application/x-www-form-urlencoded" and "reason=" in text:
        return parse_qs(text).get("reason", [""])[0].strip()
    return text


@functools.cache
def pip_index_url() -> str | None:
    """pip's index URL: PIP_INDEX_URL, else `pip config list` (env, install, global), else pip's default."""
    from_env = os.environ.get("PIP_INDEX_URL", "").split()
    if from_env:
        return from_env[0]
    try:
        out = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True,
                             text=True, timeout=30, stdin=subprocess.DEVNULL).stdout
    except (OSError, subprocess.SubprocessError):
        out = ""
    values = {}
    for line in out.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip().strip("'\"")
    for key in (":env:.index-url", "install.index-url", "global.index-url"):
        if values.get(key):
            return values[key].split()[0]
    try:
        from pip._internal.models.index import PyPI as PipDefault
    except ImportError:
        return None
    return str(PipDefault.simple_url)

