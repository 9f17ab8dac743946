"""The upstream HTTP client: one ClientSession, timeouts, bounded retries, auth from config."""
from __future__ import annotations

import asyncio
import base64
import logging
import ssl
import time
from dataclasses import dataclass
from typing import Mapping

import aiohttp
from yarl import URL

from .retry import backoff, retryable
from .auth import UpstreamAuth

log = logging.getLogger("depot.upstream")

USER_AGENT = "depot/0.1 (+caching dependency proxy)"


class UpstreamError(Exception):
    """The upstream could not be reached or did not answer in time."""

    def __init__(self, reason: str, timed_out: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.timed_out = timed_out


@dataclass(frozen=True)
class Timeouts:
    connect: float = 10.0
    read: float = 60.0


class UpstreamClient:
    """Every upstream request of a process goes through here."""

    def __init__(self, timeouts: Timeouts = Timeouts(), retries: int = 2, ca_file: str | None = None) -> None:
        self.timeouts = timeouts
        self.retries = retries
        self.ssl: ssl.SSLContext | bool = True
        if ca_file:
            self.ssl = ssl.create_default_context()
            self.ssl.load_verify_locations(ca_file)
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=256, limit_per_host=64, ttl_dns_cache=300, ssl=self.ssl)
            self._session = aiohttp.ClientSession(
                connector=connector, auto_decompress=False,
                headers={"User-Agent": USER_AGENT},
                timeout=aiohttp.ClientTimeout(total=None, connect=self.timeouts.connect,
                                              sock_read=self.timeouts.read))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    @staticmethod
    def auth_headers(auth: UpstreamAuth) -> dict[str, str]:
        """Authorization header for configured credentials (never logged)."""
        if auth.token:
            return {"Authorization": f"Bearer {auth.token}"}
        if auth.username is not None:
            pair = f"{auth.username}:{auth.password or ''}".encode()
            return {"Authorization": "Basic " + base64.b64encode(pair).decode("ascii")}
        return {}

    async def request(self, method: str, url: str, headers: Mapping[str, str] | None = None,
                      auth: UpstreamAuth = UpstreamAuth(), allow_redirects: bool = True,
                      data: bytes | None = None) -> aiohttp.ClientResponse:
        """Send a request; retries connect errors and 502/503/504 with backoff.

        The caller owns the returned response and must release it. Raises UpstreamError.
        """
        merged = {**self.auth_headers(auth), **(headers or {})}
        attempt = 0
        while True:
            attempt += 1
            started = time.monotonic()
            try:
                response = await self.session.request(method, url, headers=merged, data=data,
                                                      allow_redirects=allow_redirects)
            except asyncio.TimeoutError as exc:
                error: UpstreamError = UpstreamError(f"timeout after {time.monotonic() - started:.1f}s",
                                                     timed_out=True)
                status = None
                cause: BaseException = exc
            except aiohttp.ClientError as exc:
                error = UpstreamError(f"{type(exc).__name__}: {exc}".split(" [")[0][:200])
                status = None
                cause = exc
            else:
                if not (retryable(response.status) and attempt <= self.retries):
                    return response
                response.release()
                status = response.status
                error = UpstreamError(f"upstream answered {status}")
                cause = error
            if attempt > self.retries or not retryable(status) or error.timed_out:
                raise error from cause
            log.info("upstream retry method=%s url=%s attempt=%d reason=%s",
                     method, without_credentials(url), attempt, error.reason)
            await asyncio.sleep(backoff(attempt))


def without_credentials(url: str) -> str:
    """The URL without any userinfo, for logs and API answers."""
    return str(URL(url).with_user(None)) if "@" in url else url


def same_origin(url: str, base: str | None) -> bool:
    """Whether `url` is on the same scheme, host and port as `base` (credentials configured for
    an upstream are sent to it only, never to a download host its metadata names)."""
    if not base:
        return False
    one, two = URL(url), URL(base)
    return (one.scheme, one.host, one.port) == (two.scheme, two.host, two.port)
