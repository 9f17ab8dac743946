"""`depot policy import FILE` (an OSV dump) and `depot policy check FORMAT NAME [VERSION]`."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Callable

Handler = Callable[[argparse.Namespace, Callable[..., Any]], int]


def register(sub: argparse._SubParsersAction, common: Callable[[argparse.ArgumentParser], None]) -> dict[str, Handler]:
    """Add the `policy` command; returns {command: handler}."""
    policy = sub.add_parser("policy", help="supply-chain policy: import malicious-package data, check a package")
    policy_sub = policy.add_subparsers(dest="policy_command", required=True)
    imp = policy_sub.add_parser("import", help="load an OSV dump (zip, folder or one JSON file) into the store")
    imp.add_argument("file", help="OSV data, e.g. the OpenSSF malicious-packages archive")
    common(imp)
    check = policy_sub.add_parser("check", help="would depot serve this package version? (exit 1 when blocked)")
    check.add_argument("format", help="format name (npm, pypi, …)")
    check.add_argument("name", help="package name")
    check.add_argument("version", nargs="?", help="version (omit for rules on the name)")
    check.add_argument("--repo", help="judge with this repository's own rules too")
    check.add_argument("--published", type=float, help="publish time (epoch seconds) for the cooldown")
    common(check)
    return {"policy": cmd_policy}


def cmd_policy(args: argparse.Namespace, load: Callable[..., Any]) -> int:
    config = load(args)
    if args.policy_command == "import":
        return _import(config, Path(args.file))
    return _check(config, args)


def _import(config: Any, source: Path) -> int:
    from depot.cache import osv
    from depot.cache.storage import open_database

    if not source.exists():
        print(f"depot: policy import: no such file or directory: {source}", file=sys.stderr)
        return 2
    def progress(count: int) -> None:
        print(f"\rpolicy import: {count} documents read", end="", file=sys.stderr, flush=True)

    db = open_database(config.data_dir, create=True)
    try:
        documents, records = db.run_sync(lambda conn: osv.import_into(conn, source, progress))
    except (ValueError, KeyError) as exc:
        print(f"depot: policy import: {source}: not OSV data ({exc})", file=sys.stderr)
        return 2
    finally:
        db.close()
    print(file=sys.stderr)
    print(f"policy import: {documents} documents, {records} package records from {source}")
    return 0


def _check(config: Any, args: argparse.Namespace) -> int:
    from depot.cache import osv
    from depot.cache.gate import Judge
    from depot.cache.storage import open_database
    from depot.registry import FORMATS
    if args.format not in FORMATS:
        print(f"depot: unknown format {args.format!r}; known: {', '.join(sorted(FORMATS))}", file=sys.stderr)
        return 2
    policy = config.policy
    if args.repo:
        repo = config.repositories.get(args.repo)
        if repo is None:
            print(f"depot: no repository named {args.repo!r}", file=sys.stderr)
            return 2
        if repo.policy is not None:
            policy = policy.merged(repo.policy)
    try:
        db = open_database(config.data_dir)
    except FileNotFoundError as exc:
        print(f"depot: {exc}", file=sys.stderr)
        return 2
    try:
        advisories = db.run_sync(lambda conn: osv.load(conn, config.osv_severity)).get(args.format, {})
    finally:
        db.close()
    judge = Judge(policy, FORMATS[args.format].version_scheme, advisories)
    verdict = judge.verdict(args.name, args.version, args.published)
    what = f"{args.name} {args.version}" if args.version else args.name
    if verdict is None:
        print(f"allowed: {what}")
        return 0
    print(f"blocked ({policy.mode}): {verdict.message(args.name, args.version)}")
    return 1
