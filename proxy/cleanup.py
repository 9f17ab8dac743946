"""Cleanup policies: plan (a dry run lists exactly what a run deletes), run, schedule.

Hosted repositories: per package, the versions (tags) `cache.retention.to_delete` picks, never a
protected or immutable one. Proxy repositories: entries unused for `cleanup.unused_for`.
The schedule runs in the server, one run at a time across workers (an flock); every run is
audited, counted (depot_cleanup_deleted_total, depot_cleanup_reclaimed_bytes_total) and its
result kept in <data_dir>/cleanup.json (last run per repository)."""
from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import os
from pathlib import Path
from typing import Any, Callable

from depot.cache import metrics
from depot.cache.retention import VersionFacts, now, to_delete
from depot.cache.types import RepoConfig

from .admin_ops import Admin, AdminError

log = logging.getLogger("depot.cleanup")
Progress = Callable[[str, int, int], None]
SCHEDULE_TICK = 30.0
LAST_RUN = "cleanup.json"


async def plan_hosted(admin: Admin, repo: RepoConfig) -> list[dict[str, Any]]:
    """What a cleanup run of a hosted repository deletes: [{package, version, files, bytes}]."""
    rules, fmt = repo.retention, admin.formats[repo.format]
    per_package: dict[str, dict[str, VersionFacts]] = {}
    sizes: dict[tuple[str, str], int] = {}
    async for row in admin.services.admin.iter_files([repo.name]):
        found = fmt.package_of(row.path)
        if found is None:
            continue
        package, version = found
        old = per_package.setdefault(package, {}).get(version)
        last = max(filter(None, [row.last_download, old.last_download if old else None]), default=None)
        created = max(row.created, old.created) if old else row.created
        files = (old.files if old else ()) + (row.path,)
        per_package[package][version] = VersionFacts(package, version, created, last, files)
        sizes[found] = sizes.get(found, 0) + row.size
    at, doomed = now(), []
    for package in sorted(per_package):
        candidates = [v for v in per_package[package].values()
                      if rules.protection(v.package, v.version) is None and not rules.immutable(v.package, v.version)]
        for facts in to_delete(rules.cleanup, candidates, at):
            doomed.append({"package": package, "version": facts.version, "files": list(facts.files),
                           "bytes": sizes[(package, facts.version)], "created": facts.created})
    return sorted(doomed, key=lambda d: (d["package"], d["created"], d["version"]))


async def run_repo(admin: Admin, repo: RepoConfig, dry_run: bool, progress: Progress | None = None) -> dict[str, Any]:
    """One repository's cleanup (or its dry run)."""
    cleanup = repo.retention.cleanup
    if repo.is_proxy:
        if cleanup.unused_for is None:
            return {"repository": repo.name, "policy": None}
        result = await admin.purge(repo.name, older_than=cleanup.unused_for, dry_run=dry_run, policy="unused_for")
        if not dry_run and result["entries"]:
            metrics.CLEANUP_DELETED.labels(repo.name, repo.format, "unused_for").inc(result["entries"])
            metrics.CLEANUP_BYTES.labels(repo.name, repo.format).inc(result["bytes"])
        return {"repository": repo.name, "policy": "unused_for", "dry_run": dry_run,
                "entries": result["entries"], "bytes": result["bytes"]}
    doomed = await plan_hosted(admin, repo)
    if not dry_run:
        hosted = admin.hosted(repo, may=lambda perm: True)
        fmt = admin.formats[repo.format]
        for index, item in enumerate(doomed, 1):
            await fmt.admin_delete(hosted, item["package"], item["version"], item["files"])
            admin.record("delete", repo, package=item["package"], version=item["version"], via="cleanup")
            metrics.CLEANUP_DELETED.labels(repo.name, repo.format, "cleanup").inc()
            metrics.CLEANUP_BYTES.labels(repo.name, repo.format).inc(item["bytes"])
            if progress is not None:
                progress(repo.name, index, len(doomed))
    return {"repository": repo.name, "policy": "cleanup", "dry_run": dry_run,
            "deleted": [{k: item[k] for k in ("package", "version", "bytes")} for item in doomed],
            "bytes": sum(item["bytes"] for item in doomed)}


def policy_repos(admin: Admin, repository: str | None = None) -> list[RepoConfig]:
    """Repositories with an active cleanup policy (or the one named)."""
    if repository:
        repo = admin.repo(repository)
        if repo.is_group:
            raise AdminError(400, "Wrong repository type", f"{repository} is a group: clean its members")
        return [repo]
    return [r for r in sorted(admin.services.repos.values(), key=lambda r: r.name)
            if r.retention.cleanup.active and admin.allowed(r, "read")]


async def run(admin: Admin, repository: str | None = None, dry_run: bool = False,
              progress: Progress | None = None) -> list[dict[str, Any]]:
    """Cleanup of every repository with a policy (or one): results per repository."""
    results = []
    for repo in policy_repos(admin, repository):
        if not dry_run and not admin.allowed(repo, "delete"):
            continue
        result = await run_repo(admin, repo, dry_run, progress)
        results.append(result)
        if not dry_run:
            remember(Path(admin.services.settings.data_dir), repo.name, result)
    return results


def remember(data_dir: Path, repo: str, result: dict[str, Any]) -> None:
    """Keep the last run's summary per repository (shown by the API)."""
    path = data_dir / LAST_RUN
    try:
        runs = json.loads(path.read_text())
    except (OSError, ValueError):
        runs = {}
    runs[repo] = {"time": now(), "deleted": len(result.get("deleted", [])) + int(result.get("entries", 0)),
                  "bytes": result.get("bytes", 0)}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(runs))
    os.replace(tmp, path)


def last_runs(data_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((Path(data_dir) / LAST_RUN).read_text())
    except (OSError, ValueError):
        return {}


async def schedule_loop(make_admin: Callable[[], Admin], data_dir: Path) -> None:
    """Run the policies whose `cleanup.schedule` elapsed; one run at a time across workers."""
    lock_path = Path(data_dir) / "tmp" / "cleanup.lock"
    while True:
        admin = make_admin()
        schedules = [r.retention.cleanup.schedule for r in admin.services.repos.values()
                     if r.retention.cleanup.schedule]
        await asyncio.sleep(max(1.0, min([SCHEDULE_TICK, *schedules])))
        try:
            await _scheduled_once(admin, data_dir, lock_path)
        except Exception:  # keep the schedule alive whatever happens
            log.exception("scheduled cleanup failed")


async def _scheduled_once(admin: Admin, data_dir: Path, lock_path: Path) -> None:
    due = [r for r in policy_repos(admin) if r.retention.cleanup.schedule is not None
           and now() - last_runs(data_dir).get(r.name, {}).get("time", 0) >= r.retention.cleanup.schedule]
    if not due:
        return
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return                      # another worker is running it
        for repo in due:
            if now() - last_runs(data_dir).get(repo.name, {}).get("time", 0) < repo.retention.cleanup.schedule:
                continue                # done by another worker meanwhile
            result = await run_repo(admin, repo, dry_run=False)
            remember(Path(data_dir), repo.name, result)
            log.info("scheduled cleanup repo=%s result=%s", repo.name, json.dumps(result)[:500])
    finally:
        os.close(fd)
