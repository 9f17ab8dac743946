"""Maven repositories (mvn, Gradle, Ivy, sbt): hosted, proxy and group; Ivy layout as an option.

* Layout `<group path>/<artifactId>/<version>/<file>` (options `layout: maven`, the default) or
  `<organisation>/<module>/<revision>/<file>` (`layout: ivy`, sbt's Ivy-style repositories).
* Checksums `.md5 .sha1 .sha256 .sha512` of every file are computed from what depot serves (the
  stored blob, a proxied copy, a group's merged metadata); uploaded ones are checked, not stored
  (except in a hosted Ivy layout: Ivy refuses to upload a checksum that exists already, so there
  the sidecars are the client's uploads, verified against the file).
* hosted: see maven_hosted (releases immutable unless `allow_redeploy`, SNAPSHOT builds,
  maven-metadata.xml regenerated from what is stored, `snapshot_keep` retention).
* proxy: maven-metadata.xml and everything under a `-SNAPSHOT/` directory is metadata
  (revalidated after metadata_ttl); release files are immutable and verified against the
  upstream's `.sha1` (else `.sha256`) when it has one; 404s negative-cached.
* group: maven-metadata.xml merged across members (maven_meta.merge_metadata); files: first member.
"""
from __future__ import annotations

import base64
import hashlib
import logging
import re
from typing import Any

from aiohttp import web

from depot.cache.api import Cached, Kind, NotFound, UpstreamFailed, merge_x_cache

from .base import Ctx, FormatError, VersionInfo, standard_repositories
from .maven_hosted import XML, HostedWrites, checksum_of_blob
from .maven_meta import merge_metadata, parse_metadata, render_metadata, with_versions
from .maven_paths import CHECKSUMS, is_metadata, maven_file, package_of_path, parse_checksum, split_checksum
from .maven_version import is_snapshot
from .options import Option, boolean, integer
from .repo import RepoConfig
from .tree import TreeFormat, TreeRule, rule, validate_path
from .warm_plans import Job

log = logging.getLogger("depot.maven")

CENTRAL = "https://repo1.maven.org/maven2/"
LAYOUTS = ("maven", "ivy")
SCOPES = frozenset({"compile", "runtime", "test", "provided", "system", "import"})
METADATA_RULE = rule(r".*", "metadata", content_type=XML)
SNAPSHOT_RULE = rule(r".*", "metadata")
RELEASE_RULE = rule(r".*")


def layout(value: Any) -> str:
    """maven | ivy."""
    if value not in LAYOUTS:
        raise ValueError(f"must be one of {', '.join(LAYOUTS)}, not {value!r}")
    return str(value)


TEXT = "text/plain; charset=utf-8"


def _text(body: str, x_cache: str | None = None) -> web.Response:
    headers = {"X-Cache": x_cache} if x_cache else {}
    return web.Response(text=body, content_type="text/plain", headers=headers)


