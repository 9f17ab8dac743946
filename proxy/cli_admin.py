"""`depot packages|images|cache|cleanup …`: the administration API's operations from the shell,
on the server's store, through the same code (proxy/admin_ops.py, proxy/cleanup.py).
Every command takes --json (the API's JSON); deletions are audited as `cli:<user>`."""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import Any, Awaitable, Callable

from .units import parse_duration


POSITIONAL_HELP = {"repository": "repository name", "name": "package name", "version": "version",
                   "image": "image name (e.g. team/app)"}


def register(sub: Any, common: Callable[[argparse.ArgumentParser], None]) -> dict[str, Callable[..., int]]:
    """Add the subcommands; returns {command: handler} for the CLI's table."""
    def leaf(parent: Any, name: str, help_text: str, *positional: str) -> argparse.ArgumentParser:
        parser = parent.add_parser(name, help=help_text)
        for arg in positional:
            parser.add_argument(arg, help=POSITIONAL_HELP.get(arg, arg))
        parser.add_argument("--json", action="store_true", help="print the API's JSON")
        common(parser)
        return parser

    packages = sub.add_parser("packages", help="list, show and delete hosted packages").add_subparsers(
        dest="admin_command", required=True)
    listing = leaf(packages, "list", "packages across repositories")
    listing.add_argument("--repository", help="only this repository")
    listing.add_argument("--format", help="only this format (npm, pypi, …)")
    listing.add_argument("-q", "--query", help="only names containing this")
    listing.add_argument("--sort", default="name", help="name, created, size or downloads (-x: descending)")
    leaf(packages, "show", "a package's versions, or one version's files", "repository", "name").add_argument(
        "version", nargs="?", help="one version (its files)")
    delete = leaf(packages, "delete", "delete a version (or one file with --file)", "repository", "name", "version")
    delete.add_argument("--file", help="only this file of the version")
    images = sub.add_parser("images", help="container image tags").add_subparsers(dest="admin_command", required=True)
    leaf(images, "tags", "an image's tags", "repository", "image")
    untag = leaf(images, "delete", "delete the tags matching a regex", "repository", "image")
    untag.add_argument("--regex", required=True, help="tags matching this regular expression")
    untag.add_argument("--dry-run", action="store_true", help="list what would be deleted, delete nothing")
    cache = sub.add_parser("cache", help="proxy caches").add_subparsers(dest="admin_command", required=True)
    purge = leaf(cache, "purge", "remove cached entries of a proxy repository", "repository")
    purge.add_argument("--older-than", help="only entries unused for this long (e.g. 90d)")
    purge.add_argument("-q", "--query", default="", help="only keys containing this")
    purge.add_argument("--dry-run", action="store_true", help="list what would be removed, remove nothing")
    clean = leaf(sub, "cleanup", "run the repositories' cleanup policies (progress on stderr)")
    clean.add_argument("--repository", help="only this repository's policy")
    clean.add_argument("--dry-run", action="store_true", help="list what would be deleted, delete nothing")
    return {"packages": cmd_admin, "images": cmd_admin, "cache": cmd_admin, "cleanup": cmd_admin}


def _progress(repo: str, done: int, total: int) -> None:
    print(f"\rcleanup {repo}: {done}/{total}", end="\n" if done == total else "", file=sys.stderr, flush=True)


async def _operation(args: argparse.Namespace, admin: Any) -> Any:
    from . import cleanup
    command, sub = args.command, getattr(args, "admin_command", None)
    table: dict[tuple[str, str | None], Callable[[], Awaitable[Any]]] = {
        ("packages", "list"): lambda: _all_pages(admin, args),
        ("packages", "show"): lambda: (admin.version(args.repository, args.name, args.version)
                                       if args.version is not None else admin.package(args.repository, args.name)),
        ("packages", "delete"): lambda: admin.delete_version(args.repository, args.name, args.version, args.file),
        ("images", "tags"): lambda: admin.tags(args.repository, args.image),
        ("images", "delete"): lambda: admin.delete_tags(args.repository, args.image, args.regex, args.dry_run),
        ("cache", "purge"): lambda: admin.purge(args.repository, parse_duration(args.older_than)
                                                if args.older_than else None, args.query, args.dry_run),
        ("cleanup", None): lambda: cleanup.run(admin, args.repository, args.dry_run, _progress),
    }
    return await table[(command, sub)]()


async def _all_pages(admin: Any, args: argparse.Namespace) -> dict[str, Any]:
    items, cursor = [], None
    while True:
        page = await admin.packages(args.repository, args.format, args.query, args.sort, cursor, 1000)
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return {"items": items, "next_cursor": None}


async def _run(args: argparse.Namespace, config: Any) -> Any:
    from depot.cache.services import Services
    from depot.registry import FORMATS

    from .admin_ops import Admin
    from .app import settings_of
    services = Services(settings_of(config), config.repositories)
    try:
        admin = Admin(services, {name: cls() for name, cls in FORMATS.items()}, lambda repo, perm: True,
                      f"cli:{os.environ.get('USER', 'unknown')}", services.storage.audit)
        return await _operation(args, admin)
    finally:
        await services.close()


def cmd_admin(args: argparse.Namespace, load: Callable[..., Any]) -> int:
    from .admin_ops import AdminError
    config = load(args)
    try:
        result = asyncio.run(_run(args, config))
    except (AdminError, ValueError) as exc:
        print(f"depot: {getattr(exc, 'detail', exc)}", file=sys.stderr)
        return 2 if not isinstance(exc, AdminError) or exc.status != 404 else 1
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(render(args, result))
    return 0


def render(args: argparse.Namespace, result: Any) -> str:
    """A short human-readable form of an operation's result."""
    if args.command == "cleanup":
        lines = []
        for item in result:
            verb = "would delete" if args.dry_run else "deleted"
            gone = [f"{d['package']}:{d['version']}" for d in item.get("deleted", [])]
            what = (f"{item.get('entries', 0)} entries" if item.get("policy") == "unused_for"
                    else ", ".join(gone) or "nothing")
            lines.append(f"{item['repository']}: {verb} {what} ({item.get('bytes', 0)} bytes)")
        return "\n".join(lines) or "no repository has a cleanup policy"
    if isinstance(result, dict) and "items" in result:
        rows = result["items"]
        return "\n".join(" ".join(f"{v}" for k, v in row.items() if k in ("repository", "name", "tag", "versions",
                                                                           "latest", "size", "digest"))
                         for row in rows)
    return json.dumps(result, indent=2)
