"""Hex repositories (`format: hex`): the repository protocol rebar3 and mix read, and publishing.

Paths, relative to `/<repo>/` (rebar3: `HEX_CDN=<depot>/<repo>` plus this repository's
`public_key` as `repo_public_key` of the `hexpm` repo in rebar.config):

* `GET names`, `GET versions`, `GET packages/<name>` — gzipped `Signed` protobuf documents.
  Hosted: generated from the stored tarballs and signed with the repository's own RSA key
  (generated at first use, kept as a hosted document never served; `GET public_key` gives its
  public half); the payload's repository name is the `repository_name` option (`hexpm`, which
  rebar3 expects for the default repository). Proxy: the upstream's documents (metadata,
  revalidated) passed through unchanged, their signature verified at fill time against the
  `public_key` option when it is set (the key clients pin). Group: the members' payloads merged
  (the first member having a version wins) and re-signed with the key of its first hosted member,
  which is the group's `public_key`.
* `GET tarballs/<name>-<version>.tar` — immutable, with an ETag; a proxy verifies it against the
  outer checksum of the upstream's signed package document.
* `POST api/publish` — the tarball as the body (Hex API); metadata.config and CHECKSUM are checked,
  a published version never takes other bytes.
"""
from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime, timezone
from typing import Any

from aiohttp import web

from depot.cache.api import Kind, merge_x_cache, parse_time

from . import hex_proto as hp
from . import hex_tarball as ht
from .base import Ctx, Format, FormatError, VersionInfo, route, standard_repositories
from .group_answer import first_member_hit
from .json_answer import json_answer
from .options import Option, string
from .longtail_warm import plan_rebar_lock
from .repo import RepoConfig
from .terraform_modules import version_key
from .tree import in_thread

KEY_PATH = ".depot/hex-signing-key.pem"
HEX_API = "https://hex.pm/api"
OCTETS = "application/octet-stream"
TARBALL = rf"tarballs/(?P<name>{ht.NAME})-(?P<version>{ht.VERSION})\.tar"


def _answer(request: web.Request, body: bytes, x_cache: str) -> web.Response:
    etag = f'"{hashlib.sha256(body).hexdigest()}"'
    headers = {"ETag": etag, "X-Cache": x_cache, "Cache-Control": "no-cache"}
    if etag in {t.strip() for t in request.headers.get("If-None-Match", "").split(",")}:
        return web.Response(status=304, headers=headers)
    return web.Response(body=body, headers={**headers, "Content-Type": OCTETS})


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000000Z")


def _payload(path: str, repository: str, infos: list[dict[str, Any]]) -> bytes:
    """The unsigned payload of the document at `path` from the stored releases (blocking)."""
    by_name: dict[str, list[dict[str, Any]]] = {}
    for info in infos:
        by_name.setdefault(info["name"], []).append(info)
    for releases in by_name.values():
        releases.sort(key=lambda i: version_key(i["version"]))
    if path == "names":
        payload = hp.encode_names(repository, sorted(by_name))
    elif path == "versions":
        payload = hp.encode_versions(repository, {n: [i["version"] for i in by_name[n]] for n in sorted(by_name)})
    else:
        name = path.removeprefix("packages/")
        payload = hp.encode_package(name, repository, [
            hp.Release(i["version"], bytes.fromhex(i["inner_checksum"]), bytes.fromhex(i["outer_checksum"]),
                       [hp.Dependency(r["name"], r["requirement"], r["optional"], r["app"], r.get("repository"))
                        for r in i["requirements"]]) for i in by_name.get(name, [])])
    return payload


