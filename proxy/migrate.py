"""`depot migrate --from-sqlite DIR`: move a single-node store (files + SQLite) into the
configured stores (S3 bucket and/or PostgreSQL) of a multi-node install.

Blobs are copied first, each verified against its digest on the way (nothing unverified gets a
content address); then the rows (entries, hosted files, tombstones, counters) in one transaction,
skipping rows the target already holds. Safe to run again: it copies only what is missing.
Users and tokens move too (the audit log stays in the source's audit.log).
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path
from typing import Any, AsyncIterator, Callable

from depot.cache.migration import copy_rows

log = logging.getLogger("depot.migrate")

def register(sub: Any, common: Callable[[argparse.ArgumentParser], None]) -> None:
    parser = sub.add_parser("migrate", help="move a single-node store into the configured S3 + PostgreSQL")
    common(parser)
    parser.add_argument("--from-sqlite", required=True, metavar="DIR",
                        help="the data directory of the single-node depot (holds depot.db and blobs/)")


async def _file_chunks(path: Path, size: int = 1024 * 1024) -> AsyncIterator[bytes]:
    with open(path, "rb") as handle:
        while chunk := await asyncio.to_thread(handle.read, size):
            yield chunk


async def copy_blobs(source: Any, target: Any) -> tuple[int, int]:
    """Every source blob into the target store, verified by digest; (copied, already there)."""
    copied = present = 0
    for digest, size, _ in await asyncio.to_thread(source.iter_digests):
        if await asyncio.to_thread(target.stat, digest) == size:
            present += 1
            continue
        await target.put_stream(_file_chunks(source.path(digest)), expect_sha256=digest)
        copied += 1
    return copied, present


def cmd_migrate(args: argparse.Namespace, load: Callable[..., Any]) -> int:
    from depot.cache.accounts import UserStore
    from depot.cache.storage import open_blobs, open_database

    from .cli import open_configured_storage
    config = load(args)
    if config.storage.kind == "local" and not config.database_url:
        print("depot: migrate: the config names no S3 storage and no PostgreSQL database to move into",
              file=sys.stderr)
        return 2
    source_dir = Path(args.from_sqlite)
    source_db = open_database(source_dir)
    UserStore(source_db)        # the source's account tables, brought to the current columns
    target = open_configured_storage(config)
    try:
        copied, present = asyncio.run(copy_blobs(open_blobs(source_dir), target.blobs)) \
            if config.storage.kind != "local" else (0, 0)
        counts = copy_rows(source_db, target.db) if config.database_url else {}
    finally:
        target.close()
        source_db.close()
    print(f"migrate: {copied} blobs copied (sha256 verified), {present} already there; "
          + ", ".join(f"{n} {t}" for t, n in counts.items()))
    return 0
