"""Debian / apt repositories (`format: debian`): proxy of a mirror, hosted .deb uploads, groups.

* proxy: `deb http://depot/<repo>/ <suite> <components>`; see debian_proxy for the consistency
  and verification rules. Default upstream: the first `deb` URI of the machine's apt sources.
* hosted: `PUT /<repo>/upload/<component>/<file>.deb[?suite=S]` (or `PUT /<repo>/pool/<component>/…
  /<file>.deb`); the control data and file list are read, and `dists/<suite>/` (Packages, .gz, .xz
  per component and architecture, `all` included; Contents-<arch>(.gz); i18n/Translation-en
  (.bz2, .xz); source/Sources(.gz, .xz); Release; InRelease and Release.gpg signed with the
  repository's own key) is generated from what is stored. Source packages: `PUT
  /<repo>/upload/<component>/<file>` of the .dsc and each file it lists, in any order (see
  debian_sources). `GET /<repo>/key.asc` is the public key for `signed-by`.
* group: Packages, Sources and Contents merged per component/architecture from the members
  (Contents from hosted and group members: a mirror's are too big to merge), Release regenerated
  and signed with the group's own key; other files from the first member that has them.
"""
from __future__ import annotations

import asyncio
import functools
import hashlib
import re
import time
from typing import Any, Awaitable, Callable

from aiohttp import web

from depot.cache.api import Staged

from . import debian_index as di
from . import debian_proxy, signing
from . import debian_sources as ds
from . import debian_suite as dsuite
from .apt_sources import first_deb_uri
from .base import Ctx, FormatError, route, standard_repositories
from .options import Option, string, string_list
from .rendered import Rendered
from .repo import RepoConfig
from .tree import TreeFormat, validate_path

DEB_TYPE = "application/vnd.debian.binary-package"
SUITE_PATH = re.compile(r"dists/(?P<suite>[A-Za-z0-9._-]+)/(?P<rest>.+)")
POOL_UPLOAD = re.compile(r"pool/(?P<component>[^/]+)/.+\.deb")
TYPES = {"Release": "text/plain", "InRelease": "text/plain", "Release.gpg": "application/pgp-signature",
         ".gz": "application/gzip", ".xz": "application/x-xz", ".bz2": "application/x-bzip2", "": "text/plain"}


def content_type_of(name: str) -> str:
    for suffix in (".gz", ".xz", ".bz2"):
        if name.endswith(suffix):
            return TYPES[suffix]
    return TYPES.get(name.rpartition("/")[2], "text/plain")


