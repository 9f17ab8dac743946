"""The Docker registry token flow for upstream registries (anonymous or with credentials).

1. `GET <upstream>/v2/` without credentials; a `401` with
   `WWW-Authenticate: Bearer realm="…",service="…"` says where tokens come from
   (a `200` means no auth; `Basic` means send the configured credentials as they are).
2. `GET <realm>?service=…&scope=repository:<name>:pull`, with Basic credentials when configured.
3. Send `Authorization: Bearer <token>`; tokens are cached until shortly before they expire.
"""
from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from typing import Any

from cachetools import TLRUCache
from yarl import URL

from .auth import UpstreamAuth

from .client import UpstreamClient, UpstreamError

CHALLENGE_TTL = 3600.0
DEFAULT_EXPIRES = 60.0
EXPIRY_MARGIN = 10.0
MAX_TOKEN_BODY = 1 << 20
_PARAM = re.compile(r'(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')


@dataclass(frozen=True)
class Challenge:
    """How an upstream wants to be authenticated."""

    scheme: str                 # "none" | "basic" | "bearer"
    realm: str = ""
    service: str = ""


def parse_challenge(header: str | None) -> Challenge:
    """A WWW-Authenticate header -> Challenge (unknown or missing -> basic)."""
    if not header:
        return Challenge("basic")
    scheme, _, rest = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return Challenge("basic")
    params = {m[1].lower(): (m[2] if m[2] is not None else m[3]) for m in _PARAM.finditer(rest)}
    realm = params.get("realm", "")
    if not realm.startswith(("http://", "https://")):
        return Challenge("basic")
    return Challenge("bearer", realm, params.get("service", ""))


def token_lifetime(doc: dict[str, Any], now: float) -> float:
    """Seconds the token may be used (expires_in, default 60 s, minus a margin)."""
    try:
        expires = float(doc.get("expires_in") or DEFAULT_EXPIRES)
    except (TypeError, ValueError):
        expires = DEFAULT_EXPIRES
    return max(expires - EXPIRY_MARGIN, 1.0)


def _ttu(_key: Any, value: tuple[Any, float], now: float) -> float:
    """Time-to-use of a cache item stored as (value, seconds to live)."""
    return now + value[1]


class DockerAuth:
    """Authorization headers for upstream registry requests, with cached challenges and tokens."""

    def __init__(self, client: UpstreamClient, maxsize: int = 4096) -> None:
        self.client = client
        self.challenges: TLRUCache[str, tuple[Challenge, float]] = TLRUCache(
            maxsize=256, ttu=_ttu, timer=time.monotonic)
        self.tokens: TLRUCache[tuple[str, str, str, str], tuple[str, float]] = TLRUCache(
            maxsize=maxsize, ttu=_ttu, timer=time.monotonic)

    async def challenge(self, base: str) -> Challenge:
        """What `<base>/v2/` asks for (cached for an hour). Raises UpstreamError."""
        found = self.challenges.get(base)
        if found is not None:
            return found[0]
        response = await self.client.request("GET", base.rstrip("/") + "/v2/", {})
        async with response:
            if response.status == 401:
                result = parse_challenge(response.headers.get("WWW-Authenticate"))
            elif response.status < 400:
                result = Challenge("none")
            else:
                raise UpstreamError(f"upstream /v2/ answered {response.status}")
        self.challenges[base] = (result, CHALLENGE_TTL)
        return result

    async def headers(self, base: str, image: str, auth: UpstreamAuth) -> dict[str, str]:
        """Authorization header (if any) for pulling `image` from the registry at `base`."""
        found = await self.challenge(base)
        if found.scheme == "none":
            return {}
        if found.scheme == "basic":
            return self.client.auth_headers(auth)
        scope = f"repository:{image}:pull"
        key = (found.realm, found.service, scope, auth.username or "")
        cached = self.tokens.get(key)
        if cached is None:
            cached = await self._fetch_token(found, scope, auth)
            self.tokens[key] = cached
        return {"Authorization": f"Bearer {cached[0]}"}

    async def _fetch_token(self, found: Challenge, scope: str, auth: UpstreamAuth) -> tuple[str, float]:
        url = URL(found.realm).update_query({"service": found.service, "scope": scope}) \
            if found.service else URL(found.realm).update_query({"scope": scope})
        response = await self.client.request("GET", str(url), {}, auth=auth)
        async with response:
            if response.status != 200:
                raise UpstreamError(f"token endpoint answered {response.status}")
            body = await response.content.read(MAX_TOKEN_BODY)
        try:
            doc = json.loads(body)
            token = doc.get("token") or doc.get("access_token")
        except (ValueError, AttributeError):
            raise UpstreamError("token endpoint answered no JSON") from None
        if not isinstance(token, str) or not token:
            raise UpstreamError("token endpoint answered no token")
        return token, token_lifetime(doc, time.time())

    def forget(self, base: str) -> None:
        """Drop what is cached for an upstream (after it rejected a token)."""
        found = self.challenges.pop(base, None)
        if found is None:
            return
        for key in [k for k in self.tokens.keys() if k[0] == found[0].realm]:
            self.tokens.pop(key, None)
