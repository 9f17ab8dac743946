"""depot.yaml: loading, environment overrides and validation with errors that name the key."""
from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from depot.cache.gate import Policy, parse_policy
from depot.cache.osv import SEVERITY_ORDER
from depot.cache.retention import CLOCK_FILE_ENV
from depot.registry import FORMATS
from depot.registry.repo import REPO_NAME, REPO_TYPES, RESERVED_NAMES, RepoConfig, UpstreamAuth

from .config_retention import retention_of
from .units import parse_duration, parse_size

ENV_PREFIX = "DEPOT_"
NOT_SETTINGS = {"DEPOT_ADMIN_PASSWORD"}     # DEPOT_* variables that are not configuration keys


def unknown(key: str, known: Any) -> "ConfigError":
    """ConfigError for an unknown key, suggesting the closest known one."""
    import difflib
    leaf = key.rsplit(".", 1)[-1]
    close = difflib.get_close_matches(leaf, sorted(known), n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(sorted(known))}"
    return ConfigError(key, f"unknown setting{hint}")


class ConfigError(ValueError):
    """A configuration problem; `key` is the dotted path of the offending setting."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key


@dataclass(frozen=True)
class CacheConfig:
    max_size: int = 20 * 2**30
    memory_size: int = 128 * 2**20
    memory_item_max: int = 256 * 2**10


@dataclass(frozen=True)
class UpstreamConfig:
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    retries: int = 2
    ca_file: str | None = None          # extra CA bundle for upstream TLS (private registries)


@dataclass(frozen=True)
class StorageConfig:
    """`storage:` where blobs live: `local` (under data_dir) or `s3` (several nodes share a bucket)."""

    kind: str = "local"
    endpoint: str | None = None
    bucket: str = ""
    region: str = "us-east-1"
    access_key: str | None = None
    secret_key: str | None = None
    prefix: str = ""
    redirect: bool = False              # cache hits of large blobs answer 307 to a presigned URL
    redirect_min_size: int = 1024 * 1024
    local_cache_path: str | None = None  # local_cache: a node-local disk tier in front of S3
    local_cache_max_size: int = 0       # 0 (the default): no local tier

    def s3_settings(self) -> Any:
        """The engine's S3Settings (None for local storage)."""
        if self.kind != "s3":
            return None
        from depot.cache.blobs_s3 import S3Settings
        return S3Settings(self.endpoint, self.bucket, self.region, self.access_key, self.secret_key,
                          self.prefix, self.redirect, self.redirect_min_size, self.local_cache_path,
                          self.local_cache_max_size)


@dataclass(frozen=True)
class ForwardProxyConfig:
    listen: str | None = None           # HOST:PORT for HTTPS_PROXY clients; None: off
    refuse_unknown: bool = False        # refuse hosts no repository serves (default: tunnel)


@dataclass(frozen=True)
class HealthConfig:
    """health: {min_free: 1GiB} or {min_free: 5%}: less free space in the data directory's
    filesystem makes /-/healthz answer 503 (degraded)."""
    min_free_bytes: int = 2**30
    min_free_percent: float = 0.0


@dataclass(frozen=True)
class Config:
    listen: str = "127.0.0.1:8080"
    data_dir: Path = Path("./depot-data")
    public_url: str | None = None
    trusted_proxies: tuple[str, ...] = ("127.0.0.1", "::1")
    workers: int = 1
    log_level: str = "INFO"
    client_timeout: float = 60.0    # an upload body that sends nothing for this long is cut off
    keepalive_timeout: float = 75.0  # an idle connection (no request under way) is closed after this
    header_timeout: float = 30.0    # a request line + headers must arrive within this of their first byte
    access_log: bool = True         # one log line per request (depot.access)
    login_max_failures: int = 10    # wrong passwords for one name within login_window → locked
    login_window: float = 600.0
    login_lockout: float = 300.0
    login_token_ttl: float = 30 * 86400.0   # lifetime of tokens a client login (npm login) creates
    metrics_anonymous: bool = True  # /-/metrics without credentials (private repositories filtered out)
    metrics_users: tuple[str, ...] = ()     # users who see every metric (besides admins)
    cache: CacheConfig = CacheConfig()
    upstream: UpstreamConfig = UpstreamConfig()
    repositories: dict[str, RepoConfig] = field(default_factory=dict)
    forward_proxy: ForwardProxyConfig = ForwardProxyConfig()
    storage: StorageConfig = StorageConfig()
    database_url: str | None = None     # postgresql://… : metadata shared by several nodes
    node_url: str | None = None         # how the other nodes reach this one (default http://<listen>)
    node: str | None = None             # this node's `node` metric label (default: host name, with a database)
    policy: Policy = Policy()       # supply-chain rules for every proxy and group (cache/gate.py)
    osv_severity: str | None = None # imported vulnerabilities at or above this severity act as deny rules
    health: HealthConfig = HealthConfig()
    open_access: bool = False       # development only: anyone may read and write everything
    tls_cert: Path | None = None
    tls_key: Path | None = None

    @property
    def host_port(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]") or "127.0.0.1", int(port)


