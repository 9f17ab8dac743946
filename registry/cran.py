"""CRAN-like repositories (install.packages, renv, pak).

Layout: `src/contrib/PACKAGES(.gz|.rds)`, `src/contrib/<pkg>_<ver>.tar.gz`,
`src/contrib/Archive/<pkg>/<pkg>_<ver>.tar.gz`, binary trees under `bin/`.
Proxy (default upstream the CRAN cloud mirror): PACKAGES* are metadata (revalidated),
tarballs immutable and verified against the MD5sum of the PACKAGES that lists them.
Hosted: `PUT src/contrib/<pkg>_<ver>.tar.gz` (DESCRIPTION read from it); older versions move
to `Archive/<pkg>/`; PACKAGES and PACKAGES.gz are generated from what is stored, PACKAGES.rds
is a clean 404 so R falls back. Group: PACKAGES merged (first member wins per package).
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import re
from typing import Any

from aiohttp import web

from depot.cache.api import Cached, FetchSpec, merge_x_cache, respond_bytes

from . import cran_index as ci
from .base import Ctx, FormatError, VersionInfo, standard_repositories
from .repo import RepoConfig
from .tree import TreeFormat, in_thread, rule, validate_path
from .warm_plans import Job, PlanError

TEXT = "text/plain; charset=utf-8"
PINS = ".depot/pins/"          # proxies: the sha256 of the first fetch of each unlisted archive
GZIP = "application/x-gzip"


class Cran(TreeFormat):
    """CRAN: proxy, hosted (PUT a source tarball), group (PACKAGES merged)."""

    name = "cran"
    tree = (
        rule(r"(src|bin/.+)/contrib(/[^/]+)?/PACKAGES", "metadata", content_type=TEXT),
        rule(r"(src|bin/.+)/contrib(/[^/]+)?/PACKAGES\.gz", "metadata", content_type=GZIP),
        rule(r"(src|bin/.+)/contrib(/[^/]+)?/PACKAGES\.rds", "metadata"),
        rule(r"src/contrib/Meta/[^/]+\.rds", "metadata"),
        rule(r"src/contrib/(Archive/[^/]+/)?[^/]+_[^/]+\.tar\.gz", content_type=GZIP),
        rule(r"bin/.+/contrib/[^/]+/[^/]+_[^/]+\.(zip|tgz)"),
    )

    @classmethod
    def default_upstream(cls) -> str:
        return "https://cloud.r-project.org"

    @classmethod
    def default_repositories(cls) -> dict[str, dict[str, Any]]:
        return standard_repositories("cran")

    @classmethod
    def warm_plan(cls, mount: str, filename: str, text: str) -> tuple[list[Any], list[str]] | None:
        """`depot warm <repo> renv.lock`: PACKAGES, then each pinned source tarball (from
        src/contrib when PACKAGES lists that version, else from Archive/)."""
        if not filename.endswith("renv.lock") and '"Packages"' not in text:
            return None
        try:
            packages = json.loads(text).get("Packages") or {}
        except (ValueError, AttributeError) as exc:
            raise PlanError(f"renv.lock cannot be parsed: {exc}") from None
        pins, notes = [], []
        for entry in packages.values():
            if entry.get("Source", "Repository") != "Repository":
                notes.append(f"not from a repository, skipped: {entry.get('Package')} ({entry.get('Source')})")
            elif entry.get("Package") and entry.get("Version"):
                pins.append((str(entry["Package"]), str(entry["Version"])))

        def tarballs(body: bytes, _url: str) -> list[Job]:
            listed = {(s.get("Package"), s.get("Version")) for s in ci.parse_dcf(body.decode("utf-8", "replace"))}
            return [Job(f"{mount}/src/contrib/{pkg}_{ver}.tar.gz" if (pkg, ver) in listed
                        else f"{mount}/src/contrib/Archive/{pkg}/{pkg}_{ver}.tar.gz") for pkg, ver in pins]

        return [Job(f"{mount}/src/contrib/PACKAGES", then=tarballs)], notes

    @classmethod
    def snippets(cls, repo: RepoConfig, url: str, host: str, insecure: bool) -> list[tuple[str, str]]:
        out = [("R (~/.Rprofile)", f'options(repos = c(CRAN = "{url}"))'),
               ("install.packages", f'install.packages("pkg", repos = "{url}")')]
        if not repo.is_proxy:
            out.append(("publish a source package (R CMD build)",
                        f"curl -u USER:TOKEN -T pkg_1.0.tar.gz {url}/src/contrib/pkg_1.0.tar.gz"))
        return out

    # ------------------------------------------------------------------ proxy
    async def serve_proxy(self, ctx: Ctx, path: str) -> web.StreamResponse:
        if path.endswith("/PACKAGES.rds") and ctx.pull.policy_active():
            # the policy cannot filter R's serialized index: R falls back to PACKAGES.gz
            raise FormatError(404, "PACKAGES.rds is not served while a policy filters this repository")
        found = ci.SOURCE.match(path) or ci.BINARY.match(path)
        if found is None:            # indexes
            return await super().serve_proxy(ctx, path)
        entry = self.classify(ctx.repo, path)
        assert entry is not None
        md5 = None
        if not (path.startswith("src/") and found["dir"]):       # Archive/ tarballs: listed by no PACKAGES
            md5 = await self.listed_md5(ctx, path.rsplit("/", 1)[0], found["pkg"], found["ver"])
        spec = self.fetch_spec(ctx, path, entry, expect_md5=md5)
        cached = await (ctx.open_upstream(spec) if md5 is not None else self.open_unlisted(ctx, path, spec))
        return ctx.pull.respond(ctx.request, cached)

    @staticmethod
    async def open_unlisted(ctx: Ctx, path: str, spec: FetchSpec) -> Cached:
        """Open an archive no index lists a digest for (Archive/ tarballs, unlisted binaries).
        It must hold the package its path names, checked before it is stored (a corrupt upstream
        file is never cached nor served). That check is a transform, which the engine does not
        pin: the sha256 of the first fetch is pinned here, so a refetch after eviction gets the
        very same bytes or an error."""
        pin = f"{PINS}{path}"
        pinned = await ctx.hosted.get(pin)
        spec = dataclasses.replace(spec, transform=functools.partial(ci.checked_archive, path))
        if pinned is not None:
            spec = dataclasses.replace(spec, expect_sha256=(await ctx.hosted.read(pinned)).decode().strip())
        cached = await ctx.open_upstream(spec)
        if pinned is None:
            if cached.entry is None:           # fetched now: wait until it is checked and stored
                await ctx.pull.read(cached)
                cached = dataclasses.replace(await ctx.open_upstream(spec), status=cached.status)
            assert cached.entry is not None
            digest = cached.entry.digest.encode()
            await ctx.hosted.update_document(pin, lambda old: None if old else digest, content_type="text/plain")
        return cached

    async def listed_md5(self, ctx: Ctx, directory: str, pkg: str, ver: str) -> str | None:
        """The MD5sum the directory's PACKAGES promises for pkg_ver (None: not listed)."""
        path = f"{directory}/PACKAGES"
        entry = self.classify(ctx.repo, path)
        assert entry is not None
        try:
            _cached, body = await ctx.fetch_upstream(self.fetch_spec(ctx, path, entry))
        except FormatError as exc:
            if exc.status == 404:
                return None
            raise
        stanzas = await in_thread(ci.parse_dcf, body.decode("utf-8", "replace"))
        for stanza in stanzas:
            if stanza.get("Package") == pkg and stanza.get("Version") == ver:
                md5 = stanza.get("MD5sum", "")
                return md5 if re.fullmatch(r"[0-9a-fA-F]{32}", md5) else None
        return None

    # ------------------------------------------------------------------ hosted
    async def hosted_packages(self, ctx: Ctx, directory: str = "src/contrib") -> bytes:
        """PACKAGES of a directory of the hosted repository: the highest version of each package."""
        prefix = directory + "/"
        files = await ctx.hosted.list(prefix)
        current = [f for f in files if "/" not in f.path[len(prefix):] and isinstance(f.meta.get("cran"), dict)]
        return ci.render(ci.latest(f.meta["cran"] for f in current))

    async def hosted_document(self, ctx: Ctx, path: str) -> web.StreamResponse | None:
        found = ci.INDEX.match(path)
        if found is None:
            if path.startswith("src/contrib/Meta/"):
                raise FormatError(404, f"{path} is not generated by a hosted repository")
            return None
        if found["ext"] == ".rds":
            raise FormatError(404, f"{path} not found in {ctx.repo.name} (R falls back to PACKAGES.gz)")
        body = await self.hosted_packages(ctx, found["dir"])
        ctx.pull.count("hosted")
        return _index_response(ctx, body, found["ext"])

    async def put_path(self, ctx: Ctx) -> web.StreamResponse:
        path = validate_path(ctx.match["path"])
        found = ci.SOURCE.match(path)
        if found is None or found["dir"]:
            if ci.BINARY.match(path):
                return await self.put_binary(ctx, path)
            raise FormatError(400, "upload source packages as PUT src/contrib/<package>_<version>.tar.gz")
        target = ctx.deploy_target()
        staged = await target.stage()
        data = await target.hosted.read_staged(staged)
        try:
            desc = await in_thread(ci.read_description, path, data)
        except ci.DescriptionError as exc:
            raise FormatError(400, f"invalid R source package: {exc}") from None
        md5 = await in_thread(lambda: hashlib.md5(data, usedforsecurity=False).hexdigest())
        archived = f"src/contrib/Archive/{found['pkg']}/{found['file']}"
        before = await target.hosted.get(archived)
        if before is not None:
            if before.digest != staged.digest:
                raise FormatError(409, f"{found['file']} was published before with other content")
            return web.json_response({"path": archived, "created": False})
        published = await target.record(path, staged, content_type=GZIP, overwrite=False,
                                        meta={"cran": ci.stanza(desc, md5)})
        await self.archive_older(target, found["pkg"])
        target.hosted.count_publish()
        return web.json_response({"path": path, "sha256": staged.digest, "created": published.created},
                                 status=201 if published.created else 200)

    async def put_binary(self, ctx: Ctx, path: str) -> web.StreamResponse:
        """A binary package under bin/: DESCRIPTION read from it; its directory's PACKAGES lists
        the highest version of each package (binaries are not moved to an Archive)."""
        target = ctx.deploy_target()
        staged = await target.stage()
        data = await target.hosted.read_staged(staged)
        try:
            desc = await in_thread(ci.read_description, path, data)
        except ci.DescriptionError as exc:
            raise FormatError(400, f"invalid R binary package: {exc}") from None
        md5 = await in_thread(lambda: hashlib.md5(data, usedforsecurity=False).hexdigest())
        published = await target.record(path, staged, content_type="application/octet-stream", overwrite=False,
                                        meta={"cran": ci.stanza(desc, md5)})
        target.hosted.count_publish()
        return web.json_response({"path": path, "sha256": staged.digest, "created": published.created},
                                 status=201 if published.created else 200)

    async def archive_older(self, ctx: Ctx, pkg: str) -> None:
        """Every version of `pkg` but the highest moves to src/contrib/Archive/<pkg>/."""
        files = [f for f in await ctx.hosted.list(f"src/contrib/{pkg}_")
                 if (m := ci.SOURCE.match(f.path)) and m["pkg"] == pkg and not m["dir"]]
        if len(files) < 2:
            return
        files.sort(key=lambda f: ci.version_key(ci.SOURCE.match(f.path)["ver"]))  # type: ignore[index]
        for old in files[:-1]:
            name = old.path.rsplit("/", 1)[-1]
            await ctx.hosted.record(f"src/contrib/Archive/{pkg}/{name}", old.digest, old.size,
                                    content_type=GZIP, meta=old.meta, overwrite=False)
            await ctx.hosted.delete(old.path)

    async def delete_path(self, ctx: Ctx) -> web.StreamResponse:
        path = validate_path(ctx.match["path"])
        if ci.SOURCE.match(path) is None and ci.BINARY.match(path) is None:
            raise FormatError(404, "delete packages as DELETE src/contrib/[Archive/<pkg>/]<file> or bin/…/<file>")
        target = ctx.deploy_target("delete")
        if not await target.hosted.delete(path, tombstone=True):
            raise FormatError(404, f"{path} not found in {target.repo.name}")
        return web.Response(status=204)

    # ------------------------------------------------------------------ group
    async def member_packages(self, member: Ctx, directory: str) -> tuple[bytes, str]:
        if member.repo.is_hosted:
            return await self.hosted_packages(member, directory), "HIT"
        path = f"{directory}/PACKAGES"
        entry = self.classify(member.repo, path)
        assert entry is not None
        cached, body = await member.fetch_upstream(self.fetch_spec(member, path, entry))
        if member.pull.policy_active():        # the supply-chain policy applies to merged answers too
            hidden = member.pull.hidden(await in_thread(self.metadata_versions, path, body) or [])
            if hidden:
                body = await in_thread(self.filter_metadata, path, body, frozenset(hidden))
        return body, cached.status

    async def group_document(self, ctx: Ctx, path: str) -> web.StreamResponse | None:
        found = ci.INDEX.match(path)
        if found is None:
            return None
        if found["ext"] == ".rds":
            raise FormatError(404, f"{path}: a group merges PACKAGES; R falls back to PACKAGES.gz")
        answers = await ctx.each_member(lambda m: self.member_packages(m, found["dir"]), path)
        body = await in_thread(ci.merge, [b for _, (b, _) in answers])
        return _index_response(ctx, body, found["ext"], merge_x_cache(xc for _, (_, xc) in answers))

    # ------------------------------------------------------------------ policy and admin hooks
    def package_of(self, path: str) -> tuple[str, str] | None:
        found = ci.SOURCE.match(path) or ci.BINARY.match(path)
        return (found["pkg"], found["ver"]) if found else None

    def metadata_versions(self, path: str, body: bytes) -> list[VersionInfo] | None:
        found = ci.INDEX.match(path)
        if found is None or found["ext"] == ".rds":
            return None
        try:
            text = (ci.gzip.decompress(body) if found["ext"] == ".gz" else body).decode("utf-8", "replace")
            return [VersionInfo(s["Package"], s["Version"]) for s in ci.parse_dcf(text)
                    if "Package" in s and "Version" in s]
        except (ValueError, OSError, ci.DescriptionError):
            return []

    def filter_metadata(self, path: str, body: bytes, hidden: frozenset[tuple[str, str]]) -> bytes:
        gzipped = path.endswith(".gz")
        text = (ci.gzip.decompress(body) if gzipped else body).decode("utf-8", "replace")
        kept = ci.render(s for s in ci.parse_dcf(text) if (s.get("Package"), s.get("Version")) not in hidden)
        return ci.gz(kept) if gzipped else kept


def _index_response(ctx: Ctx, body: bytes, ext: str | None, x_cache: str | None = None) -> web.StreamResponse:
    headers = {"Cache-Control": "no-cache", **({"X-Cache": x_cache} if x_cache else {})}
    if ext == ".gz":
        packed = ctx.documents.get_or_render(("cran-gz", hashlib.sha256(body).hexdigest()), lambda: ci.gz(body))
        return respond_bytes(ctx.request, packed, GZIP, headers)
    return respond_bytes(ctx.request, body, TEXT, headers)


FORMAT = Cran
