"""The `depot` command: serve, init, check-config, gc, stats, warm, export, import."""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

from . import backup, warm

STARTER_CONFIG = """\
# depot configuration. Every key can also be set as DEPOT_<KEY> (nested keys joined by __),
# e.g. DEPOT_CACHE__MAX_SIZE=50GiB or DEPOT_REPOSITORIES__FILES_REMOTE__UPSTREAM=http://...
listen: 127.0.0.1:8080          # HOST:PORT
data_dir: ./depot-data          # blobs, database, temp files (one filesystem)
public_url: null                # base URL clients see; default: Host / X-Forwarded-* of trusted proxies
trusted_proxies: [127.0.0.1, "::1"]
workers: 1                      # processes serving the port and sharing the store
keepalive_timeout: 75s          # an idle connection is closed after this
header_timeout: 30s             # request line + headers must arrive within this of their first byte
client_timeout: 60s             # an upload that sends nothing for this long is answered 408
health:
  min_free: 1GiB                # less free space in data_dir: /-/healthz is 503 (degraded); or e.g. 5%
cache:
  max_size: 20GiB               # proxy content beyond this is evicted, least recently used first
  memory_size: 128MiB           # in-memory copy of small hot files, per worker
upstream:
  connect_timeout: 10s
  read_timeout: 60s
  retries: 2                    # on connect errors and 502/503/504 only
repositories:
  # A proxy pulls through from its upstream and caches; metadata_ttl applies to paths that
  # match metadata_patterns, everything else is immutable. negative_ttl caches upstream 404s.
  files-remote: {format: generic, type: proxy, upstream: "http://127.0.0.1:9000/", metadata_ttl: 5m, negative_ttl: 1m,
                 metadata_patterns: ["*.json", "*/index.html"]}
  # Upstream credentials: username + password (or password_env / password_file), or token.
  files-local:  {format: generic, type: hosted}
  files:        {format: generic, type: group, members: [files-local, files-remote], deploy_to: files-local}
"""


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="depot.yaml (default: the embedded configuration)")
    parser.add_argument("--data", help="data directory (overrides data_dir)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="depot", description="caching dependency proxy")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve repositories")
    _common(serve)
    serve.add_argument("--listen", help="HOST:PORT")
    serve.add_argument("--workers", type=int, help="processes sharing one port and store")
    serve.add_argument("--forward-proxy", metavar="HOST:PORT", help="also accept HTTPS_PROXY clients here")
    init = sub.add_parser("init", help="write a commented starter config")
    init.add_argument("file", nargs="?", default="depot.yaml")
    _common(init)
    check = sub.add_parser("check-config", help="validate a config file")
    check.add_argument("file")
    _common(check)
    gc = sub.add_parser("gc", help="remove blobs nothing references")
    _common(gc)
    gc.add_argument("--dry-run", action="store_true")
    gc.add_argument("--grace", default="5m", help="keep blobs younger than this (default 5m)")
    stats = sub.add_parser("stats", help="per-repository entries, bytes, hits and misses")
    _common(stats)
    stats.add_argument("--json", action="store_true")
    warm.register(sub, _common)
    backup.register(sub, _common)
    ca = sub.add_parser("ca", help="the forward proxy's interception CA")
    ca_sub = ca.add_subparsers(dest="ca_command", required=True)
    export_ca = ca_sub.add_parser("export", help="print the CA certificate (PEM) for clients to trust")
    _common(export_ca)
    from . import cli_policy, cli_users, docs
    for name, handler in {**cli_users.register(sub, _common), **cli_policy.register(sub, _common),
                          **docs.register(sub, _common)}.items():
        COMMANDS[name] = lambda args, handler=handler: handler(args, _load)
    return parser