def default_document() -> dict[str, Any]:
    """The embedded configuration served when no file is given."""
    repos: dict[str, Any] = {"files": {"format": "generic", "type": "hosted"}}
    if "pypi" in FORMATS:
        repos["pypi-remote"] = {"format": "pypi", "type": "proxy"}
        repos["pypi-local"] = {"format": "pypi", "type": "hosted"}
        repos["pypi"] = {"format": "pypi", "type": "group",
                         "members": ["pypi-local", "pypi-remote"], "deploy_to": "pypi-local",
                         "anonymous_read": True}      # anonymous callers see the public members
    if "npm" in FORMATS:
        repos["npm-remote"] = {"format": "npm", "type": "proxy"}
        repos["npm-local"] = {"format": "npm", "type": "hosted"}
        repos["npm"] = {"format": "npm", "type": "group",
                        "members": ["npm-local", "npm-remote"], "deploy_to": "npm-local",
                        "anonymous_read": True}
    if "oci" in FORMATS:
        repos["docker"] = {"format": "oci", "type": "proxy", "mirror": True}     # Docker Hub
        repos["containers"] = {"format": "oci", "type": "hosted"}
    for cls in FORMATS.values():      # every other format declares its own
        for name, raw in cls.default_repositories().items():
            repos.setdefault(name, raw)
    return {"repositories": repos}


def load(path: str | os.PathLike[str] | None, env: Mapping[str, str] | None = None,
         overrides: Mapping[str, Any] | None = None,
         resolve_upstreams: bool = True) -> Config:
    """Read `path` (or the embedded default), apply DEPOT_* env and CLI overrides, validate.
    Errors name the file and line (YAML), or the environment variable that set the bad key."""
    document = default_document() if path is None else read_document(Path(path))
    from_env = apply_env(document, os.environ if env is None else env)
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if "." in key:
            section, _, sub = key.partition(".")
            document.setdefault(section, {})[sub] = value
        else:
            document[key] = value
    try:
        return validate(document, resolve_upstreams)
    except ConfigError as exc:
        variable = _variable_of(exc.key, from_env)
        if variable is None:
            raise
        raise ConfigError(variable, str(exc)) from None


