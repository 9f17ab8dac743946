"""`depot export DIR` / `depot import DIR`: back up and restore hosted content and config.

An export is a portable directory::

    DIR/manifest.json      {"kind": "depot-export", "version": 1, "repositories": [...],
                            "files": [{repo, path, sha256, size, content_type, meta, created}],
                            "config": "config/depot.yaml"}
    DIR/blobs/<sha256>     every blob a hosted file refers to, once
    DIR/config/depot.yaml  the configuration file (or the embedded default)

Both commands work on the data directory directly (SQLite WAL, content-addressed blobs), so
they are safe while a server runs. Export reads the catalog in one snapshot and verifies every
blob it copies; manifest.json is written last, so an interrupted export has none. Import
verifies every blob's size and sha256 before it writes anything; then it stores the blobs
(each committed before the catalog row that names it) and writes the catalog in one
transaction. Proxy caches are not exported: they refill from upstream.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable

from .progress import Progress

log = logging.getLogger("depot.backup")

KIND = "depot-export"
VERSION = 1
CHUNK = 1024 * 1024
FILE_KEYS = ("repo", "path", "sha256", "size", "content_type", "meta", "created")


class BackupError(Exception):
    """An export or import that cannot proceed; the message says why."""


def register(sub: argparse._SubParsersAction, common: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add the `export` and `import` subcommands."""
    export = sub.add_parser("export", help="back up hosted content and config into a directory")
    export.add_argument("dir", help="target directory (created; must not hold an export already)")
    export.add_argument("--repo", action="append", default=[], help="only this repository (repeatable)")
    common(export)
    restore = sub.add_parser("import", help="restore an export into the data directory")
    restore.add_argument("dir", help="directory written by `depot export`")
    restore.add_argument("--replace", action="store_true",
                         help="overwrite hosted files that exist with different content")
    common(restore)


# ------------------------------------------------------------------------ export

def cmd_export(args: argparse.Namespace) -> int:
    """Write DIR/blobs, DIR/config and (last) DIR/manifest.json."""
    from depot.cache.catalog import snapshot_files
    from depot.cache.storage import open_storage

    from .cli import _load
    config = _load(args)
    if not (config.data_dir / "depot.db").is_file():
        print(f"depot: export: {config.data_dir} holds no depot store (no depot.db)", file=sys.stderr)
        return 2
    for name in args.repo:
        repo = config.repositories.get(name)
        if repo is None:
            print(f"depot: export: no repository {name!r} (known: {', '.join(sorted(config.repositories))})",
                  file=sys.stderr)
            return 2
        if not repo.is_hosted:
            print(f"depot: export: {name} is a {repo.type}: an export holds hosted content only (proxy caches "
                  "refill from their upstream; a group's hosted members are exported by name)", file=sys.stderr)
            return 2
    target = Path(args.dir)
    if (target / "manifest.json").exists():
        print(f"depot: {target} already holds an export; choose an empty directory", file=sys.stderr)
        return 1
    (target / "blobs").mkdir(parents=True, exist_ok=True)
    storage = open_storage(config.data_dir)
    try:
        rows = storage.db.run_sync(lambda conn: snapshot_files(conn, args.repo))
    finally:
        storage.close()
    blobs = storage.blobs
    try:
        files = _copy_blobs(rows, blobs, target / "blobs")
    except BackupError as exc:
        print(f"depot: export: {exc}", file=sys.stderr)
        return 1
    config_name = _export_config(args.config, target)
    repos = sorted({f["repo"] for f in files} | set(args.repo))
    manifest = {"kind": KIND, "version": VERSION, "created": time.time(), "config": config_name,
                "repositories": [_repo_doc(config.repositories.get(name), name) for name in repos],
                "files": files}
    _write_atomic(target / "manifest.json", json.dumps(manifest, indent=1).encode())
    total = sum(f["size"] for f in files)
    log.info("export done dir=%s files=%d bytes=%d", target, len(files), total)
    blobs_count = len({f["sha256"] for f in files})
    print(f"export: {len(files)} files ({blobs_count} distinct blobs) in {len(repos)} repositories, "
          f"{total} bytes -> {target}")
    return 0


