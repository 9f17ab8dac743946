"""The supply-chain policy hook of npm: versions and publish times of a packument, and the
packument without hidden versions (versions, time and dist-tags kept consistent)."""
from __future__ import annotations

import asyncio
import hashlib
import json
from typing import TYPE_CHECKING, Any, MutableMapping

import semantic_version
from cachetools import LRUCache

from depot.cache.api import VersionInfo, parse_time

if TYPE_CHECKING:  # pragma: no cover
    from .base import Ctx


def packument_versions(body: bytes) -> list[VersionInfo] | None:
    """Every version a full packument offers, with its `time` entry (None: not a packument)."""
    try:
        doc = json.loads(body)
    except ValueError:
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("versions"), dict):
        return None
    name = str(doc.get("name", ""))
    times: dict[str, Any] = doc["time"] if isinstance(doc.get("time"), dict) else {}
    return [VersionInfo(name, version, parse_time(times.get(version))) for version in doc["versions"]]


def _semver(version: str) -> semantic_version.Version | None:
    try:
        return semantic_version.Version(version)
    except ValueError:
        return None


def newest(versions: list[str], stable_first: bool = True) -> str | None:
    """The highest version by semver precedence (releases before pre-releases when asked)."""
    parsed = [(v, s) for v in versions if (s := _semver(v)) is not None]
    ordered = sorted(parsed, key=lambda p: p[1])
    if stable_first:
        stable = [p for p in ordered if not p[1].prerelease]
        if stable:
            return stable[-1][0]
    return ordered[-1][0] if ordered else None


def filter_packument(body: bytes, hidden: frozenset[tuple[str, str]]) -> bytes:
    """The packument without the hidden versions: `latest` moves to the newest allowed
    version, other dist-tags that pointed at a hidden version are dropped."""
    doc = json.loads(body)
    name = str(doc.get("name", ""))
    gone = {version for package, version in hidden if package == name}
    if not gone:
        return body
    versions = {v: data for v, data in doc.get("versions", {}).items() if v not in gone}
    doc["versions"] = versions
    if isinstance(doc.get("time"), dict):
        doc["time"] = {k: v for k, v in doc["time"].items() if k not in gone}
    tags = {tag: v for tag, v in (doc.get("dist-tags") or {}).items() if v not in gone}
    if "latest" not in tags:
        best = newest(list(versions))
        if best is not None:
            tags["latest"] = best
    doc["dist-tags"] = tags
    return json.dumps(doc, separators=(",", ":")).encode()


def tarball_version(path: str) -> tuple[str, str] | None:
    """(package, version) of a tarball key or path: `[tarball/]<name>/-/<unscoped>-<version>.tgz`."""
    path = path.removeprefix("tarball/")
    name, sep, filename = path.partition("/-/") if "/-/" in path else path.rpartition("/")
    unscoped = name.rsplit("/", 1)[-1]
    if not sep or not filename.startswith(unscoped + "-") or not filename.endswith(".tgz"):
        return None
    return name, filename[len(unscoped) + 1:-4]


_DECIDED: LRUCache[tuple[Any, ...], tuple[bytes | None, str]] = LRUCache(maxsize=4096)


def decided_token(ctx: "Ctx", digest: str) -> str | None:
    """What the policy hid from this document at this policy version ('' nothing), or None when
    not decided yet: a hit that finds its rendered answer needs no read of the document."""
    decided = _DECIDED.get((ctx.repo.name, digest, ctx.pull.policy_version()))
    return None if decided is None else decided[1]


async def policy_filtered(ctx: "Ctx", digest: str, stored: bytes,
                          rendered: MutableMapping[Any, bytes]) -> tuple[bytes, str]:
    """A stored proxied packument (index line + document) without the versions the policy hides
    from `ctx`'s repository, and a token naming what was hidden ('' when nothing is). Decided
    once per document and policy version (a minute), so a hit does not parse the document."""
    decided_key = (ctx.repo.name, digest, ctx.pull.policy_version())
    decided = _DECIDED.get(decided_key)
    if decided is not None:
        cached_body, token = decided
        if not token:
            return stored, ""
        filtered = rendered.get(("policy", digest, token))
        if filtered is not None:
            return filtered, token
    split = stored.index(b"\n") + 1
    versions = await asyncio.to_thread(packument_versions, stored[split:])
    hidden = ctx.pull.hidden(versions or [])
    if not hidden:
        _DECIDED[decided_key] = (None, "")
        return stored, ""
    token = hashlib.sha256(repr(sorted(hidden)).encode()).hexdigest()
    key = ("policy", digest, token)
    filtered = rendered.get(key)
    if filtered is None:
        body = await asyncio.to_thread(filter_packument, stored[split:], frozenset(hidden))
        filtered = rendered[key] = stored[:split] + body
    _DECIDED[decided_key] = (None, token)
    return filtered, token


async def publish_time_in(stored: bytes, version: str) -> float | None:
    """The publish time of `version` in a stored proxied packument (index line + document)."""
    versions = await asyncio.to_thread(packument_versions, stored[stored.index(b"\n") + 1:])
    return next((v.published for v in versions or [] if v.version == version), None)