def read_document(path: Path) -> dict[str, Any]:
    """The parsed YAML file: errors say which file, and the line of a syntax error."""
    try:
        text = path.read_text()
    except IsADirectoryError:
        raise ConfigError(str(path), "is a directory, not a configuration file") from None
    except OSError as exc:
        raise ConfigError(str(path), f"cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(str(path), "is not a text file") from None
    try:
        document = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise ConfigError(where, f"invalid YAML: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(str(path), f"invalid YAML: {exc}") from None
    if document is None:
        raise ConfigError(str(path), "the file is empty (run `depot init` for a starter configuration)")
    if not isinstance(document, dict):
        raise ConfigError(str(path), "the top level must be a mapping of settings")
    return document


def _variable_of(key: str, from_env: dict[str, str]) -> str | None:
    """The DEPOT_* variable that set `key` (or a setting under or above it)."""
    for path, variable in from_env.items():
        if key == path or key.startswith(path + ".") or path.startswith(key + "."):
            return variable
    return None


def apply_env(document: dict[str, Any], env: Mapping[str, str]) -> dict[str, str]:
    """Set DEPOT_A__B=value as document[a][b] (YAML-parsed), matching keys loosely (- and _).
    Returns {dotted key: variable name} of what the environment set."""
    applied: dict[str, str] = {}
    for name, raw in env.items():
        if not name.startswith(ENV_PREFIX) or name in NOT_SETTINGS or name == CLOCK_FILE_ENV:
            continue
        parts = name[len(ENV_PREFIX):].lower().split("__")
        node = document
        path = []
        for part in parts[:-1]:
            key = _match_key(node, part)
            path.append(str(key))
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ConfigError(name, f"{'.'.join(path)} is not a section")
        else:
            key = _match_key(node, parts[-1])
            try:
                node[key] = yaml.safe_load(raw) if raw else raw
            except yaml.YAMLError as exc:
                raise ConfigError(name, f"invalid value: {getattr(exc, 'problem', None) or exc}") from None
            applied[".".join([*path, str(key)])] = name
    return applied


def _match_key(node: dict[str, Any], part: str) -> str:
    for existing in node:
        if str(existing).lower().replace("-", "_") == part:
            return existing
    return part


def _section(document: dict[str, Any], key: str) -> dict[str, Any]:
    value = document.get(key) or {}
    if not isinstance(value, dict):
        raise ConfigError(key, "must be a mapping")
    return value


def _convert(key: str, value: Any, parser: Any) -> Any:
    try:
        return parser(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ConfigError(key, str(exc)) from exc


_TOP_KEYS = {"listen", "data_dir", "public_url", "trusted_proxies", "workers", "log_level",
             "cache", "upstream", "repositories", "open_access", "tls", "forward_proxy", "client_timeout",
             "keepalive_timeout", "header_timeout", "access_log", "login", "health", "policy", "metrics",
             "storage", "database", "node_url", "node"}


_SECTION_KEYS = {"cache": ("max_size", "memory_size", "memory_item_max"),
                 "upstream": ("connect_timeout", "read_timeout", "retries", "ca_file"),
                 "forward_proxy": ("listen", "unknown_hosts"), "tls": ("cert", "key")}


def validate(document: dict[str, Any], resolve_upstreams: bool = True) -> Config:
    """Turn a parsed document into a Config or raise ConfigError naming the key. Without
    `resolve_upstreams` (admin commands), proxies keep no default upstream: nothing asks the
    machine's pip/npm/apt configuration."""
    for key in document:
        if key not in _TOP_KEYS:
            raise unknown(str(key), _TOP_KEYS)
    listen = str(document.get("listen", Config.listen))
    tls = _tls(_section(document, "tls"))
    _check_listen("listen", listen)
    cache = _section(document, "cache")
    upstream = _section(document, "upstream")
    for name, keys in _SECTION_KEYS.items():
        for key in _section(document, name):
            if key not in keys:
                raise unknown(f"{name}.{key}", keys)
    public_url = document.get("public_url")
    if public_url is not None and not str(public_url).startswith(("http://", "https://")):
        raise ConfigError("public_url", "must start with http:// or https://")
    workers = _convert("workers", document.get("workers", 1), int)
    trusted = document.get("trusted_proxies", Config.trusted_proxies)
    if not isinstance(trusted, (list, tuple)):
        raise ConfigError("trusted_proxies", "must be a list of addresses")
    if workers < 1:
        raise ConfigError("workers", "must be at least 1")
    return Config(
        listen=listen,
        data_dir=Path(str(document.get("data_dir", Config.data_dir))),
        public_url=str(public_url).rstrip("/") if public_url else None,
        trusted_proxies=tuple(str(address) for address in trusted),
        workers=workers,
        log_level=str(document.get("log_level", "INFO")).upper(),
        **_timeouts(document),
        access_log=_convert("access_log", document.get("access_log", True), _boolean),
        **_login(_section(document, "login")),
        **_metrics(_section(document, "metrics")),
        cache=CacheConfig(
            max_size=_convert("cache.max_size", cache.get("max_size", CacheConfig.max_size), parse_size),
            memory_size=_convert("cache.memory_size",
                                 cache.get("memory_size", CacheConfig.memory_size), parse_size),
            memory_item_max=_convert("cache.memory_item_max",
                                     cache.get("memory_item_max", CacheConfig.memory_item_max), parse_size),
        ),
        upstream=UpstreamConfig(
            connect_timeout=_convert("upstream.connect_timeout",
                                     upstream.get("connect_timeout", 10), parse_duration),
            read_timeout=_convert("upstream.read_timeout", upstream.get("read_timeout", 60), parse_duration),
            retries=_convert("upstream.retries", upstream.get("retries", 2), int),
            ca_file=_existing_file("upstream.ca_file", upstream.get("ca_file")),
        ),
        forward_proxy=_forward(_section(document, "forward_proxy")),
        storage=_storage(_section(document, "storage")),
        database_url=_database(_section(document, "database")),
        node_url=str(document["node_url"]).rstrip("/") if document.get("node_url") else None,
        node=_node(document.get("node")),
        policy=_policy("policy", _section(document, "policy"), top=True),
        osv_severity=_osv_severity(_section(document, "policy")),
        health=_health(_section(document, "health")),
        repositories=validate_repositories(_section(document, "repositories"), resolve_upstreams),
        open_access=_convert("open_access", document.get("open_access", False), _boolean),
        tls_cert=tls["tls_cert"], tls_key=tls["tls_key"],
    )


def _check_listen(key: str, listen: str) -> None:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(key, f"expected HOST:PORT, got {listen!r}")
    if not 0 < int(port) < 65536:
        raise ConfigError(key, f"port out of range: {port} (1-65535)")


def _timeouts(document: dict[str, Any]) -> dict[str, Any]:
    """client_timeout, keepalive_timeout, header_timeout: durations above zero."""
    found = {}
    for key in ("client_timeout", "keepalive_timeout", "header_timeout"):
        value = _convert(key, document.get(key, getattr(Config, key)), parse_duration)
        if not 0 < value < 7 * 86400:
            raise ConfigError(key, "must be longer than zero and shorter than a week")
        found[key] = value
    return found


def _health(section: dict[str, Any]) -> HealthConfig:
    """health.min_free: a size (1GiB) or a percentage of the filesystem (5%)."""
    for key in section:
        if key != "min_free":
            raise unknown(f"health.{key}", ["min_free"])
    raw = section.get("min_free", HealthConfig.min_free_bytes)
    if isinstance(raw, str) and raw.strip().endswith("%"):
        percent = _convert("health.min_free", raw.strip()[:-1], float)
        if not 0 <= percent < 100:
            raise ConfigError("health.min_free", "a percentage must be between 0% and 100%")
        return HealthConfig(min_free_bytes=0, min_free_percent=percent)
    return HealthConfig(min_free_bytes=_convert("health.min_free", raw, parse_size))


_STORAGE_KEYS = {"kind", "endpoint", "bucket", "region", "access_key", "secret_key", "access_key_file",
                 "secret_key_file", "prefix", "redirect", "redirect_min_size", "local_cache"}
_LOCAL_CACHE_KEYS = {"path", "max_size"}


def _storage_secret(section: dict[str, Any], key: str, env_names: tuple[str, ...]) -> str | None:
    """A credential from the config, else `<key>_file` (a file holding it), else the environment."""
    if section.get(key):
        return str(section[key])
    if section.get(f"{key}_file"):
        path = Path(str(_existing_file(f"storage.{key}_file", section[f"{key}_file"])))
        return path.read_text().strip()
    for name in env_names:
        if os.environ.get(name):
            return os.environ[name]
    return None


def _storage(section: dict[str, Any]) -> StorageConfig:
    """storage: {kind: local} (default) or {kind: s3, endpoint, bucket, region, access_key,
    secret_key, prefix, redirect}; keys may also come from the environment (DEPOT_STORAGE__ACCESS_KEY /
    DEPOT_STORAGE__SECRET_KEY like every key, or AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY) or from
    access_key_file / secret_key_file."""
    for key in section:
        if key not in _STORAGE_KEYS:
            raise ConfigError(f"storage.{key}", "unknown setting")
    kind = str(section.get("kind", "local"))
    if kind not in ("local", "s3"):
        raise ConfigError("storage.kind", "must be local or s3")
    if kind == "local":
        return StorageConfig()
    bucket = str(section.get("bucket") or "")
    if not bucket:
        raise ConfigError("storage.bucket", "required for kind s3")
    endpoint = section.get("endpoint")
    if endpoint is not None and not str(endpoint).startswith(("http://", "https://")):
        raise ConfigError("storage.endpoint", "must start with http:// or https://")
    return StorageConfig(
        "s3", str(endpoint) if endpoint else None, bucket, str(section.get("region", "us-east-1")),
        _storage_secret(section, "access_key", ("AWS_ACCESS_KEY_ID",)),
        _storage_secret(section, "secret_key", ("AWS_SECRET_ACCESS_KEY",)),
        str(section.get("prefix", "")),
        _convert("storage.redirect", section.get("redirect", False), _boolean),
        _convert("storage.redirect_min_size", section.get("redirect_min_size", "1MiB"), parse_size),
        *_local_cache(section.get("local_cache")))


def _local_cache(section: Any) -> tuple[str | None, int]:
    """storage.local_cache: {path (default data_dir/blob-cache), max_size} -> (path, max_size);
    absent or max_size 0: off."""
    if section is None:
        return None, 0
    if not isinstance(section, dict):
        raise ConfigError("storage.local_cache", "must be a mapping with path and max_size")
    for key in section:
        if key not in _LOCAL_CACHE_KEYS:
            raise ConfigError(f"storage.local_cache.{key}", "unknown setting")
    path = section.get("path")
    return (str(path) if path else None,
            _convert("storage.local_cache.max_size", section.get("max_size", 0), parse_size))


_NODE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,62}")


def _node(value: Any) -> str | None:
    """node: the name this node's metrics carry in their `node` label."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not _NODE_NAME.fullmatch(value):
        raise ConfigError("node", "must be 1-63 characters from A-Z a-z 0-9 . _ : - (starting with a letter or digit)")
    return value


def node_label(config: "Config") -> str | None:
    """The `node` label of this node's metrics: `node` from the config; with several nodes (a
    shared database) the host name by default; none on a single node."""
    if config.node:
        return config.node
    return socket.gethostname() if config.database_url else None


def _database(section: dict[str, Any]) -> str | None:
    """database: {url: postgresql://…} (or DEPOT_DATABASE__URL, or url_file); none: SQLite under data_dir."""
    for key in section:
        if key not in ("url", "url_file"):
            raise ConfigError(f"database.{key}", "unknown setting")
    url = section.get("url")
    if not url and section.get("url_file"):
        url = Path(str(section["url_file"])).read_text().strip()
    if url and not str(url).startswith(("postgresql://", "postgres://")):
        raise ConfigError("database.url", "must be a postgresql:// URL")
    return str(url) if url else None


def _login(section: dict[str, Any]) -> dict[str, Any]:
    """login: {max_failures: 10, window: 10m, lockout: 5m, token_ttl: 30d} (brute-force
    protection; lifetime of the tokens `npm login` gets)."""
    for key in section:
        if key not in ("max_failures", "window", "lockout", "token_ttl"):
            raise unknown(f"login.{key}", ("max_failures", "window", "lockout", "token_ttl"))
    ttl = _convert("login.token_ttl", section.get("token_ttl", "30d"), parse_duration)
    if ttl <= 0:
        raise ConfigError("login.token_ttl", "must be positive")
    return {"login_max_failures": _convert("login.max_failures", section.get("max_failures", 10), int),
            "login_window": _convert("login.window", section.get("window", 600), parse_duration),
            "login_lockout": _convert("login.lockout", section.get("lockout", 300), parse_duration),
            "login_token_ttl": ttl}


def _metrics(section: dict[str, Any]) -> dict[str, Any]:
    """metrics: {anonymous: true, users: [prometheus]} (who may scrape /-/metrics)."""
    for key in section:
        if key not in ("anonymous", "users"):
            raise unknown(f"metrics.{key}", ("anonymous", "users"))
    users = section.get("users") or []
    if not isinstance(users, list) or not all(isinstance(u, str) for u in users):
        raise ConfigError("metrics.users", "must be a list of user names")
    return {"metrics_anonymous": _convert("metrics.anonymous", section.get("anonymous", True), _boolean),
            "metrics_users": tuple(users)}


def _existing_file(key: str, value: Any) -> str | None:
    """`value` as the path of a regular file that exists, else the ConfigError naming `key`."""
    if value is None:
        return None
    try:
        found = Path(str(value)).is_file()
    except (OSError, ValueError) as exc:          # a name too long, a NUL byte, no permission…
        raise ConfigError(key, f"not a usable file name: {exc}") from None
    if not found:
        raise ConfigError(key, f"no such file: {value}")
    return str(value)


def _forward(section: dict[str, Any]) -> ForwardProxyConfig:
    listen = section.get("listen")
    if listen is not None:
        _check_listen("forward_proxy.listen", str(listen))
    unknown = section.get("unknown_hosts", "tunnel")
    if unknown not in ("tunnel", "refuse"):
        raise ConfigError("forward_proxy.unknown_hosts", "must be tunnel or refuse")
    return ForwardProxyConfig(str(listen) if listen else None, unknown == "refuse")


def _policy(prefix: str, section: dict[str, Any], top: bool = False) -> Policy:
    """A `policy:` mapping (global, or a repository's own) -> Policy; errors name the key."""
    raw = {k: v for k, v in section.items() if not (top and k == "osv_severity")}
    try:
        return parse_policy(raw, parse_duration)
    except ValueError as exc:
        key, _, why = str(exc).partition(": ")
        raise ConfigError(f"{prefix}.{key}", why or str(exc)) from None


def _osv_severity(section: dict[str, Any]) -> str | None:
    value = section.get("osv_severity")
    if value is None:
        return None
    if str(value).upper() not in SEVERITY_ORDER:
        raise ConfigError("policy.osv_severity", f"must be one of {', '.join(SEVERITY_ORDER)}")
    return str(value).upper()


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false, not {value!r}")
    return value


def _tls(section: dict[str, Any]) -> dict[str, Path | None]:
    if not section:
        return {"tls_cert": None, "tls_key": None}
    paths: dict[str, Path | None] = {}
    for key in ("cert", "key"):
        if not section.get(key):
            raise ConfigError(f"tls.{key}", "tls needs both cert and key (PEM files)")
        paths[f"tls_{key}"] = Path(str(_existing_file(f"tls.{key}", section[key])))
    return paths


_REPO_KEYS = {"format", "type", "upstream", "metadata_ttl", "negative_ttl", "members", "deploy_to",
              "metadata_patterns", "allow_overwrite", "mirror", "username", "password", "token",
              "password_env", "password_file", "token_env", "token_file", "options",
              "anonymous_read", "access", "max_upload", "policy", "cleanup", "duplicates",
              "duplicates_exception_regex", "protected", "immutable_tags"}
_PERMS = ("read", "write", "delete", "admin")


def validate_repositories(section: dict[str, Any], resolve_upstreams: bool = True) -> dict[str, RepoConfig]:
    """Validate every repository and the references between them."""
    repos: dict[str, RepoConfig] = {}
    for name, raw in section.items():
        repos[str(name)] = _validate_repo(str(name), raw, resolve_upstreams)
    for repo in repos.values():
        prefix = f"repositories.{repo.name}"
        for member in repo.members:
            other = repos.get(member)
            if other is None:
                raise ConfigError(f"{prefix}.members", f"no repository named {member!r}")
            if other.format != repo.format:
                raise ConfigError(f"{prefix}.members", f"{member!r} is {other.format}, not {repo.format}")
            if other.is_group:
                raise ConfigError(f"{prefix}.members", f"{member!r} is a group; groups cannot nest")
        if repo.deploy_to and repo.deploy_to not in repo.members:
            raise ConfigError(f"{prefix}.deploy_to", f"{repo.deploy_to!r} is not a member")
        if repo.deploy_to and not repos[repo.deploy_to].is_hosted:
            raise ConfigError(f"{prefix}.deploy_to", f"{repo.deploy_to!r} is not hosted")
    return repos


def _validate_repo(name: str, raw: Any, resolve_upstreams: bool = True) -> RepoConfig:
    prefix = f"repositories.{name}"
    if not REPO_NAME.match(name) or name in RESERVED_NAMES:
        raise ConfigError(prefix, "repository names are [a-z0-9][a-z0-9._-]* and not 'v2' or '-'")
    if not isinstance(raw, dict):
        raise ConfigError(prefix, "must be a mapping")
    for key in raw:
        if key not in _REPO_KEYS:
            raise unknown(f"{prefix}.{key}", _REPO_KEYS)
    fmt = raw.get("format")
    if not isinstance(fmt, str) or fmt not in FORMATS:
        raise ConfigError(f"{prefix}.format", f"unknown format {fmt!r}; known: {', '.join(sorted(FORMATS))}")
    kind = raw.get("type")
    if kind not in REPO_TYPES:
        raise ConfigError(f"{prefix}.type", f"must be one of {', '.join(REPO_TYPES)}")
    upstream = raw.get("upstream")
    if kind == "proxy" and (upstream or resolve_upstreams):
        upstream = upstream or FORMATS[fmt].default_upstream()
        if not upstream:
            raise ConfigError(f"{prefix}.upstream", "a proxy repository needs an upstream URL")
        if not str(upstream).startswith(("http://", "https://")):
            raise ConfigError(f"{prefix}.upstream", "must start with http:// or https://")
    members = raw.get("members") or []
    if kind == "group" and not members:
        raise ConfigError(f"{prefix}.members", "a group needs at least one member")
    if not isinstance(members, list):
        raise ConfigError(f"{prefix}.members", "must be a list of repository names")
    patterns = raw.get("metadata_patterns") or []
    if not isinstance(patterns, list):
        raise ConfigError(f"{prefix}.metadata_patterns", "must be a list of glob patterns")
    options = raw.get("options") or {}
    if not isinstance(options, dict):
        raise ConfigError(f"{prefix}.options", "must be a mapping")
    try:
        options = FORMATS[fmt].parse_options(options)
    except ValueError as exc:
        key, _, why = str(exc).partition(": ")
        raise ConfigError(f"{prefix}.options.{key}", why or str(exc)) from None
    access = raw.get("access") or {}
    if not isinstance(access, dict) or any(p not in _PERMS for p in access.values()):
        raise ConfigError(f"{prefix}.access", f"must map user names to one of {', '.join(_PERMS)}")
    anonymous = raw.get("anonymous_read")
    if anonymous is not None and not isinstance(anonymous, bool):
        raise ConfigError(f"{prefix}.anonymous_read", "must be true or false")
    return RepoConfig(
        name=name, format=fmt, type=kind,
        anonymous_read=anonymous, access={str(k): str(v) for k, v in access.items()},
        max_upload=_convert(f"{prefix}.max_upload", raw.get("max_upload", 5 * 2**30), parse_size),
        upstream=str(upstream) if upstream else None,
        metadata_ttl=_convert(f"{prefix}.metadata_ttl", raw.get("metadata_ttl", 300), parse_duration),
        negative_ttl=_convert(f"{prefix}.negative_ttl", raw.get("negative_ttl", 60), parse_duration),
        members=tuple(str(m) for m in members),
        deploy_to=raw.get("deploy_to"),
        metadata_patterns=tuple(str(pattern) for pattern in patterns),
        allow_overwrite=bool(raw.get("allow_overwrite", False)),
        mirror=bool(raw.get("mirror", False)),
        auth=_auth(prefix, raw),
        options=options,
        policy=_policy(f"{prefix}.policy", raw["policy"]) if isinstance(raw.get("policy"), dict) else None,
        retention=retention_of(prefix, raw, str(kind)),
    )


def _secret(prefix: str, raw: dict[str, Any], name: str) -> str | None:
    if raw.get(name) is not None:
        return str(raw[name])
    env_name = raw.get(f"{name}_env")
    if env_name:
        env_name = str(env_name)
        if env_name not in os.environ:
            raise ConfigError(f"{prefix}.{name}_env", f"environment variable {env_name} is not set")
        return os.environ[env_name]
    file_name = raw.get(f"{name}_file")
    if file_name:
        try:
            return Path(str(file_name)).read_text().strip()
        except (OSError, ValueError) as exc:     # ValueError: a NUL byte in the name
            raise ConfigError(f"{prefix}.{name}_file", f"cannot read: {getattr(exc, 'strerror', None) or exc}") from exc
    return None


def _auth(prefix: str, raw: dict[str, Any]) -> UpstreamAuth:
    return UpstreamAuth(username=raw.get("username"), password=_secret(prefix, raw, "password"),
                        token=_secret(prefix, raw, "token"))