def _copy_blobs(rows: list[dict[str, Any]], blobs: Any, out: Path) -> list[dict[str, Any]]:
    """Copy each distinct blob once, verifying it; files whose blob vanished meanwhile are dropped."""
    digests = {r["sha256"]: r["size"] for r in rows}
    progress = Progress("export", total=len(digests), total_bytes=sum(digests.values()))
    missing: set[str] = set()
    for digest, size in digests.items():
        try:
            _copy_verified(blobs.path(digest), out / digest, digest, size)
        except FileNotFoundError:
            log.warning("export: blob vanished digest=%s", digest)
            missing.add(digest)
            progress.message(f"export: blob {digest} is gone (deleted and collected meanwhile); skipped")
        progress.advance(1, size)
    progress.finish()
    return [r for r in rows if r["sha256"] not in missing]


def _copy_verified(source: Path, target: Path, digest: str, size: int) -> None:
    """Copy source to target, checking size and sha256 (a corrupt store fails the export)."""
    if target.is_file() and target.stat().st_size == size and _sha256_file(target) == digest:
        return                                      # resumed export: already there and sound
    hasher = hashlib.sha256()
    partial = target.with_name(target.name + ".part")
    with open(source, "rb") as src, open(partial, "wb") as dst:
        while chunk := src.read(CHUNK):
            hasher.update(chunk)
            dst.write(chunk)
        dst.flush()
        os.fsync(dst.fileno())
    if hasher.hexdigest() != digest or partial.stat().st_size != size:
        partial.unlink()
        raise BackupError(f"stored blob {digest} is corrupt (sha256 {hasher.hexdigest()}); run a store check")
    os.replace(partial, target)


def _export_config(config_path: str | None, target: Path) -> str:
    """Copy the config file (or write the embedded default) to DIR/config/depot.yaml."""
    import yaml

    from .config import default_document
    folder = target / "config"
    folder.mkdir(exist_ok=True)
    if config_path:
        shutil.copyfile(config_path, folder / "depot.yaml")
    else:
        text = "# the embedded default configuration (no --config was given)\n"
        (folder / "depot.yaml").write_text(text + yaml.safe_dump(default_document(), sort_keys=False))
    return "config/depot.yaml"


def _repo_doc(repo: Any, name: str) -> dict[str, Any]:
    if repo is None:
        return {"name": name, "format": None, "type": None}
    return {"name": name, "format": repo.format, "type": repo.type}


