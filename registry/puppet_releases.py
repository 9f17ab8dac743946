"""Puppet Forge v3 documents: release and module JSON built from a module's metadata.json, the
paginated release list, and the check of an uploaded module tarball."""
from __future__ import annotations

import hashlib
import re
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlencode

from .tarball_meta import json_member
from .terraform_modules import version_key

SLUG = r"[A-Za-z0-9]+-[a-z][a-z0-9_]*"
VERSION = r"\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?"
FILE = re.compile(rf"(?P<slug>{SLUG})-(?P<version>{VERSION})\.tar\.gz")
MAX_LIMIT = 100


def module_metadata(data: bytes) -> dict[str, Any]:
    """metadata.json of a module tarball, checked (blocking: run in a thread); ValueError otherwise."""
    meta = json_member(data, ("metadata.json",))
    if meta is None:
        raise ValueError("the module has no metadata.json")
    name = str(meta.get("name", "")).replace("/", "-")
    if not re.fullmatch(SLUG, name):
        raise ValueError(f"metadata.json: name {meta.get('name')!r} is not <owner>-<module>")
    if not re.fullmatch(VERSION, str(meta.get("version", ""))):
        raise ValueError(f"metadata.json: version {meta.get('version')!r} is not a semantic version")
    deps = meta.get("dependencies", [])
    if not isinstance(deps, list) or not all(isinstance(d, dict) and isinstance(d.get("name"), str) for d in deps):
        raise ValueError("metadata.json: dependencies must be a list of {name, version_requirement}")
    return {**meta, "name": name}


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%d %H:%M:%S %z")


def epoch_of(text: Any) -> float | None:
    """Seconds since the epoch of a Forge time ("2024-01-02 03:04:05 -0800" or ISO 8601)."""
    if not isinstance(text, str):
        return None
    for fmt in ("%Y-%m-%d %H:%M:%S %z", "%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S.%f%z"):
        try:
            return datetime.strptime(text.replace("Z", "+0000"), fmt).timestamp()
        except ValueError:
            continue
    return None


def owner_doc(owner: str) -> dict[str, Any]:
    return {"uri": f"/v3/users/{owner}", "slug": owner, "username": owner, "gravatar_id": None}


def release_doc(meta: dict[str, Any], size: int, md5: str, sha256: str, created: float) -> dict[str, Any]:
    """A release as /v3/releases answers it (URIs relative to the repository's mount)."""
    slug, version = meta["name"], meta["version"]
    owner, name = slug.split("-", 1)
    return {"uri": f"/v3/releases/{slug}-{version}", "slug": f"{slug}-{version}",
            "module": {"uri": f"/v3/modules/{slug}", "slug": slug, "name": name, "deprecated_at": None,
                       "owner": owner_doc(owner)},
            "version": version, "metadata": meta, "tags": [], "supported": False, "pdk": False,
            "validation_score": 100, "file_uri": f"/v3/files/{slug}-{version}.tar.gz", "file_size": size,
            "file_md5": md5, "file_sha256": sha256, "downloads": 0, "readme": None, "changelog": None,
            "license": None, "reference": None, "tasks": [], "plans": [],
            "created_at": iso(created), "updated_at": iso(created), "deleted_at": None, "deleted_for": None}


def sort_releases(releases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Newest version first, one release per version (the first seen wins: group order)."""
    seen: dict[str, dict[str, Any]] = {}
    for release in releases:
        seen.setdefault(str(release.get("version")), release)
    return sorted(seen.values(), key=lambda r: version_key(str(r.get("version"))), reverse=True)


def page(releases: list[dict[str, Any]], query: dict[str, str]) -> dict[str, Any]:
    """The paginated answer of /v3/releases for `query` (limit, offset kept in the links)."""
    try:
        limit = max(1, min(MAX_LIMIT, int(query.get("limit", 20))))
        offset = max(0, int(query.get("offset", 0)))
    except ValueError:
        raise ValueError("limit and offset must be integers") from None

    def link(at: int | None) -> str | None:
        return None if at is None else "/v3/releases?" + urlencode({**query, "limit": limit, "offset": at})
    total = len(releases)
    return {"pagination": {"limit": limit, "offset": offset, "first": link(0),
                           "previous": link(max(0, offset - limit)) if offset else None, "current": link(offset),
                           "next": link(offset + limit) if offset + limit < total else None, "total": total},
            "results": releases[offset:offset + limit]}


def module_doc(slug: str, releases: list[dict[str, Any]]) -> dict[str, Any]:
    """/v3/modules/<slug> from its releases (newest first)."""
    owner, name = slug.split("-", 1)
    newest = releases[0]
    return {"uri": f"/v3/modules/{slug}", "slug": slug, "name": name, "owner": owner_doc(owner), "downloads": 0,
            "created_at": releases[-1].get("created_at"), "updated_at": newest.get("created_at"),
            "deprecated_at": None, "deprecated_for": None, "superseded_by": None, "supported": False,
            "endorsement": None, "module_group": "base", "premium": False, "current_release": newest,
            "releases": [{k: r.get(k) for k in ("uri", "slug", "version", "created_at", "deleted_at", "file_uri",
                                                "file_size", "supported")} for r in releases],
            "homepage_url": newest.get("metadata", {}).get("project_page"), "issues_url": None}


def digests(data: bytes) -> tuple[str, str]:
    return hashlib.md5(data).hexdigest(), hashlib.sha256(data).hexdigest()   # noqa: S324 (the Forge's field)