class Debian(TreeFormat):
    """apt repositories."""

    name = "debian"
    routes = (
        route("GET HEAD", r"key\.asc", "get_key", "hosted group"),
        route("GET HEAD", r"(?P<path>.*)", "get_path"),
        route("PUT", r"upload/(?P<component>[^/]+)/(?P<file>[^/]+\.deb)", "upload", "hosted group"),
        route("PUT", r"upload/(?P<component>[^/]+)/(?P<file>[^/]+\.(?:dsc|changes|buildinfo|diff\.gz|"
                     r"tar\.[a-z0-9]+(?:\.asc)?))",
              "upload_source", "hosted group"),
        route("PUT", r"(?P<path>pool/[^/]+/.+\.deb)", "upload", "hosted group"),
        route("DELETE", r"(?P<path>pool/.+)", "delete_path", "hosted group"),
    )
    options = {
        "suite": Option(string, "stable", "suite (distribution) uploads go to unless ?suite= says"),
        "architectures": Option(string_list, ("amd64", "arm64"),
                                "architectures every hosted suite lists (besides all and those uploaded)"),
        "origin": Option(string, "depot", "Origin and Label of generated Release files"),
    }

    @classmethod
    def default_upstream(cls) -> str | None:
        return first_deb_uri()

    @classmethod
    def default_repositories(cls) -> dict[str, dict[str, Any]]:
        repos = standard_repositories("debian")
        if cls.default_upstream() is None:      # no apt sources on this machine: no proxy
            del repos["debian-remote"]
            repos["debian"]["members"] = ["debian-local"]
        return repos

    @classmethod
    def snippets(cls, repo: RepoConfig, url: str, host: str, insecure: bool) -> list[tuple[str, str]]:
        suite = repo.options.get("suite", "stable")
        if repo.is_proxy:
            return [("sources.list", f"deb {url}/ <suite> main")]
        return [("signing key", f"curl -fsS {url}/key.asc -o /etc/apt/keyrings/{repo.name}.asc"),
                ("sources.list", f"deb [signed-by=/etc/apt/keyrings/{repo.name}.asc] {url}/ {suite} main"),
                ("upload", f"curl -fsS -u USER:TOKEN -T pkg_1.0_all.deb {url}/upload/main/pkg_1.0_all.deb")]

    def package_of(self, path: str) -> tuple[str, str] | None:
        if path.startswith("pool/") and path.endswith(".deb"):
            parts = path.rpartition("/")[2][:-4].split("_")
            if len(parts) == 3:
                return parts[0], parts[1]
        found = ds.SOURCE_FILE.fullmatch(path.rpartition("/")[2]) if path.startswith("pool/") else None
        if found is not None and found["ext"] == "dsc":
            return found["source"], found["rest"]
        return None

    # ------------------------------------------------------------------ reads
    async def get_path(self, ctx: Ctx) -> web.StreamResponse:
        path = ctx.match["path"]
        if path.startswith(".depot/") or path == ".depot":
            raise FormatError(404, f"{path} not found")        # the signing key and state
        return await self.answer(ctx, validate_path(path))

    async def serve_proxy(self, ctx: Ctx, path: str) -> web.StreamResponse:
        return await debian_proxy.serve(ctx, path)

    async def answer_member(self, ctx: Ctx, path: str) -> web.StreamResponse:
        if ctx.repo.is_group:
            return await self.answer(ctx, path)
        return await super().answer_member(ctx, path)

    async def get_key(self, ctx: Ctx) -> web.StreamResponse:
        return await signing.public_key_response(ctx.hosted, ctx.repo.name)

    async def hosted_document(self, ctx: Ctx, path: str) -> web.StreamResponse | None:
        found = SUITE_PATH.fullmatch(path)
        if found is None:
            return None
        files, _ = await self.suite(ctx, found["suite"], functools.partial(self.hosted_indexes, skip_rendered=True))
        return self.respond_document(ctx, files, found["rest"], path)

    async def group_document(self, ctx: Ctx, path: str) -> web.StreamResponse | None:
        found = SUITE_PATH.fullmatch(path)
        if found is None:
            return None
        files, rendered_before = await self.suite(ctx, found["suite"], self.group_indexes)
        response = self.respond_document(ctx, files, found["rest"], path)
        response.headers["X-Cache"] = "HIT" if rendered_before else "MISS"
        return response

    @staticmethod
    def respond_document(ctx: Ctx, files: dict[str, bytes], name: str, path: str) -> web.StreamResponse:
        body = files.get(name)
        if body is None:
            raise FormatError(404, f"{path} not found in {ctx.repo.name}")
        headers = {"Cache-Control": "no-cache", "ETag": '"' + hashlib.sha256(body).hexdigest() + '"'}
        if ctx.request.headers.get("If-None-Match") == headers["ETag"]:
            return web.Response(status=304, headers=headers)
        return web.Response(body=body, content_type=content_type_of(name), headers=headers)  # HEAD: no body sent

    # ------------------------------------------------------------------ generated suites
    IndexesOf = Callable[[Ctx, str], Awaitable[tuple[dsuite.Indexes, str, float]]]

    async def suite(self, ctx: Ctx, suite: str, indexes_of: "Debian.IndexesOf") -> tuple[dict[str, bytes], bool]:
        """Every generated file of dists/<suite>/ (rendered once per state and process), and
        whether that state was rendered before this request."""
        indexes, state, date = await indexes_of(ctx, suite)
        if indexes.is_empty():
            raise FormatError(404, f"suite {suite} of {ctx.repo.name} holds no packages")

        async def render() -> dict[str, bytes]:
            repo_key = await signing.repo_key(ctx.hosted, ctx.repo.name)
            archs = set(ctx.repo.options.get("architectures", ())) | {a for _, a in indexes.packages}
            origin = ctx.repo.options.get("origin", "depot")
            return await signing.signed(
                lambda: dsuite.render_suite(suite, indexes, archs, date, origin, repo_key.secret))
        before = self._rendered.has(ctx.repo.name, f"{suite} {state}")
        files = await self._rendered.get(ctx.repo.name, f"{suite} {state}", render)
        # apt asks indexes by hash (Acquire-By-Hash): those of earlier states stay answerable
        earlier = self._rendered.earlier(ctx.repo.name, files, lambda name: "/by-hash/" in name)
        return {**earlier, **files}, before

    def __init__(self) -> None:
        self._rendered = Rendered()

    async def hosted_indexes(self, ctx: Ctx, suite: str,
                             skip_rendered: bool = False) -> tuple[dsuite.Indexes, str, float]:
        """Packages and Contents per (component, arch) and Sources per component of a hosted
        suite, its state digest and date; with `skip_rendered`, empty bodies when this state is
        rendered already (a group merging this member needs the bodies)."""
        pool = await ctx.hosted.list("pool/")
        files = [f for f in pool if f.meta.get("suite") == suite]
        stored = {f.path: f.digest for f in pool}
        # the state: the suite's files, and those its .dsc files need (a tarball may be shared by suites)
        needed = sorted(f"{f.path.rpartition('/')[0]}/{name}" for f in files if f.meta.get("kind") == "dsc"
                        for name in f.meta["needs"])
        state = hashlib.sha256("\n".join([*(f"{f.path} {f.digest}" for f in files),
                                          *(f"{path} {stored.get(path)}" for path in needed)]).encode()).hexdigest()
        archs = set(ctx.repo.options.get("architectures", ()))
        debs = [f for f in files if f.meta.get("kind", "deb") == "deb"]
        entries = [(f.meta["component"], f.meta["architecture"], f.meta["stanza"]) for f in debs]
        contents = [(f.meta["component"], f.meta["architecture"], f.meta.get("location", f.meta["package"]),
                     f.meta.get("files", ())) for f in debs]
        sources: dict[str, list[str]] = {}
        for dsc in (f for f in files if f.meta.get("kind") == "dsc"):
            directory = dsc.path.rpartition("/")[0]
            listed = sources.setdefault(dsc.meta["component"], [])
            if all(stored.get(f"{directory}/{name}") == sha for name, sha in dsc.meta["needs"].items()):
                listed.append(dsc.meta["stanza"])
        date = max((f.created for f in files), default=0.0)
        # rendered already: suite() takes the files from self._rendered without awaiting in between
        if skip_rendered and self._rendered.has(ctx.repo.name, f"{suite} {state}"):
            keys = {(f.meta["component"], f.meta["architecture"]) for f in debs}
            return dsuite.Indexes({k: b"" for k in keys}, {c: b"" for c in sources}), state, date

        def build() -> dsuite.Indexes:
            return dsuite.Indexes(di.packages_by_index(entries, archs),
                                  {c: di.packages_text(s) for c, s in sources.items()},
                                  dsuite.contents_by_index(contents, archs))
        return await asyncio.to_thread(build), state, date

    async def group_indexes(self, ctx: Ctx, suite: str, nested: bool = False) -> tuple[dsuite.Indexes, str, float]:
        """Indexes merged over the members (first member wins a package/version/arch; Contents
        from hosted and group members only); when this state is rendered already the merge is
        skipped (empty bodies), unless `nested`."""
        archs = set(ctx.repo.options.get("architectures", ())) | {"all"}

        async def one(member: Ctx) -> tuple[dsuite.Indexes, str, float]:
            if member.repo.is_proxy:
                found, sources, digest = await debian_proxy.packages_of(member, f"dists/{suite}/", archs)
                return dsuite.Indexes(found, sources), digest, time.time()
            if member.repo.is_group:
                return await self.group_indexes(member, suite, nested=True)
            indexes, state, date = await self.hosted_indexes(member, suite)
            if indexes.is_empty():
                raise FormatError(404, f"suite {suite} not in {member.repo.name}")
            return indexes, state, date
        answers = [found for _, found in await ctx.each_member(one, f"dists/{suite}")]
        state = hashlib.sha256(" ".join(s for _, s, _ in answers).encode()).hexdigest()
        date = min(d for _, _, d in answers)
        members = [indexes for indexes, _, _ in answers]
        keys = sorted({k for m in members for k in m.packages})
        source_keys = sorted({k for m in members for k in m.sources})
        contents_keys = sorted({k for m in members for k in m.contents})
        if not nested and self._rendered.has(ctx.repo.name, f"{suite} {state}"):     # no merge needed
            return dsuite.Indexes({k: b"" for k in keys}, {k: b"" for k in source_keys}), state, date

        def merge() -> dsuite.Indexes:
            return dsuite.Indexes(
                {k: di.merge_packages([m.packages.get(k, b"") for m in members]) for k in keys},
                {k: dsuite.merge_sources([m.sources.get(k, b"") for m in members]) for k in source_keys},
                {k: dsuite.merge_contents([m.contents.get(k, b"") for m in members]) for k in contents_keys})
        return await asyncio.to_thread(merge), state, date

    # ------------------------------------------------------------------ writes
    async def upload(self, ctx: Ctx) -> web.StreamResponse:
        """Store a .deb under pool/ with its Packages stanza as metadata."""
        if "path" in ctx.match.groupdict():
            path = validate_path(ctx.match["path"])
            component, filename = path.split("/")[1], path.rpartition("/")[2]
        else:
            component, filename = ctx.match["component"], ctx.match["file"]
            validate_path(f"{component}/{filename}")
            path = None
        if not di.COMPONENT.match(component):
            raise FormatError(400, f"invalid component {component!r}")
        target = ctx.deploy_target()
        suite = self.suite_of(ctx, target)
        staged = await target.stage()
        info, meta = await self.read_upload(target, staged, component, suite)
        path = path or di.pool_path(component, info.source, filename)
        meta["stanza"] = di.stanza(info.control, path, meta.pop("hashes"), staged.size)
        published = await target.record(path, staged, content_type=DEB_TYPE, meta=meta)
        target.hosted.count_publish()
        return web.json_response({"path": path, "package": info.package, "version": info.version,
                                  "architecture": info.architecture, "suite": suite, "component": component,
                                  "sha256": published.file.digest}, status=201 if published.created else 200)

    @staticmethod
    def suite_of(ctx: Ctx, target: Ctx) -> str:
        """The suite an upload goes to: ?suite= (or ?distribution=), else the repository's."""
        suite = ctx.request.query.get("suite") or ctx.request.query.get("distribution")
        suite = suite or target.repo.options.get("suite", "stable")
        if not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", suite):
            raise FormatError(400, f"invalid suite {suite!r}")
        return suite

    async def upload_source(self, ctx: Ctx) -> web.StreamResponse:
        """Store a file of a source package (.dsc, tarball, diff, .buildinfo) or an upload's .changes
        in its pool directory (checks: debian_sources.source_upload_meta). dput's http method
        uploads here: `incoming = /<repo>/upload/<component>`."""
        component, filename = ctx.match["component"], ctx.match["file"]
        validate_path(f"{component}/{filename}")
        found = ds.SOURCE_FILE.fullmatch(filename)
        if not di.COMPONENT.match(component) or found is None:
            raise FormatError(400, f"{component}/{filename} is not a component and a source package file name")
        target = ctx.deploy_target()
        suite = self.suite_of(ctx, target)
        staged = await target.stage()
        data = await target.hosted.read_staged(staged)
        path = di.pool_path(component, found["source"], filename)
        directory = path.rpartition("/")[0]
        stored = {f.path.rpartition("/")[2]: (f.digest, f.meta) for f in await target.hosted.list(directory + "/")}
        try:
            meta = await asyncio.to_thread(ds.source_upload_meta, filename, data, staged.digest, directory, stored)
        except di.BadPackage as exc:
            raise FormatError(400, str(exc)) from None
        meta.update(suite=suite, component=component)
        ctype = "application/octet-stream" if meta["kind"] == "source" else "text/plain"
        published = await target.record(path, staged, content_type=ctype, meta=meta)
        target.hosted.count_publish()
        return web.json_response({"path": path, "suite": suite, "component": component,
                                  "sha256": published.file.digest}, status=201 if published.created else 200)

    @staticmethod
    async def read_upload(ctx: Ctx, staged: Staged, component: str, suite: str) -> tuple[di.DebInfo, dict[str, Any]]:
        data = await ctx.hosted.read_staged(staged)
        try:
            info = await asyncio.to_thread(di.read_deb, data)
        except di.BadPackage as exc:
            raise FormatError(400, str(exc)) from None
        try:
            paths = await asyncio.to_thread(ds.deb_files, data)
        except di.BadPackage as exc:
            raise FormatError(400, str(exc)) from None
        hashes = await asyncio.to_thread(di.file_hashes, data)
        return info, {"suite": suite, "component": component, "architecture": info.architecture,
                      "package": info.package, "version": info.version, "hashes": hashes, "files": paths,
                      "location": ds.location(info.control, info.package)}


FORMAT = Debian