def _write_atomic(path: Path, data: bytes) -> None:
    partial = path.with_name(path.name + ".part")
    with open(partial, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(partial, path)


def _sha256_file(path: Path) -> str:
    hasher = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            hasher.update(chunk)
    return hasher.hexdigest()


# ------------------------------------------------------------------------ import

def cmd_import(args: argparse.Namespace) -> int:
    """Verify everything in DIR, then store blobs and write the catalog."""
    source = Path(args.dir)
    try:
        manifest = read_manifest(source)
        problems = verify_blobs(source, manifest["files"])
    except BackupError as exc:
        print(f"depot: import: {exc}", file=sys.stderr)
        return 1
    if problems:
        for problem in problems[:20]:
            print(f"import: {problem}", file=sys.stderr)
        print(f"depot: import: {len(problems)} blobs failed verification; nothing was written",
              file=sys.stderr)
        return 1
    _restore_config(args, source, manifest)
    from .cli import _load
    config = _load(args)
    _warn_unknown_repos(manifest, config.repositories)
    _store_blobs(source, manifest["files"], config.data_dir)
    restored, unchanged, conflicts = _write_catalog(config.data_dir, manifest["files"], args.replace)
    log.info("import done dir=%s restored=%d unchanged=%d conflicts=%d", source, restored, unchanged,
             len(conflicts))
    print(f"import: {restored} files restored, {unchanged} already present, {len(conflicts)} conflicts")
    for repo, path in conflicts[:20]:
        print(f"import: kept the existing, different {repo}/{path} (use --replace to overwrite)",
              file=sys.stderr)
    return 1 if conflicts else 0


def read_manifest(source: Path) -> dict[str, Any]:
    """Load and validate DIR/manifest.json (BackupError names the first problem)."""
    from depot.cache.blobs import HEX64
    from depot.registry.repo import REPO_NAME
    try:
        manifest = json.loads((source / "manifest.json").read_text())
    except FileNotFoundError:
        raise BackupError(f"{source}/manifest.json is missing (not an export, or an interrupted one)") from None
    except (OSError, ValueError) as exc:
        raise BackupError(f"cannot read {source}/manifest.json: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("kind") != KIND:
        raise BackupError("manifest.json is not a depot export")
    if manifest.get("version") != VERSION:
        raise BackupError(f"unsupported export version {manifest.get('version')!r}")
    files = manifest.get("files")
    if not isinstance(files, list):
        raise BackupError("manifest.json: files must be a list")
    for index, item in enumerate(files):
        where = f"manifest.json: files[{index}]"
        if not isinstance(item, dict) or any(key not in item for key in FILE_KEYS):
            raise BackupError(f"{where}: needs {', '.join(FILE_KEYS)}")
        if not isinstance(item["repo"], str) or not REPO_NAME.match(item["repo"]):
            raise BackupError(f"{where}: invalid repository name {item['repo']!r}")
        if not isinstance(item["path"], str) or not item["path"] or "\0" in item["path"]:
            raise BackupError(f"{where}: invalid path {item['path']!r}")
        if not isinstance(item["sha256"], str) or not HEX64.match(item["sha256"]):
            raise BackupError(f"{where}: invalid sha256 {item['sha256']!r}")
        if not isinstance(item["size"], int) or item["size"] < 0 or not isinstance(item["meta"], dict):
            raise BackupError(f"{where}: invalid size or meta")
    return manifest


def verify_blobs(source: Path, files: list[dict[str, Any]]) -> list[str]:
    """Check every blob the manifest names: present, the right size, the right sha256."""
    digests: dict[str, int] = {}
    problems = []
    for item in files:
        if digests.setdefault(item["sha256"], item["size"]) != item["size"]:
            problems.append(f"{item['repo']}/{item['path']}: size disagrees with another file of the same blob")
    progress = Progress("verify", total=len(digests), total_bytes=sum(digests.values()))
    for digest, size in digests.items():
        blob = source / "blobs" / digest
        if not blob.is_file():
            problems.append(f"blobs/{digest}: missing")
        elif blob.stat().st_size != size:
            problems.append(f"blobs/{digest}: {blob.stat().st_size} bytes, the manifest says {size}")
        elif _sha256_file(blob) != digest:
            problems.append(f"blobs/{digest}: content does not match its sha256")
        progress.advance(1, size)
    progress.finish()
    return problems


def _restore_config(args: argparse.Namespace, source: Path, manifest: dict[str, Any]) -> None:
    """With --config naming a file that does not exist, put the exported config there."""
    exported = source / str(manifest.get("config") or "config/depot.yaml")
    if args.config and not Path(args.config).exists() and exported.is_file():
        Path(args.config).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(exported, args.config)
        print(f"import: restored the configuration to {args.config}", file=sys.stderr)
    elif exported.is_file():
        print(f"import: the exported configuration is {exported} (not applied)", file=sys.stderr)


def _warn_unknown_repos(manifest: dict[str, Any], repos: dict[str, Any]) -> None:
    for name in sorted({item["repo"] for item in manifest["files"]}):
        repo = repos.get(name)
        if repo is None or not repo.is_hosted:
            print(f"import: warning: {name} is not a hosted repository in this configuration; "
                  "its files are restored but served only once it is", file=sys.stderr)


def _store_blobs(source: Path, files: list[dict[str, Any]], data_dir: Path) -> None:
    """Copy every blob into the store (verified again on commit); refresh ones already there."""
    from depot.cache.storage import open_blobs
    blobs = open_blobs(data_dir)
    digests = {item["sha256"]: item["size"] for item in files}
    progress = Progress("import", total=len(digests), total_bytes=sum(digests.values()))
    for digest, size in digests.items():
        if blobs.exists(digest):
            os.utime(blobs.path(digest))          # young again: gc's grace period protects it
        else:
            writer = blobs.writer()
            try:
                with open(source / "blobs" / digest, "rb") as fh:
                    while chunk := fh.read(CHUNK):
                        writer.write(chunk)
            except BaseException:
                writer.abort()
                raise
            writer.commit(expect_sha256=digest)
        progress.advance(1, size)
    progress.finish()


def _write_catalog(data_dir: Path, files: list[dict[str, Any]],
                   replace: bool) -> tuple[int, int, list[tuple[str, str]]]:
    """Restore the catalog rows in one transaction (see cache.catalog.restore_files)."""
    from depot.cache.catalog import restore_files
    from depot.cache.storage import open_database
    db = open_database(data_dir, create=True)
    try:
        return db.run_sync(lambda conn: restore_files(conn, files, replace))
    finally:
        db.close()
