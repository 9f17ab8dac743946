"""The administration model shared by the HTTP API (proxy/admin_api.py) and the CLI
(proxy/cli_admin.py): packages of hosted repositories grouped by each format's package_of(),
container tags, proxy cache listing and purge. Only what the caller may read is ever shown."""
from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from depot.cache.admin_store import FileRow
from depot.cache.api import HostedApi
from depot.cache.retention import now
from depot.cache.types import RepoConfig
from depot.registry.base import Format

from .admin_openapi import SORTS

Allowed = Callable[[RepoConfig, str], bool]
MAX_LIMIT = 1000


class AdminError(Exception):
    """A problem the API answers with problem details: status, title, detail."""

    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail = status, title, detail


def encode_cursor(key: Iterable[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(key)).encode()).decode()


def decode_cursor(cursor: str | None) -> list[Any] | None:
    if not cursor:
        return None
    try:
        value = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (ValueError, TypeError):
        raise AdminError(400, "Bad cursor", "the cursor is not one this API returned") from None
    if not isinstance(value, list):
        raise AdminError(400, "Bad cursor", "the cursor is not one this API returned")
    return value


@dataclass
class PackageStats:
    """One package of one repository, aggregated from its files (O(packages) memory)."""

    repository: str
    format: str
    name: str
    versions: dict[str, float] = field(default_factory=dict)   # version -> newest file time
    size: int = 0
    created: float | None = None
    downloads: int = 0
    last_downloaded: float | None = None

    def add(self, version: str, row: FileRow) -> None:
        self.versions[version] = max(self.versions.get(version, 0.0), row.created)
        self.size += row.size
        self.created = row.created if self.created is None else min(self.created, row.created)
        self.downloads += row.downloads
        if row.last_download is not None:
            self.last_downloaded = max(self.last_downloaded or 0.0, row.last_download)

    def as_json(self) -> dict[str, Any]:
        latest = max(self.versions.items(), key=lambda kv: (kv[1], kv[0]))[0] if self.versions else None
        return {"repository": self.repository, "format": self.format, "name": self.name,
                "versions": len(self.versions), "latest": latest, "size": self.size, "created": self.created,
                "last_downloaded": self.last_downloaded, "downloads": self.downloads}


