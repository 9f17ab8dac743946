"""Validation of a repository's retention settings (cleanup, duplicates, protected, immutable_tags);
the meaning of each key is documented in depot.cache.retention."""
from __future__ import annotations

import re
from typing import Any

from depot.cache.retention import PERMS, Cleanup, Protection, Retention

from .units import parse_duration

_HOSTED_KEYS = {"keep_n", "older_than", "name_regex", "name_regex_keep", "keep_recently_used", "schedule"}
_PROXY_KEYS = {"unused_for", "schedule"}
_DURATIONS = ("older_than", "keep_recently_used", "unused_for", "schedule")


def _error(key: str, message: str) -> Exception:
    from .config import ConfigError
    return ConfigError(key, message)


def _regex(key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise _error(key, "must be a regular expression (a string)")
    try:
        re.compile(value)
    except re.error as exc:
        raise _error(key, f"invalid regular expression: {exc}") from None
    return value


def _cleanup(prefix: str, raw: Any, kind: str) -> Cleanup:
    if raw is None:
        return Cleanup()
    if not isinstance(raw, dict):
        raise _error(prefix, "must be a mapping")
    allowed = _PROXY_KEYS if kind == "proxy" else _HOSTED_KEYS
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in allowed:
            raise _error(f"{prefix}.{key}",
                         f"unknown setting for a {kind} repository; known: {', '.join(sorted(allowed))}")
        if key in _DURATIONS:
            try:
                values[key] = parse_duration(value)
            except ValueError as exc:
                raise _error(f"{prefix}.{key}", str(exc)) from None
        elif key == "keep_n":
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise _error(f"{prefix}.{key}", "must be a non-negative integer")
            values[key] = value
        else:
            values[key] = _regex(f"{prefix}.{key}", value)
    return Cleanup(**values)


def _protected(prefix: str, raw: Any) -> tuple[Protection, ...]:
    if not isinstance(raw, list):
        raise _error(prefix, "must be a list of patterns or {pattern, perm} mappings")
    out = []
    for index, item in enumerate(raw):
        key = f"{prefix}[{index}]"
        if isinstance(item, str):
            out.append(Protection(_regex(key, item)))
            continue
        if not isinstance(item, dict) or set(item) - {"pattern", "perm"} or "pattern" not in item:
            raise _error(key, "must be a pattern or {pattern: <regex>, perm: write|delete|admin}")
        perm = item.get("perm", "admin")
        if perm not in PERMS[1:]:
            raise _error(f"{key}.perm", "must be write, delete or admin")
        out.append(Protection(_regex(f"{key}.pattern", item["pattern"]), perm))
    return tuple(out)


def retention_of(prefix: str, raw: dict[str, Any], kind: str) -> Retention:
    """The Retention of one repository's raw config (ConfigError naming the key on bad input)."""
    duplicates = raw.get("duplicates")
    if duplicates not in (None, "allow", "deny"):
        raise _error(f"{prefix}.duplicates", "must be allow or deny")
    exception = raw.get("duplicates_exception_regex")
    immutable = raw.get("immutable_tags") or []
    if not isinstance(immutable, list):
        raise _error(f"{prefix}.immutable_tags", "must be a list of regular expressions")
    return Retention(
        cleanup=_cleanup(f"{prefix}.cleanup", raw.get("cleanup"), kind),
        duplicates=duplicates,
        duplicates_exception_regex=_regex(f"{prefix}.duplicates_exception_regex", exception) if exception else None,
        protected=_protected(f"{prefix}.protected", raw.get("protected") or []),
        immutable_tags=tuple(_regex(f"{prefix}.immutable_tags[{i}]", p) for i, p in enumerate(immutable)),
    )