class Maven(TreeFormat):
    """Maven-layout (and Ivy-layout) repositories."""

    name = "maven"
    options = {
        "layout": Option(layout, "maven", "maven (groupId as directories) or ivy (organisation/module/revision)"),
        "allow_redeploy": Option(boolean, False, "hosted: a release file may be deployed again with new bytes"),
        "snapshot_keep": Option(integer(0), 0, "hosted: timestamped builds kept per SNAPSHOT version (0: all)"),
    }
    writes = HostedWrites()

    # ------------------------------------------------------------------ declarations
    @classmethod
    def default_upstream(cls) -> str:
        return CENTRAL

    @classmethod
    def default_repositories(cls) -> dict[str, dict[str, Any]]:
        return standard_repositories("maven")

    @staticmethod
    def layout_of(repo: RepoConfig) -> str:
        return str(repo.options.get("layout") or "maven")

    def classify(self, repo: RepoConfig, path: str) -> TreeRule:
        if self.layout_of(repo) == "maven" and is_metadata(path):
            return METADATA_RULE
        parts = path.split("/")
        if any(is_snapshot(p) for p in parts[:-1]) or (self.layout_of(repo) == "ivy" and len(parts) > 2
                                                       and "SNAPSHOT" in parts[2].upper()):
            return SNAPSHOT_RULE
        return RELEASE_RULE

    # ------------------------------------------------------------------ reads
    async def get_path(self, ctx: Ctx) -> web.StreamResponse:
        path = validate_path(ctx.match["path"])
        split = split_checksum(path)
        if split is not None and ctx.repo.is_proxy:
            cached, value = await self.proxy_checksum(ctx, *split)
            return ctx.pull.respond_derived(ctx.request, cached, value.encode(), TEXT)
        if split is not None:
            value, x_cache = await self.checksum(ctx, *split)
            return _text(value, x_cache=None if ctx.repo.is_hosted else x_cache)
        return await self.answer(ctx, path)

    async def serve_proxy(self, ctx: Ctx, path: str) -> web.StreamResponse:
        return ctx.pull.respond(ctx.request, await self.open_proxy(ctx, path))

    async def open_proxy(self, ctx: Ctx, path: str) -> Cached:
        """The proxied file; a release not yet stored is verified against the upstream's sidecar."""
        entry = self.classify(ctx.repo, path)
        fields: dict[str, Any] = {}
        if entry.kind is Kind.IMMUTABLE and await ctx.pull.peek(path) is None:
            integrity = await self.upstream_integrity(ctx, path)
            if integrity:
                fields["expect_integrity"] = integrity
        return await ctx.open_upstream(self.fetch_spec(ctx, path, entry, **fields))

    async def upstream_integrity(self, ctx: Ctx, path: str) -> str | None:
        """SRI for `path` from the upstream's .sha1 (else .sha256); None when it has neither."""
        for algo in ("sha1", "sha256"):
            sidecar = f"{path}.{algo}"
            spec = ctx.pull.spec(sidecar, self.upstream_url(ctx.repo, sidecar), Kind.IMMUTABLE)
            try:
                _, body = await ctx.pull.open_read(spec)
            except NotFound:
                continue
            except UpstreamFailed:
                return None
            value = parse_checksum(body, algo)
            if value is None:
                log.warning("%s: malformed upstream checksum %s ignored", ctx.repo.name, sidecar)
                return None
            return f"{algo}-{base64.b64encode(bytes.fromhex(value)).decode()}"
        return None

    async def group_document(self, ctx: Ctx, path: str) -> web.StreamResponse | None:
        if self.layout_of(ctx.repo) != "maven" or not is_metadata(path):
            return None
        body, x_cache = await self.merged_metadata(ctx, path)
        return web.Response(body=body, content_type=XML, headers={"X-Cache": x_cache} if x_cache else {})

    async def merged_metadata(self, ctx: Ctx, path: str) -> tuple[bytes, str | None]:
        """A group's maven-metadata.xml: the members' documents merged (malformed ones skipped)."""
        answers = await ctx.each_member(lambda member: self.body_of(member, path), path)
        docs = []
        for member, (body, _) in answers:
            try:
                docs.append(parse_metadata(body))
            except FormatError as exc:
                log.warning("%s: %s of member %s skipped: %s", ctx.repo.name, path, member.repo.name, exc.message)
        if not docs:
            raise FormatError(502, f"no member of {ctx.repo.name} has a well-formed {path}")
        return render_metadata(merge_metadata(docs)), merge_x_cache(x for _, (_, x) in answers)

    async def body_of(self, ctx: Ctx, path: str) -> tuple[bytes, str | None]:
        """The bytes depot answers for `path` in any repository type, with their X-Cache."""
        if ctx.repo.is_hosted:
            found = await ctx.hosted.get(path)
            if found is None:
                raise FormatError(404, f"{path} not found in {ctx.repo.name}")
            return await ctx.hosted.read(found), "HIT"
        if ctx.repo.is_proxy:
            cached = await self.open_proxy(ctx, path)
            ctx.pull.count(cached.status.lower())
            return await ctx.pull.read(cached), cached.status
        if self.layout_of(ctx.repo) == "maven" and is_metadata(path):
            return await self.merged_metadata(ctx, path)
        return await ctx.first_member(lambda member: self.body_of(member, path), path)

    async def checksum(self, ctx: Ctx, path: str, algo: str) -> tuple[str, str | None]:
        """The `algo` checksum of what depot serves at `path`, computed (never trusted)."""
        if ctx.repo.is_hosted and self.layout_of(ctx.repo) == "ivy":
            # Ivy asks whether a checksum exists before uploading it and refuses to overwrite one:
            # hosted Ivy sidecars are the client's uploads, verified against the file on upload
            stored = await ctx.hosted.get(f"{path}.{algo}")
            if stored is None:
                raise FormatError(404, f"{path}.{algo} not found in {ctx.repo.name}")
            return (await ctx.hosted.read(stored)).decode(), "HIT"
        if ctx.repo.is_hosted:
            found = await ctx.hosted.get(path)
            if found is None:
                raise FormatError(404, f"{path} not found in {ctx.repo.name}")
            return await checksum_of_blob(ctx, found.digest, algo, lambda: ctx.hosted.read(found)), "HIT"
        if ctx.repo.is_proxy:
            cached, value = await self.proxy_checksum(ctx, path, algo)
            return value, cached.status
        if self.layout_of(ctx.repo) == "maven" and is_metadata(path):
            body, x_cache = await self.merged_metadata(ctx, path)
            return hashlib.new(algo, body).hexdigest(), x_cache
        return await ctx.first_member(lambda member: self.checksum(member, path, algo), path)

    async def proxy_checksum(self, ctx: Ctx, path: str, algo: str) -> tuple[Cached, str]:
        """The proxied file (opened and counted) and the `algo` checksum of its bytes."""
        cached = await self.open_proxy(ctx, path)
        ctx.pull.count(cached.status.lower())
        if cached.entry is not None:
            return cached, await checksum_of_blob(ctx, cached.entry.digest, algo, lambda: ctx.pull.read(cached))
        return cached, hashlib.new(algo, await ctx.pull.read(cached)).hexdigest()

    # ------------------------------------------------------------------ writes
    async def put_path(self, ctx: Ctx) -> web.StreamResponse:
        path = validate_path(ctx.match["path"])
        target = ctx.deploy_target()
        return await self.writes.put(target, path, self.layout_of(target.repo))

    async def after_delete(self, ctx: Ctx, path: str) -> None:
        if self.layout_of(ctx.repo) == "ivy":          # the uploaded sidecars go with their file
            for algo in CHECKSUMS:
                await ctx.hosted.delete(f"{path}.{algo}")
            return
        found = maven_file(path)
        if self.layout_of(ctx.repo) == "maven" and found is not None:
            await self.writes.regenerate(ctx, found)

    def error(self, ctx: Ctx | None, status: int, message: str, code: str | None = None) -> web.Response:
        """Plain text, and the message as the HTTP reason phrase too: mvn, Gradle and Ivy print the
        status line of a failed transfer, not its body (what Nexus and Artifactory do as well)."""
        reason = re.sub(r"[^\x20-\x7e]", " ", message.splitlines()[0] if message else "")[:200].strip()
        return web.Response(status=status, reason=reason or None, text=message.rstrip("\n") + "\n",
                            headers={"Cache-Control": "no-store"})

    # ------------------------------------------------------------------ policy, admin, warm, UI
    def package_of(self, path: str) -> tuple[str, str] | None:
        return package_of_path(path)

    def metadata_versions(self, path: str, body: bytes) -> list[VersionInfo] | None:
        """Versions of an artifact-level maven-metadata.xml. Maven metadata has no per-version
        times: the newest version is given the document's lastUpdated, the others None."""
        parts = path.split("/")
        if not is_metadata(path) or (len(parts) > 1 and is_snapshot(parts[-2])):
            return None                    # SNAPSHOT version-level documents list builds, not versions
        try:
            meta = parse_metadata(body)
        except FormatError:
            return None
        if not meta.artifact_id or not meta.versions:
            return None
        package = f"{meta.group_id}:{meta.artifact_id}"
        stamp = _epoch(meta.last_updated)
        newest = meta.versions[-1]
        return [VersionInfo(package, v, stamp if v == newest else None) for v in meta.versions]

    def filter_metadata(self, path: str, body: bytes, hidden: frozenset[tuple[str, str]]) -> bytes:
        meta = parse_metadata(body)
        package = f"{meta.group_id}:{meta.artifact_id}"
        kept = [v for v in meta.versions if (package, v) not in hidden]
        if kept == meta.versions:
            return body
        filtered = with_versions(meta, kept)
        return render_metadata(filtered)

    @classmethod
    def warm_plan(cls, mount: str, filename: str, text: str) -> tuple[list[Any], list[str]] | None:
        """One coordinate per line: `group:artifact[:packaging[:classifier]]:version`, or lines of
        `mvn dependency:list` (`group:artifact:type[:classifier]:version:scope`). Fetches the POM
        and the artifact (with its .sha1) of each; SNAPSHOTs are skipped."""
        jobs: list[Job] = []
        notes: list[str] = []
        for raw in text.splitlines():
            line = re.sub(r"^\[\w+\]\s*", "", raw.split("#", 1)[0]).strip().split(" ", 1)[0]
            if not line or line.count(":") < 2:
                continue
            coords = parse_coordinate(line)
            if coords is None:
                notes.append(f"not a coordinate, skipped: {line}")
                continue
            group, artifact, packaging, classifier, version = coords
            if is_snapshot(version):
                notes.append(f"SNAPSHOT skipped: {line}")
                continue
            base = f"{mount}/{group.replace('.', '/')}/{artifact}/{version}/{artifact}-{version}"
            files = [f"{base}.pom"]
            if packaging != "pom" or classifier:
                files.append(f"{base}{'-' + classifier if classifier else ''}.{_extension(packaging)}")
            jobs.extend(Job(url) for f in files for url in (f, f + ".sha1"))
        return jobs, notes

    @classmethod
    def snippets(cls, repo: RepoConfig, url: str, host: str, insecure: bool) -> list[tuple[str, str]]:
        if cls.layout_of(repo) == "ivy":
            return [("ivysettings.xml", f'<ivysettings><settings defaultResolver="depot"/><resolvers>\n'
                     f'  <url name="depot" m2compatible="false">\n'
                     f'    <ivy pattern="{url}/[organisation]/[module]/[revision]/ivy-[revision].xml"/>\n'
                     f'    <artifact pattern="{url}/[organisation]/[module]/[revision]/[type]s/'
                     f'[artifact]-[revision].[ext]"/>\n  </url>\n</resolvers></ivysettings>\n')]
        settings = ("<settings>\n  <mirrors>\n    <mirror>\n      <id>depot</id>\n      <mirrorOf>*</mirrorOf>\n"
                    f"      <url>{url}/</url>\n    </mirror>\n  </mirrors>\n  <servers>\n    <server>\n"
                    "      <id>depot</id>\n      <username>USER</username>\n      <password>TOKEN</password>\n"
                    "    </server>\n  </servers>\n</settings>\n")
        deploy = ("<distributionManagement>\n  <repository><id>depot</id>"
                  f"<url>{url}/</url></repository>\n  <snapshotRepository><id>depot</id>"
                  f"<url>{url}/</url></snapshotRepository>\n</distributionManagement>\n")
        gradle = f"repositories {{\n    maven {{ url '{url}/' }}\n}}\n"
        return [("~/.m2/settings.xml", settings), ("pom.xml (mvn deploy)", deploy), ("build.gradle", gradle)]


