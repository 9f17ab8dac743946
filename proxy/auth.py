"""Who is asking, and may they: credentials as each client sends them, permissions, tokens.

Accepted credentials (first match wins):
  Authorization: Basic user:password | user:<token>     pip, twine, mvn, composer, helm, curl
  Authorization: Bearer <token> | <docker JWT>           npm, terraform, docker/skopeo
  Authorization: <token>                                  RubyGems, Cargo
  X-NuGet-ApiKey: <token>                                 NuGet
"""
from __future__ import annotations

import base64
import binascii
import os
import secrets
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import jwt
from cachetools import TTLCache

from depot.cache.db import Database
from depot.registry.repo import RepoConfig

from . import lockout
from .users import RANK, TOKEN_PREFIX, Token, UserStore

DOCKER_TOKEN_TTL = 300
CREDENTIAL_CACHE_TTL = 5.0


class BadCredentials(Exception):
    """Credentials were sent and are wrong, expired or revoked (or the name is locked out)."""

    def __init__(self, message: str, locked: bool = False) -> None:
        super().__init__(message)
        self.locked = locked


@dataclass(frozen=True)
class Principal:
    user: str | None = None           # the person (or None for anonymous / deploy tokens)
    admin: bool = False
    token: Token | None = None

    @property
    def anonymous(self) -> bool:
        return self.user is None and self.token is None

    @property
    def label(self) -> str:
        if self.token is not None:
            return f"{self.user or 'deploy'}:token:{self.token.id}"
        return self.user or "anonymous"


ANONYMOUS = Principal()


def anonymous_read(repo: RepoConfig, repos: Mapping[str, RepoConfig]) -> bool:
    """Explicit setting, else: proxy yes, hosted no, group only if every member allows it."""
    if repo.anonymous_read is not None:
        return repo.anonymous_read
    if repo.is_group:
        return all(anonymous_read(repos[m], repos) for m in repo.members if m in repos)
    return repo.is_proxy