class Hex(Format):
    """Hex repository protocol: hosted, proxy and group."""

    name = "hex"
    version_scheme = "semver"
    options = {
        "repository_name": Option(string, "hexpm", "repository name written in (and expected of) signed documents"),
        "public_key": Option(string, "", "proxy: PEM public key the upstream's documents must verify with"),
        "api_url": Option(string, "", "proxy: the Hex API giving release times (inserted_at) to the supply-chain "
                                      "policy's cooldown; default hex.pm's API for repo.hex.pm, else <upstream>/api"),
    }
    routes = (
        route("GET HEAD", r"(?P<doc>names|versions|packages/(?P<name>[a-z][a-z0-9_]*))", "document"),
        route("GET HEAD", r"public_key", "public_key"),
        route("GET HEAD", TARBALL, "tarball"),
        route("POST", r"api/publish", "publish", "hosted group"),
        route("GET HEAD", r"api/packages/(?P<name>[a-z][a-z0-9_]*)", "api_package"),
    )

    @classmethod
    def default_repositories(cls) -> dict[str, dict[str, Any]]:
        return standard_repositories("hex")

    @classmethod
    def default_upstream(cls) -> str | None:
        return "https://repo.hex.pm"

    @classmethod
    def warm_plan(cls, mount: str, filename: str, text: str) -> tuple[list[Any], list[str]] | None:
        """rebar.lock: every locked version's archive."""
        return plan_rebar_lock(mount, text) if filename == "rebar.lock" else None

    @classmethod
    def snippets(cls, repo: RepoConfig, url: str, host: str, insecure: bool) -> list[tuple[str, str]]:
        out = [("rebar3", f"export HEX_CDN={url}\n# ~/.config/rebar3/rebar.config:\n"
                          "{hex, [{repos, [#{name => <<\"hexpm\">>,\n"
                          f"                 repo_public_key => <<\"(curl {url}/public_key)\">>}}]}}]}}.")]
        if not repo.is_proxy:
            out.append(("publish", f"curl -u USER:TOKEN --data-binary @pkg-1.0.0.tar {url}/api/publish"))
        return out

    def error(self, ctx: Ctx | None, status: int, message: str, code: str | None = None) -> web.Response:
        """The Hex API's shape: {"status": 422, "message": "…"}."""
        return web.json_response({"status": status, "message": message}, status=status,
                                 headers={"Cache-Control": "no-store"})

    def package_of(self, path: str) -> tuple[str, str] | None:
        found = re.fullmatch(TARBALL, path)
        return (found["name"], found["version"]) if found else None

    # ------------------------------------------------------------------ keys
    async def _private_key(self, ctx: Ctx) -> bytes:
        found = await ctx.hosted.get(KEY_PATH)
        if found is None:
            fresh, _ = await in_thread(hp.generate_key)
            found = await ctx.hosted.update_document(KEY_PATH, lambda old: None if old else fresh,
                                                     content_type="application/x-pem-file")
        assert found is not None
        return await ctx.hosted.read(found)

    async def public_key(self, ctx: Ctx) -> web.StreamResponse:
        if ctx.repo.is_group:
            signer = self._signer(ctx)
            if signer is None:
                return await first_member_hit(ctx, self.public_key, "public_key")
            return await self.public_key(signer)
        if ctx.repo.is_proxy and ctx.pull.policy_active():
            pem = await in_thread(hp.public_of, await self._private_key(ctx))     # it re-signs what it filters
        elif ctx.repo.is_proxy:
            if not ctx.repo.options["public_key"]:
                raise FormatError(404, "this proxy has no public_key configured")
            pem = ctx.repo.options["public_key"].encode()
        else:
            pem = await in_thread(hp.public_of, await self._private_key(ctx))
        return web.Response(body=pem, content_type="application/x-pem-file")

    # ------------------------------------------------------------------ registry documents
    async def document(self, ctx: Ctx) -> web.StreamResponse:
        path = ctx.match["doc"]
        if ctx.repo.is_proxy and not ctx.pull.policy_active():
            cached = await ctx.open_upstream(self._doc_spec(ctx, path))
            return ctx.pull.respond(ctx.request, cached)
        if ctx.repo.is_group and self._signer(ctx) is None:     # proxies only: their documents as signed upstream
            return await first_member_hit(ctx, self.document, path)
        payload, x_cache = await self._payload_of(ctx, path)
        signer = ctx if not ctx.repo.is_group else self._signer(ctx)
        assert signer is not None
        private = await self._private_key(signer)
        key = ("hex", ctx.repo.name, path, hashlib.sha256(payload).hexdigest(), hashlib.sha256(private).hexdigest())
        body = ctx.documents.get(key)
        if body is None:
            body = await in_thread(hp.sign_document, payload, private)
            ctx.documents.put(key, body)
        return _answer(ctx.request, body, x_cache)

    def _signer(self, ctx: Ctx) -> Ctx | None:
        """The member whose key signs a group's merged documents: its first hosted member (None:
        a group of proxies, which serves its first member's documents as they were signed)."""
        return next((member for member in ctx.members() if member.repo.is_hosted), None)

    async def _payload_of(self, ctx: Ctx, path: str) -> tuple[bytes, str]:
        """The payload of `path` in any repository type (a proxy's verified at fill time)."""
        repository = ctx.repo.options["repository_name"]
        if ctx.repo.is_hosted:
            files = [f for f in await ctx.hosted.list("tarballs/") if "hex" in f.meta]
            name = path.removeprefix("packages/")
            if path.startswith("packages/") and not any(f.meta["hex"]["name"] == name for f in files):
                raise FormatError(404, f"package {name} not found")
            return await in_thread(_payload, path, repository, [f.meta["hex"] for f in files]), "HIT"
        if ctx.repo.is_proxy:
            cached, body = await ctx.fetch_upstream(self._doc_spec(ctx, path))
            try:
                payload = await in_thread(hp.verify_document, body, None)
            except hp.BadRegistry as exc:
                raise FormatError(502, f"the upstream's {path} is not usable: {exc}") from None
            return await self._policy_filtered(ctx, path, payload), cached.status
        answers = await ctx.each_member(lambda m: self._payload_of(m, path), path)
        try:
            merged = await in_thread(hp.merge_payloads, path, repository, [p for _, (p, _) in answers])
        except hp.BadRegistry as exc:
            raise FormatError(502, f"a member's {path} is not usable: {exc}") from None
        return merged, merge_x_cache(s for _, (_, s) in answers) or "HIT"

    async def _policy_filtered(self, ctx: Ctx, path: str, payload: bytes) -> bytes:
        """A proxy's payload without the versions the supply-chain policy hides (deny/allow rules;
        the cooldown with the release times of the Hex API)."""
        if not ctx.pull.policy_active():
            return payload
        key = ("hex-policy", ctx.repo.name, path, hashlib.sha256(payload).hexdigest(), ctx.pull.policy_version())
        found = ctx.documents.get(key)          # /versions of hex.pm lists every release: judged once
        if found is not None:
            return found
        offered = await in_thread(hp.payload_versions, path, payload)
        times = await self._release_times(ctx, path.removeprefix("packages/")) if path.startswith("packages/") else {}
        hidden = ctx.pull.hidden(VersionInfo(name, version, times.get(version)) for name, version in offered)
        filtered = await in_thread(hp.without, path, payload, frozenset(hidden)) if hidden else payload
        ctx.documents.put(key, filtered)
        return filtered

    def _api_url(self, ctx: Ctx) -> str:
        configured = ctx.repo.options["api_url"]
        upstream = (ctx.repo.upstream or "").rstrip("/")
        return (configured or (HEX_API if upstream == self.default_upstream() else upstream + "/api")).rstrip("/")

    async def _release_times(self, ctx: Ctx, name: str) -> dict[str, float | None]:
        """version -> publish time from the Hex API's package document (cached as metadata);
        empty when the API does not answer (the cooldown then cannot judge)."""
        spec = ctx.pull.spec(f"api/packages/{name}", f"{self._api_url(ctx)}/packages/{name}", Kind.METADATA,
                             content_type="application/json", request_headers={"Accept": "application/json"})
        try:
            _, body = await ctx.fetch_upstream(spec)
            releases = json.loads(body).get("releases") or []
            return {str(r["version"]): parse_time(r.get("inserted_at")) for r in releases if isinstance(r, dict)}
        except (FormatError, ValueError, KeyError, AttributeError):
            return {}

    async def publish_time(self, ctx: Ctx, package: str, version: str) -> float | None:
        """From the Hex API's release list (`inserted_at`), through the cache."""
        return (await self._release_times(ctx, package)).get(version) if ctx.repo.is_proxy else None

    async def api_package(self, ctx: Ctx) -> web.StreamResponse:
        """The Hex API's package document (`releases` with `inserted_at`): hosted from the stored
        tarballs, proxied from the upstream's API, a group's first member having the package."""
        name = ctx.match["name"]
        if ctx.repo.is_group:
            return await first_member_hit(ctx, self.api_package, f"package {name}")
        if ctx.repo.is_proxy:
            spec = ctx.pull.spec(f"api/packages/{name}", f"{self._api_url(ctx)}/packages/{name}", Kind.METADATA,
                                 content_type="application/json", request_headers={"Accept": "application/json"})
            return ctx.pull.respond(ctx.request, await ctx.open_upstream(spec))
        files = [f for f in await ctx.hosted.list(f"tarballs/{name}-") if f.meta.get("hex", {}).get("name") == name]
        if not files:
            raise FormatError(404, f"package {name} not found")
        releases = sorted(({"version": f.meta["hex"]["version"], "inserted_at": _iso(f.created),
                            "url": f"{ctx.base_url}/api/packages/{name}/releases/{f.meta['hex']['version']}"}
                           for f in files), key=lambda r: version_key(r["version"]), reverse=True)
        return json_answer(ctx.request, {"name": name, "repository": ctx.repo.options["repository_name"],
                                         "releases": releases}, {"X-Cache": "HIT"})

    def _doc_spec(self, ctx: Ctx, path: str) -> Any:
        pem = ctx.repo.options["public_key"].encode() or None

        def verified(body: bytes) -> bytes:
            hp.verify_document(body, pem)            # ValueError: the fill fails, nothing is stored
            return body
        return ctx.pull.spec(path, kind=Kind.METADATA, content_type=OCTETS, transform=verified)

    # ------------------------------------------------------------------ tarballs
    async def tarball(self, ctx: Ctx) -> web.StreamResponse:
        name, version = ctx.match["name"], ctx.match["version"]
        if ctx.repo.is_group:
            return await first_member_hit(ctx, self.tarball, f"{name} {version}")
        path = f"tarballs/{name}-{version}.tar"
        if ctx.repo.is_hosted:
            found = await ctx.hosted.get(path)
            if found is None:
                raise FormatError(404, f"{name} {version} not found")
            return ctx.hosted.serve(ctx.request, found, headers={"ETag": f'"{found.digest}"'})
        if await ctx.pull.peek(path) is not None:
            return ctx.pull.respond(ctx.request, await ctx.open_upstream(ctx.pull.spec(path, None, Kind.IMMUTABLE)))
        _, body = await ctx.fetch_upstream(self._doc_spec(ctx, f"packages/{name}"))
        try:
            _, checksums = await in_thread(lambda: hp.package_checksums(hp.verify_document(body, None)))
        except hp.BadRegistry as exc:
            raise FormatError(502, f"the upstream's package document is not usable: {exc}") from None
        if version not in checksums:
            raise FormatError(404, f"{name} {version} is not in the upstream's registry")
        outer = checksums[version] if re.fullmatch(r"[0-9a-f]{64}", checksums[version]) else None
        spec = ctx.pull.spec(path, kind=Kind.IMMUTABLE, content_type=OCTETS, expect_sha256=outer)
        # rebar3 needs an ETag on every tarball answer, also the first one streamed while it downloads
        return ctx.pull.respond(ctx.request, await ctx.open_upstream(spec),
                                headers={"ETag": f'"{outer}"'} if outer else None)

    # ------------------------------------------------------------------ publish
    async def publish(self, ctx: Ctx) -> web.StreamResponse:
        target = ctx.deploy_target()
        data = await ctx.read_body()
        try:
            info = await in_thread(ht.read, data)
        except ht.BadTarball as exc:
            raise FormatError(422, str(exc)) from None
        published = await target.publish(f"tarballs/{info['name']}-{info['version']}.tar", data, content_type=OCTETS,
                                         overwrite=False, meta={"hex": info})
        target.hosted.count_publish()
        return web.json_response({"name": info["name"], "version": info["version"],
                                  "checksum": published.file.digest}, status=201 if published.created else 200)


FORMAT = Hex
