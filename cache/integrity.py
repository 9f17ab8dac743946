"""Subresource Integrity (W3C SRI) checks for fetched bodies: "sha512-<base64> sha1-<base64>".

Used by FetchSpec.expect_integrity: the body is hashed while it streams in (alongside the
store's own sha256) and nothing is committed unless every supported digest matches.
"""
from __future__ import annotations

import base64
import binascii
import hashlib

ALGORITHMS = ("sha512", "sha384", "sha256", "sha1", "md5")   # md5: CRAN PACKAGES lists only MD5sum


class IntegrityMismatch(ValueError):
    """The body does not hash to the integrity that was promised."""


class IntegrityCheck:
    """Incremental hashers for every supported algorithm named in an SRI string."""

    def __init__(self, expected: dict[str, set[bytes]]) -> None:
        self.expected = expected
        self.hashers = {name: hashlib.new(name) for name in expected}

    @classmethod
    def parse(cls, sri: str | None) -> "IntegrityCheck | None":
        """None when the string names no supported algorithm (nothing to check)."""
        expected: dict[str, set[bytes]] = {}
        for token in (sri or "").split():
            name, sep, value = token.partition("-")
            if not sep or name not in ALGORITHMS:
                continue
            try:
                expected.setdefault(name, set()).add(base64.b64decode(value.split("?", 1)[0], validate=True))
            except (binascii.Error, ValueError):
                raise IntegrityMismatch(f"malformed integrity {token[:24]!r}") from None
        return cls(expected) if expected else None

    def update(self, data: bytes | memoryview) -> None:
        for hasher in self.hashers.values():
            hasher.update(data)

    def verify(self) -> None:
        """Raise IntegrityMismatch unless the strongest named algorithm matches."""
        strongest = next(name for name in ALGORITHMS if name in self.expected)
        if self.hashers[strongest].digest() not in self.expected[strongest]:
            raise IntegrityMismatch(f"{strongest} integrity mismatch")
