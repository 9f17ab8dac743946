"""multipart/form-data request bodies for the formats whose publish takes a form (Helm, Puppet,
Chef, CocoaPods, Swift): the named fields, bounded by the repository's max_upload and cut off
when the client stalls longer than the configured client_timeout, as ctx.body() is."""
from __future__ import annotations

import asyncio
import base64
from typing import Awaitable, TypeVar

from aiohttp import BodyPartReader

from .base import BODY_IDLE, BODY_IDLE_TIMEOUT, MIN_BODY_PROGRESS, Ctx, FormatError

T = TypeVar("T")
CHUNK = 256 * 1024


class _Idle:
    """body_chunks' rule for a multipart body: the client may spend `idle` s waiting in total
    before it has sent MIN_BODY_PROGRESS more bytes (a trickle is cut off like silence is)."""

    def __init__(self, idle: float) -> None:
        self.idle = idle
        self.waited = 0.0
        self.progress = 0

    async def read(self, step: Awaitable[T]) -> T:
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            out = await asyncio.wait_for(step, timeout=max(self.idle - self.waited, 0.01))
        except asyncio.TimeoutError:
            raise FormatError(408, f"client sent less than {MIN_BODY_PROGRESS} bytes in {self.idle:.0f} s") from None
        self.waited += loop.time() - started
        self.progress += len(out) if isinstance(out, bytes) else 0
        if self.progress >= MIN_BODY_PROGRESS:
            self.waited, self.progress = 0.0, 0
        return out


async def form_fields(ctx: Ctx, fields: tuple[str, ...] | frozenset[str], malformed: int = 400,
                      decode_base64: bool = False) -> dict[str, bytes]:
    """The fields named in `fields` of the request's multipart/form-data body (others are read
    and dropped). 413 past the repository's max_upload, 408 when the client stalls, `malformed`
    (the format's status for bad input) on a broken body; with `decode_base64`, parts sent with
    `Content-Transfer-Encoding: base64` are decoded (SwiftPM)."""
    clock = _Idle(ctx.request.config_dict.get(BODY_IDLE, BODY_IDLE_TIMEOUT))
    declared = ctx.request.content_length
    if declared is not None and declared > ctx.repo.max_upload:
        raise FormatError(413, f"body of {declared} bytes is larger than the limit of {ctx.repo.max_upload}")
    out: dict[str, bytes] = {}
    total = 0
    try:
        reader = await ctx.request.multipart()
        while (part := await clock.read(reader.next())) is not None:
            if not isinstance(part, BodyPartReader):
                raise FormatError(malformed, "nested multipart is not supported")
            chunks = []
            while chunk := await clock.read(part.read_chunk(CHUNK)):
                total += len(chunk)
                if total > ctx.repo.max_upload:
                    raise FormatError(413, f"upload larger than {ctx.repo.max_upload} bytes")
                chunks.append(chunk)
            if part.name is None or part.name not in fields:
                continue
            data = b"".join(chunks)
            if decode_base64 and part.headers.get("Content-Transfer-Encoding", "").lower() == "base64":
                data = base64.b64decode(data)
            out[part.name] = data
    except (ValueError, AssertionError) as exc:      # binascii.Error is a ValueError
        raise FormatError(malformed, f"malformed multipart body: {exc}") from None
    return out
