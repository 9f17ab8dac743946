"""Small HTTP helpers for tests (aiohttp client, bounded by timeouts)."""
from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass

import aiohttp


@dataclass
class Fetched:
    status: int
    headers: dict[str, str]
    body: bytes
    complete: bool          # False if the connection ended before the announced length
    first_byte_at: float    # seconds from request start to the first body byte


async def fetch(session: aiohttp.ClientSession, url: str, method: str = "GET",
                headers: dict[str, str] | None = None) -> Fetched:
    loop = asyncio.get_running_loop()
    start = loop.time()
    first = -1.0
    chunks = []
    complete = True
    async with session.request(method, url, headers=headers) as resp:
        try:
            async for chunk in resp.content.iter_any():
                if first < 0:
                    first = loop.time() - start
                chunks.append(chunk)
        except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError,
                aiohttp.ClientConnectionError):
            complete = False
        return Fetched(resp.status, dict(resp.headers), b"".join(chunks), complete, first)


def get(url: str, method: str = "GET", headers: dict[str, str] | None = None,
        timeout: float = 60) -> Fetched:
    async def run() -> Fetched:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout),
                                         auto_decompress=False) as session:
            return await fetch(session, url, method, headers)
    return asyncio.run(run())


def get_many(url: str, count: int, timeout: float = 120) -> list[Fetched]:
    """`count` concurrent GETs of the same URL."""
    async def run() -> list[Fetched]:
        connector = aiohttp.TCPConnector(limit=0, force_close=True)
        async with aiohttp.ClientSession(connector=connector, auto_decompress=False,
                                         timeout=aiohttp.ClientTimeout(total=timeout)) as session:
            return await asyncio.gather(*(fetch(session, url) for _ in range(count)))
    return asyncio.run(run())


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
