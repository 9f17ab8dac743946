"""`depot init`, `depot config show`, `depot check-config` and `depot --version`."""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any, Callable

import yaml

HEADER = """\
# depot configuration: the embedded default (what `depot serve` runs without --config), to edit.
# Every key can also be set as DEPOT_<KEY> (nested keys joined by __), e.g.
# DEPOT_CACHE__MAX_SIZE=50GiB or DEPOT_REPOSITORIES__PYPI_REMOTE__UPSTREAM=http://...
listen: 127.0.0.1:8080          # HOST:PORT
data_dir: ./depot-data          # blobs, database, temp files (one filesystem); relative to the working directory
public_url: null                # base URL clients see; default: Host / X-Forwarded-* of trusted proxies
trusted_proxies: [127.0.0.1, "::1"]
workers: 1                      # processes serving the port and sharing the store
access_log: true                # one line per request (buffered, written off the event loop)
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
login:
  max_failures: 10              # wrong passwords for one name within `window` lock it for `lockout`
  window: 10m
  lockout: 5m
metrics:
  anonymous: true               # /-/metrics without credentials (repositories anonymous cannot read left out)
repositories:
  # type proxy: pulls through from `upstream` (default: the format's public registry, or what the
  #   machine's pip/npm use) and caches; metadata_ttl revalidates metadata, negative_ttl caches 404s.
  # type hosted: packages published to depot. Anonymous users cannot read them (anonymous_read: true
  #   to allow); writes need a user with access, e.g.
  #     access: {alice: write, ci: read, "*": read}      # read < write < delete < admin
  # type group: members in order (first answer wins); publishing goes to deploy_to.
  # Upstream credentials: username + password (or password_env / password_file), or token.
"""
FORMAT_NOTES = {"pypi": "PyPI: pip, uv, twine", "npm": "npm, yarn, pnpm", "oci": "containers: docker, podman, skopeo",
                "generic": "generic files (curl)", "go": "Go modules", "cargo": "Cargo"}


def version() -> str:
    """depot's installed version."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version
    try:
        return dist_version("depot")
    except PackageNotFoundError:
        return "unknown"


def starter_config() -> str:
    """The embedded default as a commented YAML file (every format present)."""
    from .config import default_document
    lines = [HEADER.rstrip("\n")]
    seen: set[str] = set()
    for name, raw in default_document()["repositories"].items():
        fmt = raw.get("format", "")
        if fmt not in seen:
            seen.add(fmt)
            lines.append(f"  # --- {FORMAT_NOTES.get(fmt, fmt)}")
        if raw.get("type") == "hosted" and "access" not in raw:
            lines.append(f"  # {name}: {{{_flow(raw)[1:-1]}, access: {{alice: write}}}}")
        lines.append(f"  {name}: {_flow(raw)}")
    return "\n".join(lines) + "\n"


def _flow(raw: dict[str, Any]) -> str:
    return yaml.safe_dump(raw, default_flow_style=True, sort_keys=False, width=1000).strip()


def cmd_init(args: argparse.Namespace) -> int:
    """Write the starter config; never overwrite."""
    path = Path(args.file)
    if path.exists():
        print(f"depot: {path} exists; not overwriting", file=sys.stderr)
        return 2
    if not path.parent.is_dir():
        print(f"depot: cannot write {path}: no directory {path.parent.resolve()}", file=sys.stderr)
        return 2
    path.write_text(starter_config())
    print(f"wrote {path}")
    return 0


def cmd_check_config(args: argparse.Namespace, load: Callable[..., Any]) -> int:
    """Validate the file (positional, or --config); exit 2 with the offending key."""
    if args.file and args.config and args.file != args.config:
        print("depot: give the file once (FILE or --config)", file=sys.stderr)
        return 2
    args.config = args.file or args.config
    config = load(args)
    print(f"{args.config or '(embedded default)'}: ok ({len(config.repositories)} repositories)")
    return 0


SECRET_FIELDS = {"password", "token", "secret"}


def plain(value: Any, field: str = "") -> Any:
    """A dataclass tree as YAML-friendly data, secrets masked."""
    if field in SECRET_FIELDS:
        return None if value is None else "***"
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name), f.name) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def cmd_config(args: argparse.Namespace, load: Callable[..., Any]) -> int:
    """`depot config show`: the effective configuration (file, environment, options)."""
    config = load(args)
    print(yaml.safe_dump(plain(config), sort_keys=False, default_flow_style=False), end="")
    return 0


def register(sub: Any, common: Callable[..., None]) -> dict[str, Callable[..., int]]:
    """Add `init`, `check-config` and `config`; returns {command: handler(args, load)}."""
    init = sub.add_parser("init", help="write the embedded default configuration, commented, to edit")
    init.add_argument("file", nargs="?", default="depot.yaml", help="file to create (default depot.yaml)")
    check = sub.add_parser("check-config", help="validate a configuration (exit 2 naming the bad key)")
    check.add_argument("file", nargs="?", help="the file (same as --config)")
    common(check, data=False)
    config = sub.add_parser("config", help="show the effective configuration")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    show = config_sub.add_parser("show", help="print the configuration in effect (environment applied, secrets masked)")
    common(show, data=True)
    return {"init": lambda args, load: cmd_init(args), "check-config": cmd_check_config, "config": cmd_config}
