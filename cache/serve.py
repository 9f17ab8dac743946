"""Answering from the store: conditional requests, Range, HEAD, memory or sendfile.

Small blobs are served from an in-memory LRU of bytes (no thread hop, no syscalls); large
ones by sendfile on the loop, opening the file inline (cheaper than a thread hop on a hit).
"""
from __future__ import annotations

import asyncio
import os
import socket
from email.utils import formatdate
from typing import Any, AsyncIterator, Literal, Mapping

from aiohttp import web
from cachetools import LRUCache

from .blobs import BlobStore


class MemoryCache:
    """Bytes of small blobs by digest, bounded in total size."""

    def __init__(self, max_bytes: int, item_max: int) -> None:
        self.item_max = item_max
        self.data: LRUCache[str, bytes] = LRUCache(maxsize=max(max_bytes, 1), getsizeof=len)

    def get(self, digest: str) -> bytes | None:
        return self.data.get(digest)

    def put(self, digest: str, body: bytes) -> None:
        if len(body) <= self.item_max and len(body) <= self.data.maxsize:
            self.data[digest] = body


def etag_of(digest: str) -> str:
    return f'"{digest}"'


def _not_modified(request: web.Request, etag: str, last_modified: str | None) -> bool:
    inm = request.headers.get("If-None-Match")
    if inm is not None:
        tags = {t.strip().removeprefix("W/") for t in inm.split(",")}
        return etag in tags or "*" in tags
    ims = request.headers.get("If-Modified-Since")
    return bool(ims and last_modified and ims == last_modified)


def parse_range(header: str | None, size: int) -> tuple[int, int] | None | Literal[False]:
    """(start, end_exclusive) for one satisfiable byte range; None: whole body; False: 416."""
    if not header or not header.startswith("bytes=") or "," in header:
        return None
    spec = header[6:].strip()
    first, sep, last = spec.partition("-")
    if not sep:
        return None
    try:
        if first == "":
            length = int(last)
            if length <= 0:
                return False
            return max(0, size - length), size
        start = int(first)
        end = int(last) + 1 if last else size
    except ValueError:
        return None
    if start >= size or start < 0 or end <= start:
        return False
    return start, min(end, size)


def blob_headers(digest: str, content_type: str | None, extra: Mapping[str, str] | None,
                 last_modified: str | None) -> dict[str, str]:
    """The headers every answer from the store carries (validators, type, ranges)."""
    headers = {"ETag": etag_of(digest), "Accept-Ranges": "bytes",
               "Content-Type": content_type or "application/octet-stream"}
    if last_modified:
        headers["Last-Modified"] = last_modified
    if extra:
        headers.update(extra)
    return headers


def respond_bytes(request: web.Request, body: bytes, content_type: str,
                  headers: Mapping[str, str] | None = None, digest: str | None = None,
                  last_modified: str | None = None, status: int = 200) -> web.StreamResponse:
    """A rendered or cached body with ETag, 304, Range and HEAD handled."""
    if digest is None:
        import hashlib
        digest = hashlib.sha256(body).hexdigest()
    out = blob_headers(digest, content_type, headers, last_modified)
    if _not_modified(request, out["ETag"], last_modified):
        return web.Response(status=304, headers={k: v for k, v in out.items() if k != "Content-Type"})
    window = parse_range(request.headers.get("Range"), len(body)) if status == 200 else None
    if window is False:
        out["Content-Range"] = f"bytes */{len(body)}"
        return web.Response(status=416, headers=out)
    if window:
        start, end = window
        out["Content-Range"] = f"bytes {start}-{end - 1}/{len(body)}"
        return web.Response(status=206, body=body[start:end], headers=out)
    if not body:
        # aiohttp leaves Content-Length out of a HEAD answer with an empty body; the HEAD must
        # carry the length its GET would (0), or clients cannot tell an empty blob from a stream
        out["Content-Length"] = "0"
    return web.Response(status=status, body=body, headers=out)


