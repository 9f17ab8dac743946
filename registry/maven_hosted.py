"""Hosted Maven/Ivy repositories: uploads checked against their path, releases immutable,
checksums verified, and maven-metadata.xml regenerated from what is stored.

Every maven-metadata.xml is depot's own: a client's PUT of one is parsed (400 when malformed or
naming other coordinates) and answered by regenerating the document from the stored files with
`ctx.hosted.update_document` (compare-and-swap), so concurrent deploys never lose a version.
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
from typing import Any, Awaitable, Callable

from aiohttp import web

from .base import Ctx, FormatError
from .maven_meta import (MAX_XML, Metadata, Plugin, SnapshotVersion, ivy_coordinates, now_stamp,
                         parse_metadata, pom_coordinates, render_metadata, with_versions)
from .maven_paths import (HEX_LENGTH, METADATA, ROOT_FILES, MavenFile, ivy_file, maven_file, parse_checksum,
                          require_maven_file, split_checksum)
from .maven_version import is_snapshot
from .tree import content_type_for

log = logging.getLogger("depot.maven")

XML = "application/xml"
SUM_HEADERS = {"sha1": ("X-Checksum-Sha1", "X-Checksum-SHA1"), "md5": ("X-Checksum-Md5", "X-Checksum-MD5"),
               "sha256": ("X-Checksum-Sha256", "X-Checksum-SHA256")}


async def checksum_of_blob(ctx: Ctx, digest: str, algo: str, load: Callable[[], Awaitable[bytes]]) -> str:
    """The hex `algo` digest of a stored blob (sha256 is its name), remembered by blob digest."""
    if algo == "sha256":
        return digest
    key = ("maven-sum", digest, algo)
    found = ctx.documents.get(key)
    if found is None:
        data = await load()
        found = (await asyncio.to_thread(lambda: hashlib.new(algo, data).hexdigest())).encode()
        ctx.documents.put(key, found)
    return found.decode()


def ok(path: str, status: int = 201, **extra: Any) -> web.Response:
    return web.json_response({"path": path, **extra}, status=status)


class HostedWrites:
    """PUT handling for one format instance (layout chosen per repository)."""

    async def put(self, ctx: Ctx, path: str, layout: str) -> web.StreamResponse:
        split = split_checksum(path)
        if split is not None:
            return await self.put_checksum(ctx, *split, layout=layout)
        if layout == "maven" and (path == METADATA or path.endswith("/" + METADATA)):
            return await self.put_metadata(ctx, path)
        if layout == "maven" and path in ROOT_FILES:
            return await self.store(ctx, path, snapshot=True)
        if layout == "ivy":
            found = ivy_file(path)
            return await self.store(ctx, path, snapshot="SNAPSHOT" in found.revision.upper())
        coords = require_maven_file(path)
        return await self.store(ctx, path, snapshot=is_snapshot(coords.version), coords=coords)

    async def store(self, ctx: Ctx, path: str, snapshot: bool, coords: MavenFile | None = None) -> web.StreamResponse:
        """Stage, validate, record (releases only once), then regenerate the metadata."""
        opts = ctx.repo.options
        overwrite = snapshot or bool(opts.get("allow_redeploy")) or ctx.repo.allow_overwrite
        if not overwrite and await ctx.hosted.get(path) is not None:
            raise FormatError(400, f"{path} is a release file that is already deployed; releases are immutable "
                                   f"in {ctx.repo.name} (options: allow_redeploy)")
        staged = await ctx.stage()
        await self.check_upload(ctx, path, staged, coords)
        ctype = XML if path.endswith((".pom", ".xml")) else content_type_for(path)
        try:
            published = await ctx.record(path, staged, content_type=ctype, overwrite=overwrite)
        except FormatError as exc:
            if exc.status == 409:
                raise FormatError(400, f"{path} is already deployed with other content; "
                                  "releases are immutable") from None
            raise
        if not overwrite and not published.created:
            raise FormatError(400, f"{path} is a release file that is already deployed")
        ctx.hosted.count_publish()
        if coords is not None:
            await self.regenerate(ctx, coords)
        return ok(path, sha256=published.file.digest, size=published.file.size)

    async def check_upload(self, ctx: Ctx, path: str, staged: Any, coords: MavenFile | None) -> None:
        """Checksum headers the client sent, and the coordinates inside a POM or ivy.xml."""
        wanted = {algo: ctx.request.headers.get(names[0]) or ctx.request.headers.get(names[1])
                  for algo, names in SUM_HEADERS.items()}
        wanted = {k: v.strip().lower() for k, v in wanted.items() if v}
        is_pom = coords is not None and coords.extension == "pom"
        is_ivy = coords is None and path.rsplit("/", 1)[-1].startswith("ivy") and path.endswith(".xml")
        if not wanted and not is_pom and not is_ivy:
            return
        if staged.size > MAX_XML and (is_pom or is_ivy):
            raise FormatError(400, f"{path} is larger than {MAX_XML} bytes")
        body = await ctx.hosted.read_staged(staged)
        for algo, value in wanted.items():
            actual = hashlib.new(algo, body).hexdigest()
            if value != actual:
                raise FormatError(400, f"checksum mismatch for {path}: {algo} is {actual}, the client said {value}")
        if is_pom:
            assert coords is not None
            found = pom_coordinates(body)
            expected = (coords.group, coords.artifact, coords.version)
        elif is_ivy:
            parsed = ivy_file(path)
            found = ivy_coordinates(body)
            expected = (parsed.organisation, parsed.module, parsed.revision)
        else:
            return
        for name, declared, actual in zip(("groupId", "artifactId", "version"), found, expected, strict=False):
            if "${" in declared:          # a property the client did not resolve; nothing to compare
                continue
            if declared != actual and not (is_ivy and name == "artifactId" and actual.startswith(declared + "_")):
                raise FormatError(400, f"{path}: the file declares {name} {declared!r} but its path says {actual!r}")

    async def put_checksum(self, ctx: Ctx, base: str, algo: str, layout: str) -> web.StreamResponse:
        """A client's checksum sidecar: checked against the stored file, never stored (depot
        computes sidecars from the stored blob)."""
        body = await ctx.read_body(limit=1024)
        claimed = parse_checksum(body, algo)
        if claimed is None:
            raise FormatError(400, f"{base}.{algo}: expected {HEX_LENGTH[algo]} hex digits")
        if layout == "maven" and base.rsplit("/", 1)[-1] == METADATA:
            return ok(base + "." + algo, status=201)      # depot's metadata replaced the client's copy
        found = await ctx.hosted.get(base)
        if found is None:
            raise FormatError(400, f"{base}.{algo}: upload {base} before its checksum")
        actual = await checksum_of_blob(ctx, found.digest, algo, lambda: ctx.hosted.read(found))
        if actual != claimed:
            raise FormatError(400, f"checksum mismatch for {base}: {algo} is {actual}, the client uploaded {claimed}")
        if layout == "ivy":          # Ivy's sidecars are its verified uploads (see Maven.checksum)
            await ctx.publish(f"{base}.{algo}", actual.encode(), content_type="text/plain", overwrite=True)
        return ok(base + "." + algo, status=201)

    # ------------------------------------------------------------------ maven-metadata.xml
    async def put_metadata(self, ctx: Ctx, path: str) -> web.StreamResponse:
        """Check the client's document against its path, then regenerate depot's own."""
        doc = parse_metadata(await ctx.read_body(limit=MAX_XML))
        dirs = path.split("/")[:-1]
        if doc.plugins and not doc.artifact_id:
            self._expect(path, "groupId", doc.group_id, ".".join(dirs))
            await self.merge_plugins(ctx, path, doc.plugins)
        elif dirs and is_snapshot(dirs[-1]) and len(dirs) >= 3:
            self._expect(path, "version", doc.version, dirs[-1])
            self._expect(path, "artifactId", doc.artifact_id, dirs[-2])
            self._expect(path, "groupId", doc.group_id, ".".join(dirs[:-2]))
            await self.prune_snapshots(ctx, "/".join(dirs[:-2]), dirs[-2], dirs[-1])
            await self.regenerate_snapshot(ctx, ".".join(dirs[:-2]), dirs[-2], dirs[-1])
        elif len(dirs) >= 2:
            self._expect(path, "artifactId", doc.artifact_id, dirs[-1])
            self._expect(path, "groupId", doc.group_id, ".".join(dirs[:-1]))
            await self.regenerate_artifact(ctx, ".".join(dirs[:-1]), dirs[-1])
        else:
            raise FormatError(400, f"{path}: maven-metadata.xml belongs in a group, artifact or version directory")
        return ok(path)

    @staticmethod
    def _expect(path: str, name: str, declared: str, actual: str) -> None:
        if declared and declared != actual:
            raise FormatError(400, f"{path}: the document declares {name} {declared!r} but its path says {actual!r}")

    async def regenerate(self, ctx: Ctx, coords: MavenFile) -> None:
        """The artifact-level (and a SNAPSHOT's version-level) metadata after a file changed."""
        await self.regenerate_artifact(ctx, coords.group, coords.artifact)
        if is_snapshot(coords.version):
            await self.regenerate_snapshot(ctx, coords.group, coords.artifact, coords.version)

    async def regenerate_artifact(self, ctx: Ctx, group: str, artifact: str) -> None:
        """`<g>/<a>/maven-metadata.xml` listing every version that has files (compare-and-swap)."""
        prefix = f"{group.replace('.', '/')}/{artifact}/"

        async def mutate(old: bytes | None) -> bytes | None:
            versions = set()
            for stored in await ctx.hosted.list(prefix):
                rest = stored.path[len(prefix):].split("/")
                if len(rest) == 2 and rest[1] != METADATA and maven_file(stored.path) is not None:
                    versions.add(rest[0])
            previous = _parsed(old)
            if previous is not None and set(previous.versions) == versions:
                return None
            if previous is None and not versions:
                return None
            meta = with_versions(Metadata(group_id=group, artifact_id=artifact), versions)
            meta.last_updated = now_stamp()
            return render_metadata(meta)
        await ctx.hosted.update_document(prefix + METADATA, mutate, content_type=XML)

    async def regenerate_snapshot(self, ctx: Ctx, group: str, artifact: str, version: str) -> None:
        """`<g>/<a>/<v>-SNAPSHOT/maven-metadata.xml`: the newest build per (classifier, extension)."""
        prefix = f"{group.replace('.', '/')}/{artifact}/{version}/"

        async def mutate(old: bytes | None) -> bytes | None:
            builds = [f for f in (maven_file(s.path) for s in await ctx.hosted.list(prefix)) if f and f.timestamp]
            newest: dict[tuple[str, str], MavenFile] = {}
            for build in builds:
                key = (build.classifier, build.extension)
                if key not in newest or build.build > newest[key].build:
                    newest[key] = build
            meta = Metadata(group_id=group, artifact_id=artifact, version=version)
            if builds:
                top = max(builds, key=lambda b: b.build)
                meta.snapshot = (top.timestamp, top.build)
                meta.snapshot_versions = [SnapshotVersion(b.classifier, b.extension, b.value,
                                                          b.timestamp.replace(".", ""))
                                          for _, b in sorted(newest.items())]
                meta.last_updated = max(sv.updated for sv in meta.snapshot_versions)
            else:
                meta.last_updated = now_stamp()
            rendered = render_metadata(meta)
            return None if old == rendered or (old is None and not builds) else rendered
        await ctx.hosted.update_document(prefix + METADATA, mutate, content_type=XML)

    async def prune_snapshots(self, ctx: Ctx, group_path: str, artifact: str, version: str) -> None:
        """Snapshot retention: keep the newest `snapshot_keep` builds of a SNAPSHOT version."""
        keep = int(ctx.repo.options.get("snapshot_keep") or 0)
        if keep <= 0:
            return
        files = [(s.path, maven_file(s.path)) for s in await ctx.hosted.list(f"{group_path}/{artifact}/{version}/")]
        numbers = sorted({f.build for _, f in files if f is not None and f.timestamp})
        old = set(numbers[:-keep])
        for path, parsed in files:
            if parsed is not None and parsed.timestamp and parsed.build in old:
                await ctx.hosted.delete(path)
                log.info("snapshot retention: deleted %s from %s", path, ctx.repo.name)

    async def merge_plugins(self, ctx: Ctx, path: str, plugins: list[Plugin]) -> None:
        """Group-level plugin metadata: the client's prefixes added to the stored ones."""
        group = path.rsplit("/", 1)[0].replace("/", ".")

        def mutate(old: bytes | None) -> bytes | None:
            previous = _parsed(old) or Metadata(group_id=group)
            known = {p.prefix for p in previous.plugins}
            added = [p for p in plugins if p.prefix and p.prefix not in known]
            if not added:
                return None if old is not None else render_metadata(previous)
            previous.plugins = previous.plugins + added
            return render_metadata(previous)
        await ctx.hosted.update_document(path, mutate, content_type=XML)


def _parsed(body: bytes | None) -> Metadata | None:
    if body is None:
        return None
    try:
        return parse_metadata(body)
    except FormatError:
        return None