def parse_coordinate(line: str) -> tuple[str, str, str, str, str] | None:
    """(group, artifact, packaging, classifier, version) of a coordinate or dependency:list line."""
    parts = line.split(":")
    if parts[-1] in SCOPES and len(parts) in (5, 6):         # dependency:list output
        group, artifact, packaging, *rest = parts[:-1]
        classifier, version = (rest[0], rest[1]) if len(rest) == 2 else ("", rest[0])
    elif len(parts) == 3:
        (group, artifact, version), packaging, classifier = parts, "jar", ""
    elif len(parts) == 4:
        group, artifact, packaging, version = parts
        classifier = ""
    elif len(parts) == 5:
        group, artifact, packaging, classifier, version = parts
    else:
        return None
    if not all(re.fullmatch(r"[A-Za-z0-9._-]+", p) for p in (group, artifact, version)):
        return None
    return group, artifact, packaging or "jar", classifier, version


def _extension(packaging: str) -> str:
    return {"bundle": "jar", "maven-plugin": "jar", "test-jar": "jar", "ejb": "jar"}.get(packaging, packaging)


def _epoch(stamp: str) -> float | None:
    import calendar
    import time
    try:
        return float(calendar.timegm(time.strptime(stamp, "%Y%m%d%H%M%S")))
    except (ValueError, TypeError):
        return None


FORMAT = Maven
