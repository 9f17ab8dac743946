"""Subresource Integrity (W3C SRI) checks for fetched bodies: "sha512-<base64> sha1-<base64>".

Used by FetchSpec.expect_integrity: the body is hashed while it streams in (alongside the
store's own sha256) and nothing is committed unless every supported digest matches.
"""
from __future__ import annotations

import base64
import binascii
import hashlib

ALGORITHMS = ("sha512", "sha384", "sha256", "sha1")
# digests that are no SRI algorithm but the only ones an index lists (CRAN's MD5sum), weakest last
STRENGTH = ALGORITHMS + ("md5",)


class IntegrityMismatch(ValueError):
    """The body does not hash to the integrity that was promised."""


class IntegrityCheck:
    """Incremental hashers for every supported algorithm named in an SRI string."""

    def __init__(self, expected: dict[str, set[bytes]]) -> None:
        self.expected = expected
        self.hashers = {name: hashlib.new(name) for name in expected}

    @classmethod
    def parse(cls, sri: str | None, md5: str | None = None) -> "IntegrityCheck | None":
        """None when the string names no supported algorithm and no `md5` (hex) is expected
        (nothing to check). md5 is not an SRI algorithm: "md5-…" tokens stay ignored."""
        expected: dict[str, set[bytes]] = {}
        if md5:
            try:
                expected["md5"] = {bytes.fromhex(md5)}
            except ValueError:
                raise IntegrityMismatch(f"malformed md5 {md5[:40]!r}") from None
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
        strongest = next(name for name in STRENGTH if name in self.expected)
        if self.hashers[strongest].digest() not in self.expected[strongest]:
            raise IntegrityMismatch(f"{strongest} integrity mismatch")
