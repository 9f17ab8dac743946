"""A small writer of Ruby's Marshal format 4.8: the subset the RubyGems full index needs.

`specs.4.8.gz` is a Marshal array of [name, Gem::Version, platform]; a
`quick/Marshal.4.8/<gem>.gemspec.rz` is a Marshal `Gem::Specification` (its `_dump` string);
`/api/v1/dependencies` is an array of hashes with Symbol keys. Only writing is needed (depot
never loads Marshal data), so this is a writer of plain values plus three wrappers:
Symbol, UserMarshal (`marshal_dump`: Gem::Version, Gem::Requirement), UserDef (`_dump`:
Gem::Specification) and Object (instance variables: Gem::Dependency). Strings are written as
UTF-8 (`E` true), the way Ruby writes its own string literals. Tested against the real `ruby`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MAJOR, MINOR = 4, 8


@dataclass(frozen=True)
class Symbol:
    """A Ruby Symbol (`:name`)."""

    name: str


@dataclass(frozen=True)
class UserMarshal:
    """An object whose class defines marshal_dump (`U`): the class name and the dumped value."""

    cls: str
    data: Any


@dataclass(frozen=True)
class UserDef:
    """An object whose class defines _dump (`u`): the class name and the dumped bytes."""

    cls: str
    data: bytes


@dataclass(frozen=True)
class RObject:
    """A plain Ruby object (`o`): the class name and its instance variables (`@name` keys)."""

    cls: str
    ivars: dict[str, Any] = field(default_factory=dict)


def _int(n: int) -> bytes:
    """Marshal's compact integer encoding (w_long)."""
    if n == 0:
        return b"\x00"
    if 0 < n < 123:
        return bytes([n + 5])
    if -124 < n < 0:
        return bytes([(n - 5) & 0xFF])
    out = bytearray()
    for size in range(1, 5):
        out.append(n & 0xFF)
        n >>= 8
        if n == 0 and out[-1] < 0x80 or n == -1 and out[-1] >= 0x80:
            return bytes([size if n == 0 else 256 - size]) + bytes(out)
    raise ValueError("integer out of the 32-bit range")


def _bytes(data: bytes) -> bytes:
    return _int(len(data)) + data


def _symbol(name: str) -> bytes:
    return b":" + _bytes(name.encode())


def _value(obj: Any) -> bytes:
    if obj is None:
        return b"0"
    if obj is True:
        return b"T"
    if obj is False:
        return b"F"
    if isinstance(obj, int):
        if not -(1 << 30) <= obj < (1 << 30):
            raise ValueError("only Fixnums are supported")
        return b"i" + _int(obj)
    if isinstance(obj, str):
        return b'I"' + _bytes(obj.encode()) + _int(1) + _symbol("E") + b"T"
    if isinstance(obj, bytes):
        return b'"' + _bytes(obj)
    if isinstance(obj, Symbol):
        return _symbol(obj.name)
    if isinstance(obj, (list, tuple)):
        return b"[" + _int(len(obj)) + b"".join(_value(item) for item in obj)
    if isinstance(obj, dict):
        return b"{" + _int(len(obj)) + b"".join(_value(k) + _value(v) for k, v in obj.items())
    if isinstance(obj, UserMarshal):
        return b"U" + _symbol(obj.cls) + _value(obj.data)
    if isinstance(obj, UserDef):
        return b"u" + _symbol(obj.cls) + _bytes(obj.data)
    if isinstance(obj, RObject):
        return (b"o" + _symbol(obj.cls) + _int(len(obj.ivars))
                + b"".join(_symbol(k) + _value(v) for k, v in obj.ivars.items()))
    raise TypeError(f"cannot marshal {type(obj).__name__}")


def dumps(obj: Any) -> bytes:
    """`Marshal.dump(obj)` for the supported values."""
    return bytes([MAJOR, MINOR]) + _value(obj)


# ---------------------------------------------------------------------- RubyGems classes

def version(text: str) -> UserMarshal:
    """A Gem::Version."""
    return UserMarshal("Gem::Version", [text])


def requirement(pairs: list[tuple[str, str]]) -> UserMarshal:
    """A Gem::Requirement from (operator, version) pairs (none: `>= 0`)."""
    return UserMarshal("Gem::Requirement", [[[op, version(v)] for op, v in (pairs or [(">=", "0")])]])


def dependency(name: str, pairs: list[tuple[str, str]], kind: str = "runtime") -> RObject:
    """A Gem::Dependency."""
    req = requirement(pairs)
    return RObject("Gem::Dependency", {"@name": name, "@requirement": req, "@type": Symbol(kind),
                                       "@prerelease": False, "@version_requirements": req})
