"""Resumable upload sessions (the OCI blob upload protocol) shared by every process and node.

A session's state is a row of the metadata store (SQLite, or PostgreSQL shared by several
nodes): who it belongs to and how many bytes it holds. Its bytes are numbered parts in the
part storage beside the blob store (cache/upload_parts.py: local files, or objects in the S3
bucket). So consecutive requests of one upload may reach any worker of any node.

Appending streams the request body into a new part. The part is committed (and the session's
size moved forward with a compare-and-swap on the old size) when the body ends, when the client
pauses for FLUSH_IDLE, and when the client stalls or goes away: what arrived is kept and
reported, so the client can resume from the range it is told. Finishing verifies the whole
upload against the digest the client names (sha256 or sha512): a single part that already is
the blob is moved into the blob store without a copy; several parts are streamed into a blob
writer. Whole blobs are never held in memory.
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable, TypeVar

from .blobs import DigestMismatch, TooLarge
from .upload_parts import PartStorage, parts_for

log = logging.getLogger("depot.uploads")
T = TypeVar("T")

ID_RE = re.compile(r"[0-9a-f]{32}")
SESSION_MAX_AGE = 24 * 3600.0
SWEEP_INTERVAL = 600.0
FLUSH_IDLE = 0.2        # a client pausing this long gets what it sent so far committed
SCHEMA_LOCK = 0x75_70_6C_64   # "upld": serialises creating the tables on PostgreSQL

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS upload_sessions (id TEXT PRIMARY KEY, repo TEXT NOT NULL,"
    " scope TEXT NOT NULL, size BIGINT NOT NULL, created DOUBLE PRECISION NOT NULL,"
    " updated DOUBLE PRECISION NOT NULL)",
    "CREATE TABLE IF NOT EXISTS upload_parts (id TEXT NOT NULL, start_at BIGINT NOT NULL,"
    " size BIGINT NOT NULL, sha256 TEXT NOT NULL, part TEXT NOT NULL, PRIMARY KEY (id, start_at))",
)


class UploadUnknown(Exception):
    """No such upload session (never created, finished, cancelled, expired, or another owner's)."""


class RangeInvalid(Exception):
    """A chunk does not start where the upload stands (or another request moved it first)."""


@dataclass(frozen=True)
class UploadSession:
    """One upload session as the metadata store has it."""

    id: str
    repo: str
    scope: str            # what the session belongs to inside the repository (an OCI image name)
    size: int


def _create_schema(conn: Any) -> None:
    if hasattr(conn, "transaction"):           # PostgreSQL: nodes starting at once must not collide
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(?)", (SCHEMA_LOCK,))
            for statement in SCHEMA:
                conn.execute(statement)
        return
    for statement in SCHEMA:
        conn.execute(statement)


class UploadSessions:
    """Create, extend, finish and cancel upload sessions (the UploadSessionStorage protocol)."""

    def __init__(self, db: Any, blobs: Any, parts: PartStorage | None = None) -> None:
        self.db = db
        self.blobs = blobs
        self.parts: Any = parts if parts is not None else parts_for(blobs)
        self._swept = 0.0
        db.run_sync(_create_schema)

    async def _run(self, fn: Callable[[Any], T]) -> T:
        return await self.db.run(fn)  # type: ignore[no-any-return]

    async def create(self, repo: str, scope: str) -> UploadSession:
        """A new, empty session."""
        await self._sweep()
        session = UploadSession(uuid.uuid4().hex, repo, scope, 0)
        now = time.time()
        await self._run(lambda conn: conn.execute(
            "INSERT INTO upload_sessions (id, repo, scope, size, created, updated) VALUES (?, ?, ?, 0, ?, ?)",
            (session.id, repo, scope, now, now)))
        return session

    async def get(self, session_id: str, repo: str, scope: str) -> UploadSession:
        """The session, if it exists and belongs to `repo` and `scope`; else UploadUnknown."""
        if not ID_RE.fullmatch(session_id):
            raise UploadUnknown(session_id)
        rows = await self._run(lambda conn: conn.execute(
            "SELECT size, created FROM upload_sessions WHERE id = ? AND repo = ? AND scope = ?",
            (session_id, repo, scope)).fetchall())
        if not rows or time.time() - float(rows[0][1]) > SESSION_MAX_AGE:
            raise UploadUnknown(session_id)
        return UploadSession(session_id, repo, scope, int(rows[0][0]))

    async def append(self, session: UploadSession, chunks: AsyncIterator[bytes], start: int | None,
                     max_size: int) -> int:
        """Append a request body (which must begin at `start` when given); the new size.
        TooLarge past `max_size` in all; RangeInvalid when the chunk is out of order."""
        current = await self.get(session.id, session.repo, session.scope)
        if start is not None and start != current.size:
            raise RangeInvalid(f"chunk starts at {start}, upload is at {current.size}")
        receiver = _Receiver(self, session.id, current.size, max_size)
        try:
            await receiver.consume(chunks)
        except TooLarge:
            await receiver.abort()
            raise
        except Exception:
            await receiver.flush()        # a stalled or vanished client may resume from here
            raise
        except BaseException:
            await receiver.abort()
            raise
        await receiver.flush()
        return receiver.size

    async def commit_part(self, session_id: str, start: int, size: int, sha256: str, part: str) -> bool:
        """Record a written part and move the session to start+size, only if it still stands at
        `start` (compare-and-swap: two requests appending at once cannot both succeed)."""
        def work(conn: Any) -> bool:
            moved = conn.execute("UPDATE upload_sessions SET size = ?, updated = ? WHERE id = ? AND size = ?",
                                 (start + size, time.time(), session_id, start)).rowcount == 1
            if moved:
                conn.execute("INSERT INTO upload_parts (id, start_at, size, sha256, part) VALUES (?, ?, ?, ?, ?)",
                             (session_id, start, size, sha256, part))
            return bool(moved)
        return await self._run(work)

    async def finish(self, session: UploadSession, chunks: AsyncIterator[bytes], digest: str,
                     max_size: int) -> tuple[str, int]:
        """Take the last chunk, verify the whole upload against `digest` (`sha256:…` or
        `sha512:…`) and store it as a blob; (sha256 hex, size). The session ends either way
        unless the last chunk itself failed to arrive."""
        try:
            await self.append(session, chunks, None, max_size)
        except TooLarge:
            await self.cancel(session)
            raise
        try:
            parts = await self._parts(session.id)
            return await self._assemble(session.id, parts, digest, max_size)
        finally:
            await self.cancel(session)

    async def _parts(self, session_id: str) -> list[tuple[str, int, str]]:
        rows = await self._run(lambda conn: conn.execute(
            "SELECT part, size, sha256 FROM upload_parts WHERE id = ? ORDER BY start_at",
            (session_id,)).fetchall())
        return [(str(r[0]), int(r[1]), str(r[2])) for r in rows]

    async def _assemble(self, session_id: str, parts: list[tuple[str, int, str]], digest: str,
                        max_size: int) -> tuple[str, int]:
        algorithm, expected = digest.split(":", 1)
        if not parts:
            return await store_verified(self.blobs, _nothing(), digest, max_size)
        if len(parts) == 1 and algorithm == "sha256":
            part, size, sha256 = parts[0]
            if sha256 != expected:
                raise DigestMismatch(expected, sha256)
            await asyncio.to_thread(self.parts.adopt, session_id, part, sha256)
            return sha256, size
        return await store_verified(self.blobs, self._read_all(session_id, parts), digest, max_size)

    async def _read_all(self, session_id: str, parts: list[tuple[str, int, str]]) -> AsyncIterator[bytes]:
        for part, _size, _sha in parts:
            async for chunk in self.parts.read_chunks(session_id, part):
                yield chunk

    async def cancel(self, session: UploadSession) -> None:
        """Forget the session and its bytes."""
        def work(conn: Any) -> None:
            conn.execute("DELETE FROM upload_parts WHERE id = ?", (session.id,))
            conn.execute("DELETE FROM upload_sessions WHERE id = ?", (session.id,))
        await self._run(work)
        await asyncio.to_thread(self.parts.delete_session, session.id)

    async def _sweep(self) -> None:
        """Drop sessions older than a day (at most every SWEEP_INTERVAL per process): a session
        lives a day from its creation, so every part is younger than the bucket's own sweep of
        temporary objects (`stale_uploads`, a day)."""
        now = time.time()
        if now - self._swept < SWEEP_INTERVAL:
            return
        self._swept = now
        cutoff = now - SESSION_MAX_AGE
        rows = await self._run(lambda conn: conn.execute(
            "SELECT id FROM upload_sessions WHERE created < ?", (cutoff,)).fetchall())
        for row in rows:
            await self.cancel(UploadSession(str(row[0]), "", "", 0))
        sweep = getattr(self.parts, "sweep", None)
        if sweep is not None:
            await asyncio.to_thread(sweep)


class _Receiver:
    """One append: the body streamed into parts, committed at the end, on pauses and on failures."""

    def __init__(self, sessions: UploadSessions, session_id: str, size: int, max_size: int) -> None:
        self.sessions = sessions
        self.session_id = session_id
        self.size = size              # committed so far
        self.max_size = max_size
        self.writer: Any = None
        self.part = ""                # name of the open part
        self.pending = 0              # bytes in the open part

    async def consume(self, chunks: AsyncIterator[bytes]) -> None:
        iterator = chunks.__aiter__()
        while True:
            following = asyncio.ensure_future(iterator.__anext__())
            try:
                done, _ = await asyncio.wait({following}, timeout=FLUSH_IDLE)
                if not done:
                    await self.flush()          # the client paused: make what it sent durable
                chunk = await following
            except StopAsyncIteration:
                return
            finally:
                if not following.done():
                    following.cancel()
            await self.write(chunk)

    async def write(self, chunk: bytes) -> None:
        if self.size + self.pending + len(chunk) > self.max_size:
            raise TooLarge(f"more than {self.max_size} bytes")
        if self.writer is None:
            self.part = f"{self.size}-{uuid.uuid4().hex[:12]}"
            self.writer = await asyncio.to_thread(self.sessions.parts.writer, self.session_id, self.part)
        await asyncio.to_thread(self.writer.write, chunk)
        self.pending += len(chunk)

    async def flush(self) -> None:
        """Commit the open part (if any bytes arrived); RangeInvalid when another request
        moved the session meanwhile."""
        writer, self.writer = self.writer, None
        if writer is None or self.pending == 0:
            if writer is not None:
                await asyncio.to_thread(writer.abort)
            return
        await asyncio.to_thread(writer.close)
        size, self.pending = self.pending, 0
        if not await self.sessions.commit_part(self.session_id, self.size, size, writer.sha256.hexdigest(),
                                               self.part):
            await asyncio.to_thread(writer.abort)
            raise RangeInvalid("another request appended to this upload at the same time")
        self.size += size

    async def abort(self) -> None:
        writer, self.writer = self.writer, None
        self.pending = 0
        if writer is not None:
            await asyncio.to_thread(writer.abort)


async def _nothing() -> AsyncIterator[bytes]:
    return
    yield b""  # pragma: no cover  (makes this an async generator)


async def store_verified(blobs: Any, chunks: AsyncIterator[bytes], digest: str,
                         max_size: int) -> tuple[str, int]:
    """Store a blob the client names by `digest` (`sha256:…` or `sha512:…`); (sha256 hex, size).

    The blob store is sha256-addressed: a sha512 digest is checked on a second hasher while the
    bytes stream in, and nothing is committed unless it matches."""
    algorithm, expected = digest.split(":", 1)
    if algorithm == "sha256":
        return await blobs.put_stream(chunks, expected, max_size)  # type: ignore[no-any-return]
    alias = hashlib.new(algorithm)
    writer = await asyncio.to_thread(blobs.writer, max_size)
    try:
        async for chunk in chunks:
            await asyncio.to_thread(_write_hashed, writer, alias, chunk)
        if alias.hexdigest() != expected:
            raise DigestMismatch(expected, alias.hexdigest())
        return await asyncio.to_thread(writer.commit), writer.size
    except BaseException:
        await asyncio.to_thread(writer.abort)
        raise


def _write_hashed(writer: Any, alias: Any, chunk: bytes) -> None:
    writer.write(chunk)
    alias.update(chunk)


class RepoUploads:
    """Upload sessions of one repository, as formats see them (`ctx.hosted.uploads`)."""

    def __init__(self, sessions: UploadSessions, blobs: Any, repo: str) -> None:
        self._sessions = sessions
        self._blobs = blobs
        self.repo = repo

    async def create(self, scope: str) -> UploadSession:
        """A new, empty session belonging to `scope` (e.g. an image name)."""
        return await self._sessions.create(self.repo, scope)

    async def get(self, session_id: str, scope: str) -> UploadSession:
        """The session with its current size; UploadUnknown when it is not this scope's."""
        return await self._sessions.get(session_id, self.repo, scope)

    async def append(self, session: UploadSession, chunks: AsyncIterator[bytes], start: int | None,
                     max_size: int) -> int:
        """Append a chunk that must begin at `start` (when given); the new size. RangeInvalid,
        TooLarge; a stalled or vanished client keeps what arrived."""
        return await self._sessions.append(session, chunks, start, max_size)

    async def finish(self, session: UploadSession, chunks: AsyncIterator[bytes], digest: str,
                     max_size: int) -> tuple[str, int]:
        """The last chunk, then the whole upload verified against `digest` and stored as a blob:
        (sha256 hex, size). DigestMismatch, TooLarge."""
        return await self._sessions.finish(session, chunks, digest, max_size)

    async def cancel(self, session: UploadSession) -> None:
        """Forget the session and its bytes."""
        await self._sessions.cancel(session)

    async def store(self, chunks: AsyncIterator[bytes], digest: str, max_size: int) -> tuple[str, int]:
        """A single-request upload: the body verified against `digest` (`sha256:…`/`sha512:…`)
        and stored as a blob; (sha256 hex, size). Nothing is stored when it fails."""
        return await store_verified(self._blobs, chunks, digest, max_size)
