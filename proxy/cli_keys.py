"""`depot debian export-key REPO` / `depot rpm export-key REPO`: print a repository's public
signing key (armored) for apt's signed-by or dnf's gpgkey; the key is generated and stored in the
repository at first use, exactly as the server does (registry/signing.py)."""
from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any, Callable

SIGNING_FORMATS = ("debian", "rpm")


def register(sub: Any, common: Callable[[argparse.ArgumentParser], None]) -> dict[str, Callable[..., int]]:
    """Add one `<format> export-key` subcommand per signing format."""
    for fmt in SIGNING_FORMATS:
        parser = sub.add_parser(fmt, help=f"{fmt} repository tools")
        fmt_sub = parser.add_subparsers(dest=f"{fmt}_command", required=True)
        export = fmt_sub.add_parser("export-key", help="print the repository's public signing key")
        export.add_argument("repo", help="hosted or group repository of that format")
        common(export)
    return {fmt: cmd_export_key for fmt in SIGNING_FORMATS}


async def _public_key(data_dir: Any, repo: str) -> str:
    from depot.cache.storage import open_storage
    from depot.registry import signing
    storage = open_storage(data_dir)
    try:
        catalog, blobs = storage.catalog, storage.blobs
        found = await catalog.get(repo, signing.SECRET_PATH)
        if found is None:
            made = await asyncio.to_thread(signing.generate_key, repo)
            digest, size = await blobs.put_bytes(made.secret.encode())
            await catalog.put_new(repo, signing.SECRET_PATH, digest, size, "application/pgp-keys")
            found = await catalog.get(repo, signing.SECRET_PATH)   # a concurrent first use may have won
            assert found is not None
        secret = (await blobs.read(found.digest)).decode()
        return (await asyncio.to_thread(signing.public_of, secret)).public
    finally:
        storage.close()


def cmd_export_key(args: argparse.Namespace, load: Callable[..., Any]) -> int:
    config = load(args)
    repo = config.repositories.get(args.repo)
    if repo is None or repo.format != args.command or repo.is_proxy:
        print(f"depot: {args.repo} is not a hosted or group {args.command} repository", file=sys.stderr)
        return 2
    print(asyncio.run(_public_key(config.data_dir, repo.name)), end="")
    return 0
