"""RubyGems: proxy (rubygems.org by default), hosted (`gem push`, `gem yank`) and group.

Paths under /<repo>/ (the source URL is `<depot>/<repo>/`):
  versions, names, info/<gem>             compact index (Bundler, RubyGems >= 3): ETag "<md5>",
                                          Repr-Digest, Range (bundler appends to its copy)
  api/v1/dependencies[.json]?gems=a,b     dependency API (Marshal / JSON), from the info files
  specs.4.8.gz, latest_specs.4.8.gz, prerelease_specs.4.8.gz, quick/Marshal.4.8/<gem>.gemspec.rz
                                          the full index `gem` still reads (Marshal 4.8)
  gems/<name>-<version>[-<platform>].gem  the gem
  POST api/v1/gems, DELETE api/v1/gems/yank   push (raw token in Authorization) and yank
Proxy: compact index files are metadata; a .gem is immutable and verified against the sha256
of its info line. Hosted: depot writes the info line (compare-and-swap) and the quick spec at
push; the versions file is appended to at push and yank; names and the specs indexes are
generated from what is stored. Group: info files merged (first member wins per version),
versions, names and the specs indexes merged (a proxy's specs read from its upstream's Marshal).
"""
from __future__ import annotations

import base64
import gzip
import hashlib
import json
import re
from typing import Any
from urllib.parse import parse_qs

from aiohttp import web

from depot.cache.api import Cached, Kind, merge_x_cache, respond_bytes

from . import rubygems_index as ri
from . import rubygems_marshal as rm
from . import rubygems_spec as rs
from .base import Ctx, Format, FormatError, VersionInfo, route, standard_repositories
from .repo import RepoConfig
from .tree import in_thread
from .warm_plans import Job

TEXT = "text/plain; charset=utf-8"
GEM_TYPE = "application/octet-stream"
NAME = r"(?P<name>[A-Za-z0-9._-]+)"
INFO = re.compile(r"info/" + NAME + r"\Z")
SPECS = {"specs.4.8.gz": "release", "latest_specs.4.8.gz": "latest", "prerelease_specs.4.8.gz": "prerelease"}
MAX_DEPENDENCY_GEMS = 200
BIG_DOCUMENT = 256 * 1024


def body_digests(body: bytes) -> tuple[str, str]:
    """(MD5 hex, sha256 base64) of a compact index document."""
    return ri.md5(body), base64.b64encode(hashlib.sha256(body).digest()).decode()


async def compact_response(request: web.Request, body: bytes, x_cache: str | None = None) -> web.StreamResponse:
    """A compact index answer: ETag is the quoted MD5 of the body (bundler 2.3 checks it after
    appending a Range answer), Repr-Digest / Digest the sha256 (newer bundlers), Range served.
    The upstream's /versions runs to megabytes: hashed off the event loop then."""
    md5, b64 = body_digests(body) if len(body) < BIG_DOCUMENT else await in_thread(body_digests, body)
    headers = {"Repr-Digest": f"sha-256=:{b64}:", "Digest": f"sha-256={b64}", "Cache-Control": "no-cache"}
    if x_cache:
        headers["X-Cache"] = x_cache
    return respond_bytes(request, body, TEXT, headers, digest=md5)


def gem_path(full_name: str) -> str:
    return f"gems/{full_name}.gem"


def quick_path(full_name: str) -> str:
    return f"quick/Marshal.4.8/{full_name}.gemspec.rz"


