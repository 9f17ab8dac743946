"""Contract of UploadSessionStorage and LockStorage (cache/storage.py; cache/uploads.py, cache/locks.py).

Every implementation: sessions kept in the metadata store with their bytes beside the blob store,
continued by a second opening of the same storage (another process, or another node when the
metadata and blobs are shared), verified against the client's digest before anything is a blob.
"""
from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import AsyncIterator

import pytest

from depot.cache.blobs import DigestMismatch, TooLarge
from depot.cache.storage import LockStorage, Storage, UploadSessionStorage, open_storage
from depot.cache.uploads import FLUSH_IDLE, RangeInvalid, UploadUnknown

MAX = 64 * 1024 * 1024


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


async def body(*pieces: bytes, pause: float = 0.0) -> AsyncIterator[bytes]:
    for index, piece in enumerate(pieces):
        if index and pause:
            await asyncio.sleep(pause)
        yield piece


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def other_node(storage: Storage) -> Storage:
    """The same storage opened a second time (another worker process, or another node)."""
    return open_storage(Path(storage.blobs.root), storage.kind, s3=getattr(storage.blobs, "settings", None),
                        database_url=getattr(storage.db, "url", None))


def test_implements_the_protocols(storage):
    assert isinstance(storage.uploads, UploadSessionStorage)
    assert isinstance(storage.locks, LockStorage)


def test_chunks_in_order_then_finish_stores_the_verified_blob(storage):
    up = storage.uploads
    data = b"a" * 100_000 + b"b" * 50_000 + b"c" * 7

    async def scenario() -> None:
        session = await up.create("r", "img")
        assert (await up.get(session.id, "r", "img")).size == 0
        assert await up.append(session, body(data[:100_000]), 0, MAX) == 100_000
        with pytest.raises(RangeInvalid):
            await up.append(session, body(b"x"), 5, MAX)              # not where the upload stands
        assert await up.append(session, body(data[100_000:150_000]), None, MAX) == 150_000
        digest, size = await up.finish(session, body(data[150_000:]), sha256(data), MAX)
        assert (digest, size) == (hashlib.sha256(data).hexdigest(), len(data))
        assert await storage.blobs.read(digest) == data
        with pytest.raises(UploadUnknown):
            await up.get(session.id, "r", "img")                    # finished: gone
    run(scenario())


def test_sessions_belong_to_their_repository_and_scope(storage):
    up = storage.uploads

    async def scenario() -> None:
        session = await up.create("r", "img")
        for repo, scope in (("other", "img"), ("r", "other")):
            with pytest.raises(UploadUnknown):
                await up.get(session.id, repo, scope)
        for bad in ("../../etc", "x" * 32, ""):
            with pytest.raises(UploadUnknown):
                await up.get(bad, "r", "img")
        await up.cancel(session)
        with pytest.raises(UploadUnknown):
            await up.get(session.id, "r", "img")
    run(scenario())


def test_a_single_part_upload_and_sha512_and_empty_uploads(storage):
    up = storage.uploads
    data = b"one part" * 1000

    async def scenario() -> None:
        one = await up.create("r", "i")
        assert await up.append(one, body(data), 0, MAX) == len(data)
        assert (await up.finish(one, body(), sha256(data), MAX))[1] == len(data)
        assert await storage.blobs.read(hashlib.sha256(data).hexdigest()) == data
        two = await up.create("r", "i")
        await up.append(two, body(data[:10]), 0, MAX)
        sha512 = "sha512:" + hashlib.sha512(data).hexdigest()
        stored, _ = await up.finish(two, body(data[10:]), sha512, MAX)
        assert stored == hashlib.sha256(data).hexdigest()
        empty = await up.create("r", "i")
        assert (await up.finish(empty, body(), sha256(b""), MAX)) == (hashlib.sha256(b"").hexdigest(), 0)
    run(scenario())


