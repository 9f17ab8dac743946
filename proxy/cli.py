"""The `depot` command: serve, init, check-config, gc, stats, warm, export, import."""
from __future__ import annotations

import argparse
import functools
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

from . import backup, warm

def _common(parser: argparse.ArgumentParser, data: bool = True) -> None:
    """The two options every subcommand that reads the configuration takes, spelled the same."""
    parser.add_argument("--config", metavar="FILE", help="depot.yaml (default: the embedded configuration)")
    # accepted everywhere (scripts pass both to every command), shown only where it matters
    parser.add_argument("--data", metavar="DIR",
                        help="data directory (default: data_dir of the config, ./depot-data, relative to "
                             "the working directory)" if data else argparse.SUPPRESS)


def build_parser() -> argparse.ArgumentParser:
    """The `depot` argument parser (every subcommand, every option with its help)."""
    from . import cli_config, cli_policy, cli_users, docs
    parser = argparse.ArgumentParser(prog="depot", description="caching dependency proxy and package registry")
    parser.add_argument("--version", action="version", version=f"depot {cli_config.version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = sub.add_parser("serve", help="serve repositories")
    _common(serve)
    serve.add_argument("--listen", metavar="HOST:PORT", help="address to listen on (overrides listen)")
    serve.add_argument("--workers", type=int, metavar="N", help="processes sharing one port and store")
    serve.add_argument("--forward-proxy", metavar="HOST:PORT", help="also accept HTTPS_PROXY clients here")
    gc = sub.add_parser("gc", help="remove blobs nothing references")
    _common(gc)
    gc.add_argument("--dry-run", action="store_true", help="only report what would be removed")
    gc.add_argument("--grace", default="5m", metavar="DURATION",
                    help="keep blobs younger than this, e.g. 90s, 5m, 2h (default 5m)")
    stats = sub.add_parser("stats", help="per-repository entries, bytes, hits and misses")
    _common(stats)
    stats.add_argument("--json", action="store_true", help="machine-readable output")
    warm.register(sub, _common)
    backup.register(sub, _common)
    from . import migrate
    migrate.register(sub, _common)
    COMMANDS["migrate"] = lambda args: migrate.cmd_migrate(args, _load)
    ca = sub.add_parser("ca", help="the forward proxy's interception CA")
    ca_sub = ca.add_subparsers(dest="ca_command", required=True)
    export_ca = ca_sub.add_parser("export", help="print the CA certificate (PEM) for clients to trust")
    _common(export_ca)
    from . import cli_admin, cli_keys
    for name, handler in {**cli_config.register(sub, _common), **cli_users.register(sub, _common),
                          **cli_policy.register(sub, _common), **docs.register(sub, _common),
                          **cli_admin.register(sub, _common), **cli_keys.register(sub, _common)}.items():
        COMMANDS[name] = functools.partial(handler, load=_load)  # type: ignore[call-arg]
    return parser


def _load(args: argparse.Namespace, **extra: Any) -> Any:
    from .config import ConfigError, load
    overrides = {"data_dir": getattr(args, "data", None), **extra}
    # only commands that talk to upstreams resolve default ones (pip/npm/apt configuration)
    resolve = args.command in ("serve", "check-config", "warm")
    config_file = getattr(args, "config", None)
    try:
        return load(config_file, overrides=overrides, resolve_upstreams=resolve)
    except ConfigError as exc:
        where = f"{config_file}: " if config_file and not str(exc).startswith((str(config_file), "DEPOT_")) else ""
        print(f"depot: config error: {where}{exc}", file=sys.stderr)
        raise SystemExit(2) from None


def store_dir(config: Any) -> Path:
    """The data directory of an existing store, for admin commands that must not create one."""
    from depot.cache.storage import StoreMissing
    data = Path(config.data_dir)
    if data.exists() and not data.is_dir():
        raise StoreMissing(f"data directory {data} is a file, not a directory")
    if not (data / "depot.db").is_file():
        raise StoreMissing(f"no depot store in {data.resolve()} (looked for {data.resolve() / 'depot.db'}); "
                           "give --data DIR or run from the directory that holds depot-data")
    return data


def cmd_serve(args: argparse.Namespace) -> int:
    metrics_dir = tempfile.mkdtemp(prefix="depot-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir  # before prometheus_client is imported
    try:
        config = _load(args, listen=args.listen, workers=args.workers,
                       **{"forward_proxy.listen": args.forward_proxy})
        from . import exclusive
        from .server import run, setup_logging
        setup_logging(config.log_level)
        try:
            exclusive.create_private_dir(config.data_dir)
            lock = exclusive.lock_data_dir(config.data_dir)      # held until this process ends
            host, port = config.host_port
            sockets = exclusive.bind(host, port, count=config.workers)
            if config.forward_proxy.listen is not None:     # mitmproxy binds it itself: check it is free
                exclusive.check_free(config.forward_proxy.listen)
        except exclusive.StartError as exc:
            print(f"depot: {exc}", file=sys.stderr)
            return 1
        _prepare_data_dir(config.data_dir)
        from .startup import report
        report(config, _bootstrap_admin(config))
        if config.forward_proxy.listen is not None:
            from .forward import ensure_ca
            ensure_ca(config.data_dir)          # before anything reports ready: `ca export` sees this CA
        try:
            return run(config, sockets)
        finally:
            for sock in sockets:
                sock.close()
            os.close(lock)
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


def _prepare_data_dir(data_dir: Path) -> None:
    """Create the data directory and clear leftovers of fetches from a previous run."""
    import logging
    from depot.cache.flight import Flights
    (data_dir / "tmp").mkdir(parents=True, exist_ok=True)
    removed = Flights(data_dir / "tmp").clean()
    for stray in (data_dir / "tmp").glob("blob-*.part"):
        stray.unlink(missing_ok=True)
        removed += 1
    if removed:
        logging.getLogger("depot.server").info("cleaned leftovers files=%d", removed)


def _bootstrap_admin(config: Any) -> str:
    from depot.cache.storage import open_accounts

    from .access import bootstrap_admin
    from .auth import Authenticator
    accounts = open_accounts(config.data_dir, config.database_url, create=True)
    try:
        return bootstrap_admin(Authenticator(accounts.users, config.data_dir, {}), accounts.audit)
    finally:
        accounts.close()


def _progress(label: str) -> Callable[[int, int], None]:
    def show(done: int, total: int) -> None:
        if done == total or done % 500 == 0:
            pct = 100 * done // max(total, 1)
            print(f"\r{label}: {done}/{total} ({pct}%)", end="\n" if done == total else "",
                  file=sys.stderr, flush=True)
    return show


def open_configured_storage(config: Any) -> Any:
    """The stores the config names (local files + SQLite, or S3 + PostgreSQL for several nodes)."""
    from depot.cache.storage import open_storage
    return open_storage(config.data_dir, config.storage.kind, s3=config.storage.s3_settings(),
                        database_url=config.database_url)


def cmd_gc(args: argparse.Namespace) -> int:
    from depot.cache.evict import collect

    from .units import parse_duration
    try:
        grace = parse_duration(args.grace)
    except ValueError as exc:
        print(f"depot: --grace: {exc}", file=sys.stderr)
        return 2
    config = _load(args)
    from depot.cache.storage import open_storage
    storage = open_configured_storage(config) if config.database_url else open_storage(store_dir(config))
    blobs, db = storage.blobs, storage.db
    try:
        result = collect(db, blobs, dry_run=args.dry_run, grace=grace,
                         progress=_progress("scanning blobs"))
        if not args.dry_run:
            from depot.cache.stats import record_gc_run
            record_gc_run(db, result.bytes_freed)      # a running depot exports it (depot_gc_*)
    finally:
        storage.close()
    verb = "would remove" if args.dry_run else "removed"
    print(f"gc: scanned {result.scanned} blobs, {verb} {result.removed} "
          f"({result.bytes_freed} bytes), kept {result.kept_young} younger than the grace period")
    return 0


def cmd_ca(args: argparse.Namespace) -> int:
    from .forward import ensure_ca
    config = _load(args)
    print(ensure_ca(config.data_dir).read_text(), end="")
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    import json

    from depot.cache.stats import repository_stats
    from depot.cache.storage import open_database

    from .progress import human_bytes
    config = _load(args)
    if config.database_url:
        storage = open_configured_storage(config)
        try:
            rows = repository_stats(storage.db, config.repositories)
        finally:
            storage.close()
    else:
        db = open_database(store_dir(config))
        try:
            rows = repository_stats(db, config.repositories)
        finally:
            db.close()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    header = (f"{'repository':24} {'format':8} {'type':7} {'entries':>8} {'bytes':>14} {'hits':>8} {'misses':>8}"
              f" {'negative':>8}")
    print(header)
    for row in rows:
        served = "  (served through the group; in its members' numbers)" if not row["counted_in_total"] else ""
        print(f"{row['name']:24} {row['format']:8} {row['type']:7} {row['entries']:>8} {row['bytes']:>14}"
              f" {row['hits']:>8} {row['misses']:>8} {row['negative']:>8}{served}")
    counted = [r for r in rows if r["counted_in_total"]]      # groups' requests are their members'
    hits, misses = sum(r["hits"] for r in counted), sum(r["misses"] for r in counted)
    ratio = f"{100 * hits / (hits + misses):.1f}%" if hits + misses else "-"
    print(f"total: {len(rows)} repositories, {sum(r['entries'] for r in rows)} entries, "
          f"{human_bytes(sum(r['bytes'] for r in rows))}, hit ratio {ratio}")
    return 0


COMMANDS = {"serve": cmd_serve, "ca": cmd_ca, "gc": cmd_gc, "stats": cmd_stats, "warm": warm.cmd_warm,
            "export": backup.cmd_export, "import": backup.cmd_import}


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; user errors end with a one-line message and exit 2, never a traceback."""
    from depot.cache.storage import StoreMissing
    # everything depot writes (data directory, database, blobs, audit log, backups) is private
    os.umask(os.umask(0o077) | 0o077)
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except StoreMissing as exc:        # an admin command pointed at no store: say where we looked
        print(f"depot: {exc}", file=sys.stderr)
        return 2
    except (EOFError, KeyboardInterrupt):
        print("\ndepot: interrupted (no input)", file=sys.stderr)
        return 2
    except OSError as exc:             # a path the user gave: missing folder, a file for a directory, …
        where = f" {exc.filename}" if exc.filename else ""
        print(f"depot:{where}: {exc.strerror or exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
