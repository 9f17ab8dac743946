"""Who is asking, and may they: credentials as each client sends them, permissions, tokens.

Accepted credentials (first match wins):
  Authorization: Basic user:password | user:<token>     pip, twine, mvn, composer, helm, curl
  Authorization: Bearer <token> | <docker JWT>           npm, terraform, docker/skopeo
  Authorization: <token>                                  RubyGems, Cargo
  a format's own header (Format.credentials: NuGet's X-NuGet-ApiKey, …)
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Mapping

import jwt
from cachetools import TTLCache

from depot.registry.repo import RepoConfig

from depot.cache import lockout
from depot.cache.accounts import RANK, TOKEN_PREFIX, StoredUser, Token, dummy_hash, verify_password
from depot.cache.storage import AccountStorage, AuditStorage

DOCKER_TOKEN_TTL = 300
CREDENTIAL_CACHE_TTL = 5.0
LOGIN_TOKEN_TTL = 30 * 86400.0
HASH_CONCURRENCY = 2            # password hashes verified at once per worker (CPU and 64 MiB each)
LOGIN_TOKEN_PERM = "delete"     # what a client login (npm) gets at most: never admin
JWT_ACTIONS = {"read": "pull", "write": "push", "delete": "delete", "admin": "*"}


class BadCredentials(Exception):
    """Credentials were sent and are wrong, expired or revoked (or the name is locked out).

    `audited`: the password path already wrote the audit record.
    """

    def __init__(self, message: str, locked: bool = False, audited: bool = False) -> None:
        super().__init__(message)
        self.locked = locked
        self.audited = audited


@dataclass(frozen=True)
class Principal:
    user: str | None = None           # the person (or None for anonymous / deploy tokens)
    admin: bool = False
    token: Token | None = None
    version: int = 0                  # the user's credential version when identified
    # a Docker JWT's grants {(name, action)}; None when the credentials are not a JWT
    scopes: frozenset[tuple[str, str]] | None = None

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
    """Identifies principals and checks permissions.

    Every password check (Basic auth on any endpoint, the Docker token service, npm login, the
    UI) goes through `check_password`: lockout, argon2 off the database thread with bounded
    concurrency, a dummy verification for unknown names, and the audit record of failures.
    Successful identifications are cached per worker for a few seconds, but the cache is
    dropped as soon as the credential generation in the account store moves (one indexed read
    per request), so a revocation or password change counts on every worker, and with the
    accounts in PostgreSQL on every node, at once.
    """

    Refused = BadCredentials        # for format handlers, which do not import the front door

    def __init__(self, users: AccountStorage, data_dir: Path, repos: Mapping[str, RepoConfig],
                 open_access: bool = False, policy: lockout.LockoutPolicy = lockout.LockoutPolicy(),
                 audit: AuditStorage | None = None, login_token_ttl: float = LOGIN_TOKEN_TTL) -> None:
        self.users = users
        self.lockout = policy
        self.repos = repos
        self.open_access = open_access
        self.audit = audit
        self.login_token_ttl = login_token_ttl
        self.secret = users.signing_key()
        self._cache: TTLCache[str, tuple[Principal, int]] = TTLCache(maxsize=10_000, ttl=CREDENTIAL_CACHE_TTL)
        self._dummy_hash: str | None = None     # made on first need, in the hash pool
        self._hash_pool = ThreadPoolExecutor(max_workers=HASH_CONCURRENCY, thread_name_prefix="depot-hash")
        self._hash_slots: asyncio.Semaphore | None = None

    async def identify(self, headers: Mapping[str, str], client: str | None = None,
                       format_token: str | None = None) -> Principal:
        """The principal behind the request's credentials; raises BadCredentials.
        `format_token`: a token the format's clients send in a header of their own
        (Format.credentials, e.g. NuGet's X-NuGet-ApiKey), used when Authorization is absent."""
        raw = headers.get("Authorization") or ""
        nuget = format_token
        key = raw or (f"format-token {nuget}" if nuget else "")
        if not key:
            return ANONYMOUS
        generation = await self.users.generation()
        cached = self._cache.get(key)
        if cached is not None and cached[1] == generation and _still_usable(cached[0]):
            return cached[0]
        principal = await self._resolve(raw, nuget, client)
        self._cache[key] = (principal, generation)
        return principal

    async def _resolve(self, raw: str, nuget: str | None, client: str | None) -> Principal:
        scheme, _, value = raw.partition(" ")
        scheme_l = scheme.lower()
        if scheme_l == "basic":
            user, password = _basic(value)
            if password.startswith(TOKEN_PREFIX):
                return await self._token_principal(password, user)
            return await self.check_password(user, password, client, "basic")
        if scheme_l == "bearer":
            if value.count(".") == 2 and not value.startswith(TOKEN_PREFIX):
                return await self._jwt_principal(value)
            secret = value.strip()
        else:
            secret = (nuget or "").strip() if nuget and not raw else raw.strip()
        return await self._token_principal(secret, None)

    async def check_password(self, user: str, password: str, client: str | None, service: str) -> Principal:
        """The one password check: lockout, argon2 in the hash pool, audit of failures."""
        if self._hash_slots is None:
            self._hash_slots = asyncio.Semaphore(HASH_CONCURRENCY)
        # The lock is checked inside the slot, so concurrent guesses cannot all slip past it.
        async with self._hash_slots:
            now = lockout.now()
            wait, stored = await self.users.password_state(user, now)
            if wait:
                message = f"too many failed logins for {user}; locked for {wait:.0f} s more"
                self._record("lockout", user, client, service, message)
                raise BadCredentials(message, locked=True, audited=True)
            loop = asyncio.get_running_loop()
            if stored is None and self._dummy_hash is None:
                self._dummy_hash = await loop.run_in_executor(self._hash_pool, dummy_hash)
            digest = stored.password_hash if stored is not None else self._dummy_hash
            right = await loop.run_in_executor(self._hash_pool, verify_password, digest, password)
            if stored is None or not right:
                engaged = await self.users.record_failure(user, self.lockout, now)
                self._record("lockout" if engaged else "login", user, client, service, "wrong user name or password")
                raise BadCredentials("wrong user name or password", locked=engaged, audited=True)
            await self.users.record_success(user)
        return Principal(user, stored.admin, version=stored.version)

    def _record(self, action: str, user: str, client: str | None, service: str, reason: str) -> None:
        if self.audit is not None:
            self.audit.record(action, "denied", None, client, None, user=user, service=service, reason=reason)

    async def login_token(self, principal: Principal, description: str) -> str:
        """A token for a client login (npm): the user's own rights at most, never admin, expiring."""
        _, secret = await self.users.create_token_async(principal.user, ["*"], LOGIN_TOKEN_PERM,
                                                        self.login_token_ttl, description)
        return secret

    async def _token_principal(self, secret: str, user: str | None) -> Principal:
        token, owner = await self.users.resolve_token(secret=secret)
        if token is None or not token.usable(time.time()):
            raise BadCredentials("unknown, expired or revoked token")
        if user is not None and token.user is not None and user != token.user:
            raise BadCredentials("token belongs to another user")
        principal = _owner(token, owner)
        await self.users.touch_token(token, time.time())
        return principal

    async def _jwt_principal(self, value: str) -> Principal:
        try:
            claims = jwt.decode(value, self.secret, algorithms=["HS256"], audience="depot")
        except jwt.PyJWTError as exc:
            raise BadCredentials(f"bad bearer token: {exc}") from None
        # a Docker token grants its scopes on OCI routes only; a session token stands for the user
        scopes = None if claims.get("use") == "session" else _scopes(claims.get("access"))
        user, token_id = claims.get("sub"), claims.get("tid")
        if token_id:
            token, owner = await self.users.resolve_token(token_id=str(token_id))
            if token is None or not token.usable(time.time()):
                raise BadCredentials("token revoked")
            principal = _owner(token, owner)
        elif user:
            stored = await self.users.user_state(user)
            if stored is None:
                raise BadCredentials("bearer token of an unknown user")
            principal = Principal(user, stored.admin, version=stored.version)
        else:
            principal = ANONYMOUS
        if principal.user is not None and claims.get("cv") != principal.version:
            raise BadCredentials("bearer token issued before a credential change; log in again")
        return replace(principal, scopes=scopes)

    def for_route(self, principal: Principal, scope_name: str | None, perm: str) -> Principal:
        """The principal a request acts as: a JWT counts only on the OCI route its claims name
        (<repo>/<image> and the action), and as no credentials anywhere else."""
        if principal.scopes is None:
            return principal
        action = JWT_ACTIONS.get(perm)
        if scope_name is None or action is None:
            return ANONYMOUS
        if (scope_name, action) in principal.scopes or (scope_name, "*") in principal.scopes:
            return replace(principal, scopes=None)
        return ANONYMOUS

    def is_admin(self, principal: Principal) -> bool:
        """A global admin (audit log, every metric): an admin's password or admin token on every
        repository; a JWT or a narrower token never is one."""
        if self.open_access:
            return True
        token = principal.token
        return (principal.admin and principal.scopes is None
                and (token is None or (token.perm == "admin" and "*" in token.repos)))

    def rank(self, principal: Principal, repo: RepoConfig) -> int:
        """The principal's permission rank on a repository (0: nothing)."""
        if self.open_access:
            return RANK["admin"]
        anon = RANK["read"] if anonymous_read(repo, self.repos) else 0
        if principal.scopes is not None:        # a JWT outside `for_route`: no credentials
            return anon
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

    def scope_repo(self, name: str) -> RepoConfig | None:
        """The OCI repository a token scope name (<repo>/<image>, or <image> on the mirror) means."""
        repo = self.repos.get(name.split("/", 1)[0])
        if repo is not None and "/" in name:
            return repo if repo.format == "oci" else None
        return next((r for r in self.repos.values() if r.format == "oci" and r.mirror), None)

    def docker_token(self, principal: Principal, scopes: list[tuple[str, str, list[str]]],
                     ttl: int = DOCKER_TOKEN_TTL) -> str:
        """A signed token (short-lived by default) granting what the principal may do of the
        asked scopes; as a Bearer it stands for the principal (a token's revocation included)."""
        now = int(time.time())
        claims = {"iss": "depot", "aud": "depot", "iat": now, "nbf": now - 5, "exp": now + ttl,
                  "sub": principal.user or "", "tid": principal.token.id if principal.token else None,
                  "cv": principal.version,
                  "access": [{"type": t, "name": n, "actions": a} for t, n, a in scopes],
                  "jti": secrets.token_hex(8)}
        return jwt.encode(claims, self.secret, algorithm="HS256")


    def session_token(self, principal: Principal, ttl: int) -> str:
        """A signed bearer token standing for the principal on every route for `ttl` seconds (a
        client login such as Conan's); unlike a Docker token it names no scopes. Revoking the
        token it came from, or a password change, ends it (credential version)."""
        now = int(time.time())
        claims = {"iss": "depot", "aud": "depot", "iat": now, "nbf": now - 5, "exp": now + ttl,
                  "sub": principal.user or "", "tid": principal.token.id if principal.token else None,
                  "cv": principal.version, "use": "session", "jti": secrets.token_hex(8)}
        return jwt.encode(claims, self.secret, algorithm="HS256")


def _owner(token: Token, owner: StoredUser | None) -> Principal:
    """A token's principal (its rights are the owner's, capped by the token's)."""
    if token.user is None:
        return Principal(None, False, token)
    if owner is None:
        raise BadCredentials("the token's user no longer exists")
    return Principal(token.user, owner.admin, token, owner.version)


def _still_usable(principal: Principal) -> bool:
    token = principal.token
    return token is None or token.usable(time.time())


def _scopes(access: object) -> frozenset[tuple[str, str]]:
    """The (name, action) pairs of a JWT's `access` claim (repository entries only)."""
    pairs: set[tuple[str, str]] = set()
    for entry in access if isinstance(access, list) else []:
        if isinstance(entry, dict) and entry.get("type") == "repository" and isinstance(entry.get("name"), str):
            actions = entry.get("actions")
            pairs.update((entry["name"], a) for a in (actions if isinstance(actions, list) else [])
                         if isinstance(a, str))
    return frozenset(pairs)


def _basic(value: str) -> tuple[str, str]:
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise BadCredentials("malformed Basic credentials") from None
    user, sep, password = decoded.partition(":")
    if not sep:
        raise BadCredentials("malformed Basic credentials")
    return user, password