def test_a_wrong_digest_or_too_many_bytes_stores_nothing_and_ends_the_session(storage):
    up = storage.uploads
    data = b"payload" * 100

    async def scenario() -> None:
        session = await up.create("r", "i")
        await up.append(session, body(data[:50]), 0, MAX)
        with pytest.raises(DigestMismatch):
            await up.finish(session, body(data[50:]), sha256(b"something else"), MAX)
        assert storage.blobs.stat(hashlib.sha256(data).hexdigest()) is None
        with pytest.raises(UploadUnknown):
            await up.get(session.id, "r", "i")
        big = await up.create("r", "i")
        with pytest.raises(TooLarge):
            await up.append(big, body(b"x" * 600, b"y" * 600), 0, 1000)
        assert (await up.get(big.id, "r", "i")).size == 0        # nothing of the refused chunk kept
    run(scenario())


def test_another_node_continues_and_finishes_a_session(storage):
    second = other_node(storage)
    data = bytes(range(256)) * 4096 * 3           # 3 MiB in three parts across two openings
    third = len(data) // 3
    try:
        async def scenario() -> None:
            session = await storage.uploads.create("r", "img")
            await storage.uploads.append(session, body(data[:third]), 0, MAX)
            there = await second.uploads.get(session.id, "r", "img")
            assert there.size == third
            await second.uploads.append(there, body(data[third:2 * third]), third, MAX)
            here = await storage.uploads.get(session.id, "r", "img")
            digest, size = await storage.uploads.finish(here, body(data[2 * third:]), sha256(data), MAX)
            assert size == len(data) and await second.blobs.read(digest) == data
        run(scenario())
    finally:
        second.close()


def test_what_arrived_before_a_pause_or_a_cut_is_kept_and_reported(storage):
    up = storage.uploads

    async def cut() -> AsyncIterator[bytes]:
        yield b"k" * 1000
        raise ConnectionResetError("client went away")

    async def scenario() -> None:
        session = await up.create("r", "i")
        appending = asyncio.create_task(up.append(session, body(b"a" * 700, b"b" * 300, pause=FLUSH_IDLE * 8),
                                                  0, MAX))
        await asyncio.sleep(FLUSH_IDLE * 4)                       # the client pauses mid-body
        assert (await up.get(session.id, "r", "i")).size == 700    # ... and is told what is kept
        assert await appending == 1000
        with pytest.raises(ConnectionResetError):
            await up.append(session, cut(), 1000, MAX)
        assert (await up.get(session.id, "r", "i")).size == 2000   # the cut chunk's bytes are kept
        data = b"a" * 700 + b"b" * 300 + b"k" * 1000
        assert (await up.finish(session, body(), sha256(data), MAX))[1] == 2000
    run(scenario())


def test_two_appends_at_the_same_offset_have_one_winner(storage):
    up = storage.uploads

    async def scenario() -> list[object]:
        session = await up.create("r", "i")
        slow = [body(bytes([n]) * 5000, bytes([n]) * 5000, pause=0.05) for n in (1, 2)]
        return await asyncio.gather(*(up.append(session, chunks, 0, MAX) for chunks in slow),
                                    return_exceptions=True)
    outcomes = run(scenario())
    assert sorted(type(o).__name__ for o in outcomes) == ["RangeInvalid", "int"], outcomes


def test_named_locks_exclude_across_openings(storage):
    second = other_node(storage)
    order: list[str] = []
    try:
        async def holder(locks, name: str, hold: float) -> None:  # type: ignore[no-untyped-def]
            async with locks.hold("repo\0oci"):
                order.append(f"{name} in")
                await asyncio.sleep(hold)
                order.append(f"{name} out")

        async def scenario() -> None:
            first = asyncio.create_task(holder(storage.locks, "a", 0.4))
            await asyncio.sleep(0.1)
            await asyncio.gather(first, holder(second.locks, "b", 0.0))
            async with storage.locks.hold("another name"):     # other names are independent
                async with second.locks.hold("yet another"):
                    order.append("both")
        run(scenario())
    finally:
        second.close()
    assert order == ["a in", "a out", "b in", "b out", "both"]
