"""Typed per-format repository options: a table of data, validated once at config load."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping


@dataclass(frozen=True)
class Option:
    """One option a format accepts in a repository's `options:` mapping."""

    parse: Callable[[Any], Any]       # raises ValueError/TypeError with a message on bad input
    default: Any = None
    help: str = ""


def boolean(value: Any) -> bool:
    """true/false only (YAML booleans)."""
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false, not {value!r}")
    return value


def integer(minimum: int = 0) -> Callable[[Any], int]:
    """An integer of at least `minimum`."""
    def parse(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"must be an integer >= {minimum}, not {value!r}")
        return value
    return parse


def string(value: Any) -> str:
    """A non-empty string."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"must be a non-empty string, not {value!r}")
    return value


def string_list(value: Any) -> tuple[str, ...]:
    """A list of strings."""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"must be a list of strings, not {value!r}")
    return tuple(value)


def parse_options(table: Mapping[str, Option], raw: Mapping[str, Any]) -> dict[str, Any]:
    """Defaults filled in, every given value parsed; unknown keys refused (ValueError 'key: why').

    A format that declares no table accepts any mapping unchanged (the original formats)."""
    if not table:
        return dict(raw)
    parsed = {key: option.default for key, option in table.items()}
    for key, value in raw.items():
        option = table.get(key)
        if option is None:
            raise ValueError(f"{key}: unknown option; known: {', '.join(sorted(table))}")
        try:
            parsed[key] = option.parse(value)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{key}: {exc}") from None
    return parsed
