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


# ---------------------------------------------------------------------- reading the specs index

class MarshalError(ValueError):
    """Data that is not the Marshal subset of a specs index."""


class _Reader:
    """Reads nil/true/false, Fixnums, Strings (with ivars), Symbols, Arrays, Hashes, object
    links and UserMarshal objects (as their dumped value): what `specs.4.8` holds. Nothing
    is instantiated; other types are refused."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0
        self.symbols: list[str] = []
        self.objects: list[Any] = []

    def byte(self) -> int:
        if self.pos >= len(self.data):
            raise MarshalError("truncated")
        self.pos += 1
        return self.data[self.pos - 1]

    def long(self) -> int:
        c = self.byte()
        if c == 0:
            return 0
        if 5 <= c < 128:
            return c - 5
        if 128 <= c <= 251:
            return c - 256 + 5
        size = c if c < 128 else 256 - c
        raw = self.take(size)
        n = int.from_bytes(raw, "little")
        return n if c < 128 else n - (1 << (8 * size))

    def take(self, size: int) -> bytes:
        if size < 0 or self.pos + size > len(self.data):
            raise MarshalError("truncated")
        self.pos += size
        return self.data[self.pos - size:self.pos]

    def symbol(self) -> str:
        kind = chr(self.byte())
        if kind == ";":
            index = self.long()
            if not 0 <= index < len(self.symbols):
                raise MarshalError("bad symbol link")
            return self.symbols[index]
        if kind != ":":
            raise MarshalError(f"symbol expected, not {kind!r}")
        name = self.take(self.long()).decode("utf-8", "replace")
        self.symbols.append(name)
        return name

    def value(self) -> Any:
        kind = chr(self.byte())
        if kind in ":;":
            self.pos -= 1
            return Symbol(self.symbol())
        if kind == "0":
            return None
        if kind in "TF":
            return kind == "T"
        if kind == "i":
            return self.long()
        if kind == "@":
            index = self.long()
            if not 0 <= index < len(self.objects):
                raise MarshalError("bad object link")
            return self.objects[index]
        if kind == "I":
            inner = self.value()
            for _ in range(self.long()):      # ivars of a String: its encoding
                self.symbol()
                self.value()
            return inner
        if kind == '"':
            text = self.take(self.long()).decode("utf-8", "replace")
            self.objects.append(text)
            return text
        if kind == "[":
            items: list[Any] = []
            self.objects.append(items)
            items.extend(self.value() for _ in range(self.long()))
            return items
        if kind == "{":
            table: dict[Any, Any] = {}
            self.objects.append(table)
            for _ in range(self.long()):
                key = self.value()
                table[key if not isinstance(key, list) else tuple(key)] = self.value()
            return table
        if kind == "U":
            cls = self.symbol()
            slot = len(self.objects)
            self.objects.append(None)
            obj = UserMarshal(cls, self.value())
            self.objects[slot] = obj
            return obj
        raise MarshalError(f"unsupported Marshal type {kind!r}")


def loads(data: bytes) -> Any:
    """Marshal.load of the subset above."""
    if data[:2] != bytes([MAJOR, MINOR]):
        raise MarshalError("not Marshal 4.8")
    reader = _Reader(data)
    reader.pos = 2
    return reader.value()


def spec_tuples(data: bytes) -> list[tuple[str, str, str]]:
    """[(name, version, platform)] of an (uncompressed) specs index."""
    out = []
    for item in loads(data):
        if not (isinstance(item, list) and len(item) == 3):
            raise MarshalError("a specs entry is [name, version, platform]")
        name, ver, platform = item
        if isinstance(ver, UserMarshal) and isinstance(ver.data, list) and ver.data:
            ver = ver.data[0]
        if not all(isinstance(v, str) for v in (name, ver, platform)):
            raise MarshalError("a specs entry is [String, Gem::Version, String]")
        out.append((name, ver, platform))
    return out
