"""OpenPGP signing of repository metadata (Debian InRelease/Release.gpg, RPM repomd.xml.asc).

Each repository has its own key, generated at first use and stored as a hosted document of the
repository (`SECRET_PATH`; never served: the formats refuse that path). GnuPG (through
python-gnupg) works in a throw-away home directory per operation, created and removed in a worker
thread: no key material stays on local disk, and its agent is stopped afterwards.
"""
from __future__ import annotations

import asyncio
import logging
import subprocess
import tempfile
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

import gnupg
from aiohttp import web

from depot.cache.api import Conflict, HostedApi

from .base import FormatError

log = logging.getLogger("depot.signing")

SECRET_PATH = ".depot/signing-key.asc"   # hosted path of the armored secret key
T = TypeVar("T")


class SigningError(Exception):
    """GnuPG failed (generation, import or signing)."""


@dataclass(frozen=True)
class RepoKey:
    """A repository's signing key: armored secret and public halves, and its fingerprint."""

    secret: str
    public: str
    fingerprint: str


def _with_gpg(work: Callable[[gnupg.GPG], T]) -> T:
    """Run `work` with a GPG instance over a fresh private home, then stop its agent."""
    with tempfile.TemporaryDirectory(prefix="depot-gpg-") as home:
        try:
            gpg = gnupg.GPG(gnupghome=home)
        except (OSError, ValueError) as exc:
            raise SigningError(f"GnuPG is not usable (install Debian's gnupg): {exc}") from None
        gpg.encoding = "utf-8"
        try:
            return work(gpg)
        finally:
            for args in (["--kill", "gpg-agent"], ["--remove-socketdir"]):   # no agent, no /run/user dir left
                try:
                    subprocess.run(["gpgconf", "--homedir", home, *args], capture_output=True, timeout=10,
                                   check=False)
                except (OSError, subprocess.TimeoutExpired) as exc:
                    log.warning("gpgconf failed home=%s error=%s", home, exc)


def generate_key(name: str) -> RepoKey:
    """A new Ed25519 signing key for repository `name` (blocking: run in a thread)."""
    def work(gpg: gnupg.GPG) -> RepoKey:
        spec = gpg.gen_key_input(key_type="EDDSA", key_curve="ed25519", key_usage="sign",
                                 name_real=f"depot repository {name}", name_email=f"{name}@depot.invalid",
                                 expire_date=0, no_protection=True)
        made = gpg.gen_key(spec)
        if not made.fingerprint:
            raise SigningError(f"key generation failed: {made.stderr[-500:]}")
        public = gpg.export_keys(made.fingerprint)
        secret = gpg.export_keys(made.fingerprint, secret=True, expect_passphrase=False)
        return RepoKey(secret, public, made.fingerprint)
    return _with_gpg(work)


def _imported(gpg: gnupg.GPG, secret: str) -> str:
    result = gpg.import_keys(secret)
    if not result.fingerprints:
        raise SigningError(f"key import failed: {result.stderr[-500:]}")
    return str(result.fingerprints[0])


def public_of(secret: str) -> RepoKey:
    """The key pair behind an armored secret key (blocking)."""
    def work(gpg: gnupg.GPG) -> RepoKey:
        fingerprint = _imported(gpg, secret)
        return RepoKey(secret, gpg.export_keys(fingerprint), fingerprint)
    return _with_gpg(work)


def _sign(gpg: gnupg.GPG, fingerprint: str, data: bytes, clearsign: bool) -> bytes:
    kwargs: dict[str, Any] = {"clearsign": True} if clearsign else {"detach": True}
    signed = gpg.sign(data, keyid=fingerprint, extra_args=["--digest-algo", "SHA512"], **kwargs)
    if not signed.data:
        raise SigningError(f"signing failed: {signed.stderr[-500:]}")
    return bytes(signed.data)


def sign(secret: str, data: bytes, clearsign: bool) -> bytes:
    """A clear-signed document (InRelease) or an armored detached signature (blocking)."""
    return _with_gpg(lambda gpg: _sign(gpg, _imported(gpg, secret), data, clearsign))


def sign_both(secret: str, data: bytes) -> tuple[bytes, bytes]:
    """(clear-signed, detached) signatures of `data` with one GnuPG home (blocking)."""
    def work(gpg: gnupg.GPG) -> tuple[bytes, bytes]:
        fingerprint = _imported(gpg, secret)
        return _sign(gpg, fingerprint, data, True), _sign(gpg, fingerprint, data, False)
    return _with_gpg(work)


_KEYS: dict[tuple[str, str], RepoKey] = {}    # (repo, secret digest) -> key, per process


async def repo_key(hosted: HostedApi, name: str) -> RepoKey:
    """The repository's key (see _repo_key); GnuPG failures as a 500 in the format's shape."""
    try:
        return await _repo_key(hosted, name)
    except SigningError as exc:
        log.error("signing key unavailable repository=%s error=%s", name, exc)
        raise FormatError(500, f"signing key of {name} unavailable: {exc}") from None


async def signed(render: Callable[[], T]) -> T:
    """Run a blocking render that signs (in a thread); GnuPG failures as a 500."""
    try:
        return await asyncio.to_thread(render)
    except SigningError as exc:
        log.error("signing failed error=%s", exc)
        raise FormatError(500, f"signing failed: {exc}") from None


async def _repo_key(hosted: HostedApi, name: str) -> RepoKey:
    """The repository's key, generated and stored through `hosted` at first use (concurrent
    first uses agree on one key: the first stored wins, the others read it back)."""
    found = await hosted.get(SECRET_PATH)
    if found is None:
        made = await asyncio.to_thread(generate_key, name)
        try:
            await hosted.publish(SECRET_PATH, made.secret.encode(), content_type="application/pgp-keys",
                                 overwrite=False)
            log.info("generated signing key repository=%s fingerprint=%s", name, made.fingerprint)
        except Conflict:
            pass                        # another request stored its key first: use that one
        found = await hosted.get(SECRET_PATH)
        assert found is not None
    cached = _KEYS.get((name, found.digest))
    if cached is None:
        secret = (await hosted.read(found)).decode()
        cached = _KEYS[(name, found.digest)] = await asyncio.to_thread(public_of, secret)
    return cached


async def public_key_response(hosted: Any, repo: str) -> web.Response:
    """GET of a repository's public signing key (for apt's signed-by, dnf's gpgkey, opkg …)."""
    key = await repo_key(hosted, repo)
    return web.Response(body=key.public.encode(), content_type="application/pgp-keys",
                        headers={"Cache-Control": "no-cache"})