class SendfileResponse(web.StreamResponse):
    """Sends (part of) an open file with loop.sendfile, like aiohttp's FileResponse."""

    def __init__(self, fobj: Any, offset: int, count: int, status: int, headers: dict[str, str]) -> None:
        super().__init__(status=status, headers=headers)
        self._fobj = fobj
        self._offset = offset
        self._count = count
        self.content_length = count

    async def prepare(self, request: web.BaseRequest) -> Any:
        transport = request.transport
        # plain TCP only: a TLS socket must never see bytes that bypass its transport
        sock = transport.get_extra_info("socket") if transport is not None and self._count \
            and request.method != "HEAD" and transport.get_extra_info("sslcontext") is None else None
        try:
            if sock is not None and CORK is not None:
                # like nginx's tcp_nopush: the headers wait in the socket and leave with the first
                # body bytes (one wake-up of the client instead of two, fewer small segments)
                _cork(sock, 1)
            writer = await super().prepare(request)
            if request.method != "HEAD" and self._count:
                transport = request.transport
                if transport is None:
                    raise ConnectionResetError("Connection lost")
                sent = _send_now(transport, sock, self._fobj, self._offset, self._count)
                if sent < self._count:   # the socket buffer filled up: the loop waits for room
                    await asyncio.get_running_loop().sendfile(transport, self._fobj, self._offset + sent,
                                                              self._count - sent)
            await super().write_eof()
            return writer
        finally:
            self._fobj.close()
            if sock is not None and CORK is not None:
                _cork(sock, 0)


CORK: int | None = getattr(socket, "TCP_CORK", None)


def _send_now(transport: Any, sock: Any, fobj: Any, offset: int, count: int) -> int:
    """Bytes os.sendfile puts in the socket at once, when nothing waits in the transport's own
    buffer (0 otherwise, or on any error: loop.sendfile then does the work and reports it).
    Most bodies of a few MiB fit: no reader pause, writer registration or file seeks."""
    if sock is None or transport.is_closing() or transport.get_write_buffer_size():
        return 0
    try:
        return os.sendfile(sock.fileno(), fobj.fileno(), offset, count)
    except OSError:
        return 0