class Admin:
    """Admin operations for one caller (`allowed` is their permission check)."""

    def __init__(self, services: Any, formats: dict[str, Format], allowed: Allowed, actor: str,
                 audit: Any = None, client: str | None = None, anonymous: bool = False) -> None:
        self.services, self.formats, self.allowed = services, formats, allowed
        self.actor, self.audit, self.client, self.anonymous = actor, audit, client, anonymous

    # ------------------------------------------------------------------ repositories
    def repo(self, name: str, perm: str = "read", kind: str | None = None) -> RepoConfig:
        """A repository the caller may `perm` (404 when they may not even read it)."""
        repo = self.services.repos.get(name)
        if repo is not None and self.anonymous and not self.allowed(repo, perm):
            raise AdminError(401, "Unauthorized", f"authentication required to {perm} {name}")
        if repo is None or not self.allowed(repo, "read"):
            raise AdminError(404, "Not Found", f"no repository named {name!r}")
        if kind is not None and repo.type != kind:
            raise AdminError(400, "Wrong repository type", f"{name} is a {repo.type} repository, not {kind}")
        if perm != "read" and not self.allowed(repo, perm):
            raise AdminError(403, "Forbidden", f"{self.actor} may not {perm} {name}")
        return repo

    def readable(self, kind: str, repository: str | None = None, fmt: str | None = None) -> list[RepoConfig]:
        """Repositories of a type the caller may read, optionally one of them or one format."""
        if repository:
            return [self.repo(repository, kind=kind)]
        return sorted((r for r in self.services.repos.values()
                       if r.type == kind and (fmt is None or r.format == fmt) and self.allowed(r, "read")),
                      key=lambda r: r.name)

    def hosted(self, repo: RepoConfig, may: Callable[[str], bool] | None = None) -> HostedApi:
        fmt = self.formats[repo.format]
        return HostedApi(self.services, repo, self.services.settings.client_timeout,
                         package_of=fmt.package_of, may=may or (lambda perm: self.allowed(repo, perm)))

    # ------------------------------------------------------------------ packages
    async def package_stats(self, repos: list[RepoConfig],
                            name: str | None = None) -> dict[tuple[str, str], PackageStats]:
        """(repository, package) -> stats, reading files one page at a time."""
        out: dict[tuple[str, str], PackageStats] = {}
        by_name = {r.name: r for r in repos}
        async for row in self.services.admin.iter_files(sorted(by_name)):
            repo = by_name[row.repo]
            found = self.formats[repo.format].package_of(row.path)
            if found is None or (name is not None and found[0] != name):
                continue
            stats = out.get((row.repo, found[0]))
            if stats is None:
                stats = out[(row.repo, found[0])] = PackageStats(row.repo, repo.format, found[0])
            stats.add(found[1], row)
        return out

    async def packages(self, repository: str | None = None, fmt: str | None = None, q: str | None = None,
                       sort: str = "name", cursor: str | None = None, limit: int = 100) -> dict[str, Any]:
        """One page of packages across the hosted repositories the caller may read."""
        field_name, reverse = sort.lstrip("-"), sort.startswith("-")
        if field_name not in SORTS:
            raise AdminError(400, "Bad sort", f"sort must be one of {', '.join(SORTS)} (prefix - for descending)")
        limit = max(1, min(limit, MAX_LIMIT))
        stats = await self.package_stats(self.readable("hosted", repository, fmt))
        items = [s.as_json() for s in stats.values() if not q or q.lower() in s.name.lower()]

        def key(item: dict[str, Any]) -> list[Any]:
            value = item[field_name]
            return [value if value is not None else 0, item["repository"], item["name"]]
        items.sort(key=key, reverse=reverse)
        after = decode_cursor(cursor)
        if after is not None:
            items = [i for i in items if (key(i) < after if reverse else key(i) > after)]
        page = items[:limit]
        more = len(items) > limit
        return {"items": page, "next_cursor": encode_cursor(key(page[-1])) if more and page else None}

    async def version_files(self, repo: RepoConfig, name: str, version: str | None = None) -> list[FileRow]:
        fmt = self.formats[repo.format]
        rows = []
        async for row in self.services.admin.iter_files([repo.name]):
            found = fmt.package_of(row.path)
            if found is not None and found[0] == name and (version is None or found[1] == version):
                rows.append(row)
        return rows

    async def package(self, repository: str, name: str) -> dict[str, Any]:
        repo = self.repo(repository, kind="hosted")
        stats = (await self.package_stats([repo], name)).get((repo.name, name))
        if stats is None:
            raise AdminError(404, "Not Found", f"no package {name!r} in {repository}")
        files = await self.version_files(repo, name)
        per: dict[str, dict[str, Any]] = {}
        fmt = self.formats[repo.format]
        for row in files:
            version = (fmt.package_of(row.path) or ("", ""))[1]
            item = per.setdefault(version, {"version": version, "files": 0, "size": 0, "created": row.created,
                                            "downloads": 0, "last_downloaded": None})
            item["files"] += 1
            item["size"] += row.size
            item["created"] = max(item["created"], row.created)
            item["downloads"] += row.downloads
            if row.last_download is not None:
                item["last_downloaded"] = max(item["last_downloaded"] or 0.0, row.last_download)
        return {**stats.as_json(), "versions": sorted(per.values(), key=lambda v: (v["created"], v["version"]))}

    async def version(self, repository: str, name: str, version: str) -> dict[str, Any]:
        repo = self.repo(repository, kind="hosted")
        files = await self.version_files(repo, name, version)
        if not files:
            raise AdminError(404, "Not Found", f"no version {version!r} of {name!r} in {repository}")
        return {"repository": repo.name, "format": repo.format, "name": name, "version": version,
                "files": [file_json(f) for f in files]}

    async def delete_version(self, repository: str, name: str, version: str,
                             path: str | None = None) -> dict[str, Any]:
        """Delete a version (or one of its files): permission `delete`, protection, audited."""
        repo = self.repo(repository, "delete", kind="hosted")
        files = await self.version_files(repo, name, version)
        if path is not None:
            files = [f for f in files if f.path == path]
        if not files:
            raise AdminError(404, "Not Found", f"nothing of {name} {version} in {repository}")
        hosted = self.hosted(repo)
        try:
            for row in files:
                await hosted.check_write(row.path, delete=True)
            if path is None:
                await self.formats[repo.format].admin_delete(hosted, name, version, [f.path for f in files])
            else:
                await hosted.delete(path)
        except Exception as exc:
            raise engine_error(exc) from None
        size = sum(f.size for f in files)
        self.record("delete", repo, package=name, version=version, files=[f.path for f in files], via="admin-api")
        return {"deleted": [f.path for f in files], "bytes": size}

    def record(self, action: str, repo: RepoConfig, **details: Any) -> None:
        if self.audit is not None:
            self.audit.record(action, "ok", self.actor, self.client, repo.name, **details)

    # ------------------------------------------------------------------ images
    async def images(self, repository: str | None = None) -> dict[str, Any]:
        stats = await self.package_stats(self.readable("hosted", repository, "oci"))
        return {"items": [{"repository": s.repository, "name": s.name, "tags": len(s.versions)}
                          for s in sorted(stats.values(), key=lambda s: (s.repository, s.name))]}

    async def tags(self, repository: str, image: str) -> dict[str, Any]:
        repo = self.repo(repository, kind="hosted")
        if repo.format != "oci":
            raise AdminError(400, "Not an image repository", f"{repository} is {repo.format}, not oci")
        rows = await self.version_files(repo, image)
        fmt = self.formats[repo.format]
        items, seen = [], {}
        for row in sorted(rows, key=lambda r: (r.created, r.path)):
            tag = (fmt.package_of(row.path) or ("", ""))[1]
            if row.digest not in seen:
                seen[row.digest] = await self._platforms(row.digest)
            items.append({"tag": tag, "digest": row.meta.get("digest") or "sha256:" + row.digest,
                          "size": row.size, "created": row.created, "downloads": row.downloads,
                          "last_downloaded": row.last_download, "platforms": seen[row.digest]})
        if not items:
            raise AdminError(404, "Not Found", f"no image {image!r} in {repository}")
        return {"repository": repo.name, "image": image, "items": items}

    async def _platforms(self, digest: str) -> list[str]:
        """`os/architecture` of an image manifest (from its config) or of each image an index lists."""
        try:
            manifest = json.loads(await self.services.blobs.read(digest))
            if isinstance(manifest.get("manifests"), list):
                return [f"{p.get('os')}/{p.get('architecture')}" for m in manifest["manifests"]
                        if isinstance(p := m.get("platform"), dict)]
            config_digest = str((manifest.get("config") or {}).get("digest", "")).split(":")[-1]
            config = json.loads(await self.services.blobs.read(config_digest)) if config_digest else {}
        except (OSError, ValueError, AttributeError):
            return []                   # not JSON, or a blob gone: no platform to show
        return [f"{config['os']}/{config['architecture']}"] if "os" in config and "architecture" in config else []

    async def delete_tags(self, repository: str, image: str, regex: str, dry_run: bool) -> dict[str, Any]:
        """Bulk delete of the tags matching `regex` (re.search); a dry run only lists them."""
        try:
            pattern = re.compile(regex)
        except re.error as exc:
            raise AdminError(400, "Bad regular expression", str(exc)) from None
        repo = self.repo(repository, "read" if dry_run else "delete", kind="hosted")
        listing = await self.tags(repo.name, image)
        doomed = [t for t in listing["items"] if pattern.search(t["tag"])]
        if not dry_run:
            for item in doomed:
                await self.delete_version(repo.name, image, item["tag"])
        return {"dry_run": dry_run, "tags": [t["tag"] for t in doomed]}

    # ------------------------------------------------------------------ proxy caches
    async def cache(self, repository: str, older_than: float | None = None, q: str = "",
                    cursor: str | None = None, limit: int = 100) -> dict[str, Any]:
        repo = self.repo(repository, kind="proxy")
        after = decode_cursor(cursor)
        since = None if older_than is None else now() - older_than
        rows = await self.services.admin.entries_page(repo.name, str(after[0]) if after else "", since, q,
                                                      max(1, min(limit, MAX_LIMIT)) + 1)
        more, rows = len(rows) > limit, rows[:limit]
        return {"repository": repo.name, "items": [entry_json(r) for r in rows],
                "next_cursor": encode_cursor([rows[-1].key]) if more and rows else None}

    async def purge(self, repository: str, older_than: float | None = None, q: str = "",
                    dry_run: bool = False, policy: str | None = None) -> dict[str, Any]:
        """Remove cached entries (all, or those unused for `older_than`, or matching `q`)."""
        repo = self.repo(repository, "read" if dry_run else "delete", kind="proxy")
        since = None if older_than is None else now() - older_than
        count, size, after = 0, 0, ""
        while True:
            rows = await self.services.admin.entries_page(repo.name, after, since, q)
            for row in rows:
                if not dry_run:
                    await self.services.entries.delete(repo.name, row.key)
                count, size = count + 1, size + row.size
            if len(rows) < 1000:
                break
            after = rows[-1].key
        if not dry_run and count:
            self.services.entries.purged()
            self.record("cache.purge", repo, entries=count, bytes=size, older_than=older_than, q=q,
                        policy=policy or "purge")
        return {"repository": repo.name, "dry_run": dry_run, "entries": count, "bytes": size}


def file_json(row: FileRow) -> dict[str, Any]:
    return {"path": row.path, "size": row.size, "sha256": row.digest, "created": row.created,
            "downloads": row.downloads, "last_downloaded": row.last_download}


def entry_json(row: Any) -> dict[str, Any]:
    return {"key": row.key, "size": row.size, "sha256": row.digest, "fetched": row.fetched_at,
            "last_used": row.last_access}


def engine_error(exc: Exception) -> AdminError:
    """The engine's refusals of a write or delete as problem details."""
    from depot.cache.api import Conflict, Protected
    if isinstance(exc, Protected):
        return AdminError(403, "Protected", str(exc))
    if isinstance(exc, Conflict):
        return AdminError(409, "Conflict", str(exc))
    raise exc