class Authenticator:
    """Identifies principals (with a short in-process cache) and checks permissions."""

    def __init__(self, db: Database, data_dir: Path, repos: Mapping[str, RepoConfig],
                 open_access: bool = False, policy: lockout.LockoutPolicy = lockout.LockoutPolicy()) -> None:
        self.db = db
        self.users = UserStore(db)
        self.lockout = policy
        db.run_sync(lambda conn: conn.executescript(lockout.SCHEMA))
        self.repos = repos
        self.open_access = open_access
        self.secret = _load_secret(Path(data_dir) / "token-secret")
        self._cache: TTLCache[str, Principal] = TTLCache(maxsize=10_000, ttl=CREDENTIAL_CACHE_TTL)

    async def identify(self, headers: Mapping[str, str]) -> Principal:
        """The principal behind the request's credentials; raises BadCredentials."""
        raw = headers.get("Authorization") or ""
        nuget = headers.get("X-NuGet-ApiKey")
        key = raw or (f"nuget {nuget}" if nuget else "")
        if not key:
            return ANONYMOUS
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        principal = await self.db.run(lambda conn: self._resolve(conn, raw, nuget))
        self._cache[key] = principal
        return principal

    def _resolve(self, conn: sqlite3.Connection, raw: str, nuget: str | None) -> Principal:
        scheme, _, value = raw.partition(" ")
        scheme_l = scheme.lower()
        if scheme_l == "basic":
            user, password = _basic(value)
            if password.startswith(TOKEN_PREFIX):
                return self._token_principal(conn, password, user)
            return self._password_principal(conn, user, password)
        if scheme_l == "bearer":
            if value.count(".") == 2 and not value.startswith(TOKEN_PREFIX):
                return self._jwt_principal(conn, value)
            return self._token_principal(conn, value.strip(), None)
        if nuget and not raw:
            return self._token_principal(conn, nuget.strip(), None)
        return self._token_principal(conn, raw.strip(), None)

    def _password_principal(self, conn: sqlite3.Connection, user: str, password: str) -> Principal:
        now = lockout.now()
        wait = lockout.locked_for(conn, user, now)
        if wait:
            raise BadCredentials(f"too many failed logins for {user}; locked for {wait:.0f} s more",
                                 locked=True)
        found = self.users.check_password(conn, user, password)
        if found is None:
            engaged = lockout.record_failure(conn, user, self.lockout, now)
            raise BadCredentials("wrong user name or password", locked=engaged)
        lockout.record_success(conn, user)
        return Principal(found[0], found[1])

    def _token_principal(self, conn: sqlite3.Connection, secret: str, user: str | None) -> Principal:
        token = self.users.find_token(conn, secret)
        if token is None or not token.usable(time.time()):
            raise BadCredentials("unknown, expired or revoked token")
        if user is not None and token.user is not None and user != token.user:
            raise BadCredentials("token belongs to another user")
        admin = token.user is not None and self.users.is_admin(conn, token.user)
        return Principal(token.user, admin, token)

    def _jwt_principal(self, conn: sqlite3.Connection, value: str) -> Principal:
        try:
            claims = jwt.decode(value, self.secret, algorithms=["HS256"], audience="depot")
        except jwt.PyJWTError as exc:
            raise BadCredentials(f"bad bearer token: {exc}") from None
        user, token_id = claims.get("sub"), claims.get("tid")
        if token_id:
            token = self.users.token_by_id(conn, token_id)
            if token is None or not token.usable(time.time()):
                raise BadCredentials("token revoked")
            return Principal(token.user, bool(token.user and self.users.is_admin(conn, token.user)), token)
        if not user:
            return ANONYMOUS
        return Principal(user, self.users.is_admin(conn, user))

    def rank(self, principal: Principal, repo: RepoConfig) -> int:
        """The principal's permission rank on a repository (0: nothing)."""
        if self.open_access:
            return RANK["admin"]
        anon = RANK["read"] if anonymous_read(repo, self.repos) else 0
        if principal.admin and principal.token is None:
            return RANK["admin"]
        granted = 0
        if principal.user is not None:
            access = repo.access
            granted = RANK["admin"] if principal.admin else RANK.get(access.get(principal.user) or
                                                                    access.get("*") or "", 0)
        token = principal.token
        if token is not None:
            if not token.covers(repo.name):
                return anon
            granted = RANK[token.perm] if token.user is None else min(RANK[token.perm], granted)
        return max(granted, anon)

    def anonymous_can_read(self, repo: RepoConfig) -> bool:
        return self.open_access or anonymous_read(repo, self.repos)

    def allowed(self, principal: Principal, repo: RepoConfig, perm: str) -> bool:
        return self.rank(principal, repo) >= RANK[perm]

    def docker_token(self, principal: Principal, scopes: list[tuple[str, str, list[str]]],
                     ttl: int = DOCKER_TOKEN_TTL) -> str:
        """A signed token (short-lived by default) granting what the principal may do of the
        asked scopes; as a Bearer it stands for the principal (a token's revocation included)."""
        now = int(time.time())
        claims = {"iss": "depot", "aud": "depot", "iat": now, "nbf": now - 5, "exp": now + ttl,
                  "sub": principal.user or "", "tid": principal.token.id if principal.token else None,
                  "access": [{"type": t, "name": n, "actions": a} for t, n, a in scopes],
                  "jti": secrets.token_hex(8)}
        return jwt.encode(claims, self.secret, algorithm="HS256")


def _basic(value: str) -> tuple[str, str]:
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise BadCredentials("malformed Basic credentials") from None
    user, sep, password = decoded.partition(":")
    if not sep:
        raise BadCredentials("malformed Basic credentials")
    return user, password


def _load_secret(path: Path) -> bytes:
    """The HMAC key for docker tokens: created once, shared by every worker."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        secret = secrets.token_bytes(32)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return path.read_bytes()
        with open(fd, "wb") as handle:
            handle.write(secret)
        return secret