def _cork(sock: Any, value: int) -> None:
    """Set TCP_CORK (uncorking sends what waits); a socket already closed is no error."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, CORK, value)
    except OSError:
        pass


def respond_blob(request: web.Request, digest: str, size: int, content_type: str | None,
                 headers: Mapping[str, str] | None = None, *, blobs: BlobStore,
                 memory: MemoryCache | None = None, last_modified: str | None = None) -> web.StreamResponse:
    """Serve a stored blob. Raises FileNotFoundError if the blob has vanished (evicted).

    Remote blobs (object storage) are streamed with one ranged GET, or answered with a 307 to a
    presigned URL when the store redirects and the blob is large enough."""
    local = None
    small = memory if memory is not None and size <= memory.item_max else None
    if getattr(blobs, "remote", False) and (small is None or small.get(digest) is None):
        local = blobs.local_path(digest)      # a node-local copy (cache/blob_tier.py): sendfile as below
        if local is None:
            return _respond_remote(request, digest, size, content_type, headers, blobs, memory, last_modified)
    if small is not None:
        body = small.get(digest)
        if body is None:
            try:
                with open(local or blobs.path(digest), "rb") as fobj:
                    body = fobj.read()
            except FileNotFoundError:
                if local is None:
                    raise
                return _respond_remote(request, digest, size, content_type, headers, blobs, memory, last_modified)
            small.put(digest, body)
        return respond_bytes(request, body, content_type or "application/octet-stream", headers,
                             digest=digest, last_modified=last_modified)
    out = blob_headers(digest, content_type, headers, last_modified)
    if _not_modified(request, out["ETag"], last_modified):
        return web.Response(status=304, headers={k: v for k, v in out.items() if k != "Content-Type"})
    window = parse_range(request.headers.get("Range"), size)
    if window is False:
        out["Content-Range"] = f"bytes */{size}"
        return web.Response(status=416, headers=out)
    try:
        stream = open(local or blobs.path(digest), "rb", buffering=0)   # unbuffered: no isatty or seek
    except FileNotFoundError:
        if local is None:
            raise
        # another worker evicted the node-local copy a moment ago: the bucket still has it
        return _respond_remote(request, digest, size, content_type, headers, blobs, memory, last_modified)
    if window:
        start, end = window
        out["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        return SendfileResponse(stream, start, end - start, 206, out)
    return SendfileResponse(stream, 0, size, 200, out)


def _respond_remote(request: web.Request, digest: str, size: int, content_type: str | None,
                    headers: Mapping[str, str] | None, blobs: Any, memory: MemoryCache | None,
                    last_modified: str | None) -> web.StreamResponse:
    out = blob_headers(digest, content_type, headers, last_modified)
    if memory is not None and size <= memory.item_max and (body := memory.get(digest)) is not None:
        return respond_bytes(request, body, content_type or "application/octet-stream", headers,
                             digest=digest, last_modified=last_modified)
    if _not_modified(request, out["ETag"], last_modified):
        return web.Response(status=304, headers={k: v for k, v in out.items() if k != "Content-Type"})
    window = parse_range(request.headers.get("Range"), size)
    if window is False:
        out["Content-Range"] = f"bytes */{size}"
        return web.Response(status=416, headers=out)
    if (blobs.redirect and request.method == "GET" and size >= getattr(blobs, "redirect_min_size", 0)
            and (url := blobs.direct_url(digest, REDIRECT_SECONDS))):
        return web.Response(status=307, headers={"Location": url, "Cache-Control": "no-store",
                                                 "X-Cache": out.get("X-Cache", "HIT")})
    start, end = window or (0, size)
    if window:
        out["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    chunks = blobs.read_chunks(digest, start, end, chunk_size=REMOTE_CHUNK)
    response = StreamingResponse(chunks, end - start, out, status=206 if window else 200)
    if memory is not None and size <= memory.item_max and not window:
        response.keep = lambda body: memory.put(digest, body)  # type: ignore[attr-defined]
    return response


REMOTE_CHUNK = 1024 * 1024
REDIRECT_SECONDS = 300.0


class StreamingResponse(web.StreamResponse):
    """Relays a body that is still arriving; cuts the connection if the source aborts."""

    keep: Any = None          # called with the whole body once sent (small remote blobs)

    def __init__(self, chunks: AsyncIterator[bytes], length: int | None, headers: dict[str, str],
                 on_bytes: Any = None, status: int = 200) -> None:
        super().__init__(status=status, headers=headers)
        self._chunks = chunks
        self._on_bytes = on_bytes
        if length is not None:
            self.content_length = length
        else:
            self.enable_chunked_encoding()

    async def prepare(self, request: web.BaseRequest) -> Any:
        writer = await super().prepare(request)
        if request.method == "HEAD":
            await self._chunks.aclose()  # type: ignore[attr-defined]
            await super().write_eof()
            return writer
        kept: list[bytes] | None = [] if self.keep is not None else None
        try:
            async for chunk in self._chunks:
                await self.write(chunk)
                if kept is not None:
                    kept.append(chunk)
                if self._on_bytes is not None:
                    self._on_bytes(len(chunk))
        except Exception as exc:
            # the fetch failed: close without completing the body so the client sees an abort
            if request.transport is not None:
                request.transport.abort()
            raise ConnectionResetError(f"upstream fetch aborted: {exc}") from exc
        if kept is not None:
            self.keep(b"".join(kept))
        await super().write_eof()
        return writer


def http_date(timestamp: float) -> str:
    return formatdate(timestamp, usegmt=True)


def file_mtime(path: str) -> float:
    return os.stat(path).st_mtime
