"""The per-repository OpenPGP key that signs hosted providers' SHA256SUMS (PGPy, in memory).

The armored private key is a document of the hosted repository (`KEY_PATH`, written through
ctx.hosted with compare-and-swap, so concurrent first uses across workers agree on one key);
it is generated at first use, its public half is exported at `/<repo>/signing-key.asc`, and a
rotation replaces it. Signatures are made when SHA256SUMS.sig is asked for (cached in the
document cache by the digests of the sums and of the key), so a rotated key signs every
version at once and terraform verifies them with the key the download answer names.
"""
from __future__ import annotations

import logging
import threading
import warnings
from typing import Any

from cachetools import LRUCache

from .base import Ctx
from .tree import in_thread

log = logging.getLogger("depot.terraform")

KEY_PATH = ".depot/provider-signing-key.asc"
KEY_TYPE = "application/pgp-keys"
KEY_BITS = 3072
_parsed: LRUCache[str, Any] = LRUCache(maxsize=64)
_lock = threading.Lock()


def _pgpy() -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgpy   # noqa: PLC0415  (heavy import, only where keys are used)
    return pgpy


def generate_key(repo_name: str) -> bytes:
    """A new RSA signing key for `repo_name`, ASCII-armored (blocking: run in a thread)."""
    pgpy = _pgpy()
    from pgpy.constants import CompressionAlgorithm, HashAlgorithm, KeyFlags, PubKeyAlgorithm, SymmetricKeyAlgorithm
    key = pgpy.PGPKey.new(PubKeyAlgorithm.RSAEncryptOrSign, KEY_BITS)
    uid = pgpy.PGPUID.new(f"depot {repo_name}", comment="terraform provider signing")
    key.add_uid(uid, usage={KeyFlags.Sign, KeyFlags.Certify}, hashes=[HashAlgorithm.SHA256],
                ciphers=[SymmetricKeyAlgorithm.AES256], compression=[CompressionAlgorithm.Uncompressed])
    log.info("generated a provider signing key for %s (%s)", repo_name, key.fingerprint.keyid)
    return str(key).encode()


def _parse(digest: str, armored: bytes) -> Any:
    with _lock:
        found = _parsed.get(digest)
    if found is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            found, _ = _pgpy().PGPKey.from_blob(armored.decode())
        with _lock:
            _parsed[digest] = found
    return found


class SigningKey:
    """A loaded key: its id, armored public half and a detached-signature function."""

    def __init__(self, digest: str, key: Any) -> None:
        self.digest = digest
        self._key = key

    @property
    def key_id(self) -> str:
        return str(self._key.fingerprint.keyid)

    @property
    def public_armor(self) -> str:
        return str(self._key.pubkey)

    def sign(self, data: bytes) -> bytes:
        """A binary detached signature of `data` (what SHA256SUMS.sig holds)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return bytes(self._key.sign(data))


async def signing_key(ctx: Ctx) -> SigningKey:
    """The hosted repository's key, generated (once, whatever the concurrency) at first use."""
    found = await ctx.hosted.get(KEY_PATH)
    if found is None:
        fresh = await in_thread(generate_key, ctx.repo.name)
        found = await ctx.hosted.update_document(KEY_PATH, lambda old: None if old else fresh,
                                                 content_type=KEY_TYPE)
    assert found is not None
    armored = await ctx.hosted.read(found)
    return SigningKey(found.digest, await in_thread(_parse, found.digest, armored))


async def rotate_key(ctx: Ctx) -> SigningKey:
    """Replace the repository's key by a new one (every later signature uses it)."""
    fresh = await in_thread(generate_key, ctx.repo.name)
    found = await ctx.hosted.update_document(KEY_PATH, lambda old: fresh, content_type=KEY_TYPE)
    assert found is not None
    return SigningKey(found.digest, await in_thread(_parse, found.digest, fresh))


async def signature(ctx: Ctx, sums_digest: str, sums: bytes) -> bytes:
    """SHA256SUMS.sig for stored sums, made with the current key and kept in the document cache."""
    key = await signing_key(ctx)
    cache_key = ("tf-sig", ctx.repo.name, sums_digest, key.digest)
    found = ctx.documents.get(cache_key)
    if found is None:
        found = await in_thread(key.sign, sums)
        ctx.documents.put(cache_key, found)
    return found