class RubyGems(Format):
    """The RubyGems.org API subset gem and bundler use."""

    name = "rubygems"
    routes = (
        route("GET HEAD", r"", "root"),
        route("GET HEAD", r"(?P<path>versions|names|info/[A-Za-z0-9._-]+)", "compact"),
        route("GET HEAD", r"gems/(?P<file>[A-Za-z0-9._-]+\.gem)", "gem_file"),
        route("GET HEAD", r"quick/Marshal\.4\.8/(?P<file>[A-Za-z0-9._-]+\.gemspec\.rz)", "quick"),
        route("GET HEAD", r"(?P<index>(latest_|prerelease_)?specs\.4\.8\.gz)", "specs"),
        route("GET HEAD", r"api/v1/dependencies(?P<json>\.json)?", "dependencies"),
        route("POST", r"api/v1/gems", "push", "hosted group"),
        route("DELETE", r"api/v1/gems/yank", "yank", "hosted group"),
    )

    @classmethod
    def default_upstream(cls) -> str:
        return "https://rubygems.org"

    @classmethod
    def default_repositories(cls) -> dict[str, dict[str, Any]]:
        return standard_repositories("rubygems")

    @classmethod
    def snippets(cls, repo: RepoConfig, url: str, host: str, insecure: bool) -> list[tuple[str, str]]:
        out = [("bundler (Gemfile)", f'source "{url}/"'),
               ("gem", f"gem install --clear-sources --source {url}/ GEM")]
        if not repo.is_proxy:
            out.append(("publish", f"GEM_HOST_API_KEY=<depot token> gem push my.gem --host {url}\n"
                                   f"GEM_HOST_API_KEY=<depot token> gem yank my -v 1.0.0 --host {url}"))
        return out

    @classmethod
    def warm_plan(cls, mount: str, filename: str, text: str) -> tuple[list[Any], list[str]] | None:
        """`depot warm <repo> Gemfile.lock`: the info file and the .gem of every GEM spec."""
        if not filename.endswith("Gemfile.lock") and "\nGEM\n" not in "\n" + text:
            return None
        jobs, notes, names, section = [], [], set(), ""
        for line in text.splitlines():
            if line and not line.startswith(" "):
                section = line.strip()
            found = re.match(r"    (?P<name>[A-Za-z0-9._-]+) \((?P<version>[^)]+)\)\Z", line)
            if found is None:
                continue
            if section != "GEM":
                notes.append(f"not from a gem source, skipped: {found['name']} {found['version']}")
                continue
            if found["name"] not in names:
                names.add(found["name"])
                jobs.append(Job(f"{mount}/info/{found['name']}"))
            jobs.append(Job(f"{mount}/{gem_path(found['name'] + '-' + found['version'])}"))
        return jobs, notes

    def error(self, ctx: Ctx | None, status: int, message: str, code: str | None = None) -> web.Response:
        """gem prints the body of a failed push or yank as it is: plain text."""
        return web.Response(status=status, text=message.rstrip("\n") + "\n", content_type="text/plain",
                            headers={"Cache-Control": "no-store"})

    # ------------------------------------------------------------------ compact index
    async def root(self, ctx: Ctx) -> web.StreamResponse:
        """`gem` probes the source URL (HEAD): a 2xx makes it use the compact index."""
        return web.Response(text=f"RubyGems repository {ctx.repo.name}: {ctx.base_url}/\n", content_type="text/plain")

    async def compact(self, ctx: Ctx) -> web.StreamResponse:
        body, x_cache = await self.compact_doc(ctx, ctx.match["path"])
        return await compact_response(ctx.request, body, x_cache)

    async def compact_doc(self, ctx: Ctx, path: str) -> tuple[bytes, str | None]:
        """`versions`, `names` or `info/<gem>` of any repository type, with its X-Cache."""
        if ctx.repo.is_hosted:
            return await self.hosted_compact(ctx, path), None
        if ctx.repo.is_proxy:
            return await self.proxy_compact(ctx, path)
        answers = await ctx.each_member(lambda m: self.member_compact(m, path), path)
        x_cache = merge_x_cache(xc for _, (_, xc) in answers)
        bodies = [body for _, (body, _) in answers]
        if len(bodies) == 1:                # one member has it: its document unchanged (append-only)
            return bodies[0], x_cache
        if path == "names":
            return ri.render_names(n for body in bodies for n in body.decode().splitlines()[1:]), x_cache
        if path == "versions":
            key = ("rubygems-versions", ctx.repo.name, tuple(await in_thread(lambda: [ri.md5(b) for b in bodies])))
            merged = ctx.documents.get(key)
            if merged is None:
                merged = await self.merge_versions(ctx, [(m, body) for m, (body, _) in answers])
                ctx.documents.put(key, merged)
            return merged, x_cache
        return ri.merge_info(bodies), x_cache

    async def member_compact(self, member: Ctx, path: str) -> tuple[bytes, str | None]:
        body, x_cache = await self.compact_doc(member, path)
        return body, x_cache or "HIT"

    async def hosted_compact(self, ctx: Ctx, path: str) -> bytes:
        if INFO.match(path):
            stored = await ctx.hosted.get(path)
            if stored is None:
                raise FormatError(404, f"gem {path[5:]} not found in {ctx.repo.name}")
            return await ctx.hosted.read(stored)
        if path == "versions":            # append-only, written at push and yank (see append_versions)
            stored = await ctx.hosted.get("versions")
            return await ctx.hosted.read(stored) if stored else ri.VERSIONS_HEADER.encode()
        return ri.render_names(f.path[5:] for f in await ctx.hosted.list("info/"))

    async def append_versions(self, target: Ctx, name: str, head: str) -> None:
        """One line at the end of the hosted versions file, with the MD5 of the gem's info file
        as it is now: bundler then fetches only the new bytes (Range) of both."""
        async def append(old: bytes | None) -> bytes:
            stored = await target.hosted.get(f"info/{name}")
            digest = ri.md5(await target.hosted.read(stored)) if stored else ri.md5(ri.render_info([]))
            return (old or ri.VERSIONS_HEADER.encode()) + f"{name} {head} {digest}\n".encode()
        await target.hosted.update_document("versions", append, content_type=TEXT)

    async def proxy_compact(self, ctx: Ctx, path: str) -> tuple[bytes, str]:
        """A compact index document of the upstream. `versions` is append-only (megabytes on
        rubygems.org): once stored it is refreshed with a Range request for the new bytes only."""
        append = ri.appended if path == "versions" else None
        cached, body = await ctx.fetch_upstream(ctx.pull.spec(path, kind=Kind.METADATA, content_type=TEXT,
                                                              append=append))
        return self.policy_filtered(ctx, path, body), cached.status

    def policy_filtered(self, ctx: Ctx, path: str, body: bytes) -> bytes:
        """An upstream info file without the versions the supply-chain policy hides."""
        versions = self.metadata_versions(path, body)
        hidden = ctx.pull.hidden(versions) if versions else {}
        return self.filter_metadata(path, body, frozenset(hidden)) if hidden else body

    async def merge_versions(self, ctx: Ctx, answers: list[tuple[Ctx, bytes]]) -> bytes:
        """Members' versions files as one. A gem only one member has keeps its MD5 (its info
        file is served unchanged); a gem several members have gets the MD5 of the merged info."""
        parsed = [(member, await in_thread(ri.parse_versions, body)) for member, body in answers]
        merged: dict[str, tuple[list[str], str]] = {}
        owners: dict[str, list[Ctx]] = {}
        for member, gems in parsed:
            for name, (heads, digest) in gems.items():
                if not heads:
                    continue
                have = merged.get(name, ([], digest))[0]
                merged[name] = (have + [h for h in heads if h not in have], merged.get(name, ([], digest))[1])
                owners.setdefault(name, []).append(member)
        for name, members in owners.items():
            if len(members) > 1:
                bodies = []
                for member in members:
                    try:
                        bodies.append((await self.compact_doc(member, f"info/{name}"))[0])
                    except FormatError:
                        continue
                merged[name] = (merged[name][0], ri.md5(ri.merge_info(bodies)))
        return await in_thread(ri.render_versions, merged)

    # ------------------------------------------------------------------ files
    async def gem_file(self, ctx: Ctx) -> web.StreamResponse:
        file = ctx.match["file"]
        if ctx.repo.is_group:
            return await ctx.first_member(lambda m: self.member_gem(m, file, "HIT"), file)
        return await self.member_gem(ctx, file)

    async def member_gem(self, ctx: Ctx, file: str, x_cache: str | None = None) -> web.StreamResponse:
        if ctx.repo.is_hosted:
            return await self.serve_stored(ctx, f"gems/{file}", x_cache)
        return ctx.pull.respond(ctx.request, await self.proxy_gem(ctx, file))

    async def serve_stored(self, ctx: Ctx, path: str, x_cache: str | None) -> web.StreamResponse:
        stored = await ctx.hosted.get(path)
        if stored is None:
            raise FormatError(404, f"{path} not found in {ctx.repo.name}")
        return ctx.hosted.serve(ctx.request, stored, x_cache=x_cache)

    async def proxy_gem(self, ctx: Ctx, file: str) -> Cached:
        """The .gem from the upstream, verified against the checksum of its compact index line."""
        key = f"gems/{file}"
        await ctx.check_policy(key)      # before the index lookup: a hidden version is refused, not missing
        stored = await ctx.pull.peek(key)
        if stored is not None:
            return Cached("HIT", ctx.repo, stored)
        for name, head in ri.gem_candidates(file):
            try:
                info, _ = await self.proxy_compact(ctx, f"info/{name}")
            except FormatError as exc:
                if exc.status == 404:
                    continue
                raise
            checksum = ri.checksum_of(info, head)
            if checksum is not None:
                return await ctx.open_upstream(ctx.pull.spec(key, kind=Kind.IMMUTABLE, expect_sha256=checksum,
                                                             content_type=GEM_TYPE))
        raise FormatError(404, f"{file} is not in the compact index of {ctx.repo.name}'s upstream")

    async def quick(self, ctx: Ctx) -> web.StreamResponse:
        path = f"quick/Marshal.4.8/{ctx.match['file']}"
        return await self.passthrough(ctx, path, Kind.IMMUTABLE)

    async def passthrough(self, ctx: Ctx, path: str, kind: Kind) -> web.StreamResponse:
        """A file stored as is (hosted) or fetched as is (proxy); a group's first member wins."""
        if ctx.repo.is_group:
            return await ctx.first_member(lambda m: self.passthrough(m, path, kind), path)
        if ctx.repo.is_hosted:
            return await self.serve_stored(ctx, path, None)
        spec = ctx.pull.spec(path, kind=kind, content_type=GEM_TYPE)
        return ctx.pull.respond(ctx.request, await ctx.open_upstream(spec))

    async def specs(self, ctx: Ctx) -> web.StreamResponse:
        """specs.4.8.gz and siblings: generated from hosted gems; a proxy passes its upstream's
        on; a group merges its members' (a proxy's read from the upstream's Marshal)."""
        index = ctx.match["index"]
        if ctx.repo.is_proxy:
            return await self.passthrough(ctx, index, Kind.METADATA)
        if ctx.repo.is_hosted:
            parts = [await self.hosted_specs(ctx)]
        else:
            answers = await ctx.each_member(lambda m: self.member_specs(m, index), index)
            parts = [part for _, part in answers]
        key = ("rubygems-specs", index, ctx.repo.name, tuple(version for version, _ in parts))
        body = ctx.documents.get(key)
        if body is None:
            tuples = list({t for _, found in parts for t in found})
            body = await in_thread(rs.specs_index, select_specs(tuples, SPECS[index]))
            ctx.documents.put(key, body)
        return respond_bytes(ctx.request, body, "application/octet-stream", {"Cache-Control": "no-cache"})

    async def hosted_specs(self, ctx: Ctx) -> tuple[str, list[tuple[str, str, str]]]:
        """(a version key, every (name, version, platform)) of a hosted repository's gems."""
        files = await ctx.hosted.list("gems/")
        version = hashlib.sha256(repr([(f.path, f.digest) for f in files]).encode()).hexdigest()
        return version, [(f.meta["name"], f.meta["version"], f.meta["platform"]) for f in files if "name" in f.meta]

    async def member_specs(self, member: Ctx, index: str) -> tuple[str, list[tuple[str, str, str]]]:
        """A group member's tuples for `index`: a hosted one's gems, a proxy's upstream index."""
        if member.repo.is_hosted:
            return await self.hosted_specs(member)
        cached, body = await member.fetch_upstream(member.pull.spec(index, kind=Kind.METADATA))
        digest = cached.entry.digest if cached.entry is not None else hashlib.sha256(body).hexdigest()
        key = ("rubygems-spec-tuples", digest)
        packed = member.documents.get(key)
        if packed is None:
            try:
                tuples = await in_thread(lambda: rm.spec_tuples(gzip.decompress(body)))
            except (OSError, EOFError, rm.MarshalError) as exc:
                raise FormatError(502, f"the upstream {index} of {member.repo.name} is unreadable: {exc}") from None
            packed = json.dumps(tuples).encode()
            member.documents.put(key, packed)
        return digest, [tuple(t) for t in json.loads(packed)]

    async def dependencies(self, ctx: Ctx) -> web.StreamResponse:
        """The (deprecated) dependency API, answered from the compact index of each gem."""
        names = [n for n in ctx.request.query.get("gems", "").split(",") if n]
        if len(names) > MAX_DEPENDENCY_GEMS:
            raise FormatError(422, f"at most {MAX_DEPENDENCY_GEMS} gems per request")
        entries: list[dict[str, Any]] = []
        for name in names:
            if not re.fullmatch(r"[A-Za-z0-9._-]+", name):
                raise FormatError(400, f"bad gem name {name!r}")
            try:
                info, _ = await self.compact_doc(ctx, f"info/{name}")
            except FormatError as exc:
                if exc.status != 404:
                    raise
                continue
            entries.extend(ri.dependencies(name, info))
        if ctx.match["json"]:
            return web.json_response(entries)
        return web.Response(body=rs.dependencies_answer(entries), content_type="application/octet-stream")

    # ------------------------------------------------------------------ push and yank
    async def push(self, ctx: Ctx) -> web.StreamResponse:
        target = ctx.deploy_target()
        staged = await target.stage()
        data = await target.hosted.read_staged(staged)
        try:
            spec = await in_thread(rs.parse_gem, data)
        except rs.GemError as exc:
            raise FormatError(422, f"Invalid gem: {exc}") from None
        full = spec.full_name
        if await target.hosted.get(f"yanked/{full}") is not None:
            raise FormatError(409, f"Repushing of gem versions is not allowed: {full} was yanked.")
        meta = {**spec.to_meta(), "sha256": staged.digest}
        published = await target.record(gem_path(full), staged, content_type=GEM_TYPE, meta=meta, overwrite=False)
        if not published.created:
            raise FormatError(409, f"Repushing of gem versions is not allowed. {full} already exists.")
        await target.publish(quick_path(full), await in_thread(rs.quick_spec, spec),
                             content_type=GEM_TYPE, overwrite=False)
        line = rs.info_line(spec, staged.digest)
        try:
            await target.hosted.update_document(f"info/{spec.name}", lambda old: ri.add_info_line(old, line),
                                                content_type=TEXT)
        except ValueError as exc:
            raise FormatError(409, f"Repushing of gem versions is not allowed: {exc}") from None
        await self.append_versions(target, spec.name, line.split(" ", 1)[0])
        target.hosted.count_publish()
        return web.Response(text=f"Successfully registered gem: {spec.name} ({spec.version})\n")

    async def yank(self, ctx: Ctx) -> web.StreamResponse:
        target = ctx.deploy_target()
        form = parse_qs((await target.read_body(64 * 1024)).decode("utf-8", "replace"))
        form.update({k: [v] for k, v in ctx.request.query.items()})
        name, version = form.get("gem_name", [""])[0], form.get("version", [""])[0]
        platform = form.get("platform", ["ruby"])[0] or "ruby"
        if not rs.NAME.match(name) or not rs.VERSION.match(version) or not rs.PLATFORM.match(platform):
            raise FormatError(400, "gem_name, version (and platform) are required")
        full = rs.full_name(name, version, platform)
        if await target.hosted.get(gem_path(full)) is None:
            raise FormatError(404, f"The version {version} does not exist for gem {name}.")
        head = version if platform == "ruby" else f"{version}-{platform}"
        await target.hosted.update_document(f"info/{name}", lambda old: ri.remove_info_line(old, head))
        await self.append_versions(target, name, "-" + head)
        await target.publish(f"yanked/{full}", b"yanked\n", content_type=TEXT)
        await target.hosted.delete(gem_path(full), tombstone=True)
        await target.hosted.delete(quick_path(full), tombstone=True)
        stored = await target.hosted.get(f"info/{name}")
        if stored is not None and not ri.info_lines(await target.hosted.read(stored)):
            await target.hosted.delete(f"info/{name}")
        return web.Response(text=f"Successfully deleted gem: {name} ({full[len(name) + 1:]})\n")

    # ------------------------------------------------------------------ policy and admin hooks
    def package_of(self, path: str) -> tuple[str, str] | None:
        found = re.fullmatch(r"gems/([^/]+)", path)
        candidates = ri.gem_candidates(found.group(1)) if found else []
        return (candidates[0][0], ri.split_head(candidates[0][1])[0]) if candidates else None

    def metadata_versions(self, path: str, body: bytes) -> list[VersionInfo] | None:
        """The versions of an info file (compact index lines carry no publish time)."""
        found = INFO.match(path)
        if found is None:
            return None
        return [VersionInfo(found["name"], ri.split_head(head)[0]) for head, _ in ri.info_lines(body)]

    def filter_metadata(self, path: str, body: bytes, hidden: frozenset[tuple[str, str]]) -> bytes:
        found = INFO.match(path)
        if found is None:
            return body
        return ri.render_info(line for head, line in ri.info_lines(body)
                              if (found["name"], ri.split_head(head)[0]) not in hidden)

    def metadata_key_for(self, package: str) -> str | None:
        return f"info/{package}"


def select_specs(tuples: list[tuple[str, str, str]], which: str) -> list[tuple[str, str, str]]:
    """The tuples of one full index: release, prerelease, or the latest release per name and platform."""
    if which == "prerelease":
        return sorted(t for t in tuples if rs.is_prerelease(t[1]))
    release = sorted((t for t in tuples if not rs.is_prerelease(t[1])),
                     key=lambda t: (t[0], t[2], rs.version_key(t[1])))
    if which == "release":
        return release
    latest: dict[tuple[str, str], tuple[str, str, str]] = {}
    for t in release:
        latest[(t[0], t[2])] = t
    return list(latest.values())


FORMAT = RubyGems
