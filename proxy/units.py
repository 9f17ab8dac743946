"""Parsing of human-friendly durations ("5m") and sizes ("20GiB") used in depot.yaml."""
from __future__ import annotations

import re

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, None: 1}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40, None: 1,
}


def parse_duration(value: object) -> float:
    """Seconds from `90`, `90s`, `5m`, `2h`, `1d`; raises ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError(f"negative duration: {value!r}")
        try:
            return float(value)
        except OverflowError:
            raise ValueError(f"duration too large: {value!r}") from None
    match = _DURATION.match(str(value))
    if not match:
        raise ValueError(f"not a duration: {value!r} (use 90, 90s, 5m, 2h, 1d)")
    return float(match.group(1)) * _DURATION_UNITS[match.group(2)]


def parse_size(value: object) -> int:
    """Bytes from `1024`, `512MiB`, `20GiB`, `1GB`; raises ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"not a size: {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"negative size: {value!r}")
        return value
    match = _SIZE.match(str(value))
    if not match:
        raise ValueError(f"not a size: {value!r} (use 1024, 512MiB, 20GiB)")
    unit = match.group(2).lower() if match.group(2) else None
    try:
        return int(float(match.group(1)) * _SIZE_UNITS[unit])
    except OverflowError:
        raise ValueError(f"size too large: {value!r}") from None