def _load(args: argparse.Namespace, **extra: Any) -> Any:
    from .config import ConfigError, load
    overrides = {"data_dir": args.data, **extra}
    # only commands that talk to upstreams resolve default ones (pip/npm/apt configuration)
    resolve = args.command in ("serve", "check-config", "warm")
    try:
        return load(args.config, overrides=overrides, resolve_upstreams=resolve)
    except ConfigError as exc:
        print(f"depot: config error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


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
            sockets = exclusive.bind(*config.host_port, count=config.workers)
            if config.forward_proxy.listen is not None:     # mitmproxy binds it itself: check it is free
                exclusive.check_free(config.forward_proxy.listen)
        except exclusive.StartError as exc:
            print(f"depot: {exc}", file=sys.stderr)
            return 1
        _prepare_data_dir(config.data_dir)
        _bootstrap_admin(config.data_dir)
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


def _bootstrap_admin(data_dir: Path) -> None:
    from depot.cache.storage import open_database

    from .access import bootstrap_admin
    from .auth import Authenticator
    from .users import AuditLog
    db = open_database(data_dir, create=True)
    try:
        bootstrap_admin(Authenticator(db, data_dir, {}), AuditLog(data_dir / "audit.log"))
    finally:
        db.close()


def cmd_init(args: argparse.Namespace) -> int:
    path = Path(args.file)
    if path.exists():
        print(f"depot: {path} exists; not overwriting", file=sys.stderr)
        return 1
    path.write_text(STARTER_CONFIG)
    print(f"wrote {path}")
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    args.config = args.file
    config = _load(args)
    print(f"{args.file}: ok ({len(config.repositories)} repositories)")
    return 0


def _progress(label: str) -> Callable[[int, int], None]:
    def show(done: int, total: int) -> None:
        if done == total or done % 500 == 0:
            pct = 100 * done // max(total, 1)
            print(f"\r{label}: {done}/{total} ({pct}%)", end="\n" if done == total else "",
                  file=sys.stderr, flush=True)
    return show


def cmd_gc(args: argparse.Namespace) -> int:
    from depot.cache.evict import collect
    from depot.cache.storage import open_storage

    from .units import parse_duration
    config = _load(args)
    storage = open_storage(config.data_dir)
    blobs, db = storage.blobs, storage.db
    try:
        result = collect(db, blobs, dry_run=args.dry_run, grace=parse_duration(args.grace),
                         progress=_progress("scanning blobs"))
        if not args.dry_run:
            from .observe import record_gc_run
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
    db = open_database(config.data_dir)
    try:
        rows = repository_stats(db, config.repositories)
    finally:
        db.close()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    header = f"{'repository':24} {'format':8} {'type':7} {'entries':>8} {'bytes':>14} {'hits':>8} {'misses':>8}"
    print(header)
    for row in rows:
        print(f"{row['name']:24} {row['format']:8} {row['type']:7} {row['entries']:>8} {row['bytes']:>14}"
              f" {row['hits']:>8} {row['misses']:>8}")
    hits, misses = sum(r["hits"] for r in rows), sum(r["misses"] for r in rows)
    ratio = f"{100 * hits / (hits + misses):.1f}%" if hits + misses else "-"
    print(f"total: {len(rows)} repositories, {sum(r['entries'] for r in rows)} entries, "
          f"{human_bytes(sum(r['bytes'] for r in rows))}, hit ratio {ratio}")
    return 0


COMMANDS = {"serve": cmd_serve, "ca": cmd_ca, "init": cmd_init, "check-config": cmd_check_config,
            "gc": cmd_gc, "stats": cmd_stats, "warm": warm.cmd_warm,
            "export": backup.cmd_export, "import": backup.cmd_import}


def main(argv: list[str] | None = None) -> int:
    from depot.cache.storage import StoreMissing
    # everything depot writes (data directory, database, blobs, audit log, backups) is private
    os.umask(os.umask(0o077) | 0o077)
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except StoreMissing as exc:        # an admin command pointed at no store: say where we looked
        print(f"depot: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
