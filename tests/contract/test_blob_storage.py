"""Contract of BlobStorage (cache/storage.py), as CNCF distribution's storage-driver suite does it:
the same tests against every implementation."""
from __future__ import annotations

import asyncio
import hashlib
import os

import pytest

from depot.cache.blobs import DigestMismatch, TooLarge
from depot.cache.storage import BlobStorage


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


async def _chunks(*parts: bytes):  # type: ignore[no-untyped-def]
    for part in parts:
        yield part


def test_is_a_blob_storage(storage):
    assert isinstance(storage.blobs, BlobStorage)


def test_put_bytes_is_content_addressed_and_idempotent(storage):
    blobs = storage.blobs
    data = os.urandom(70_000)
    digest = hashlib.sha256(data).hexdigest()
    assert blobs.stat(digest) is None and not blobs.exists(digest)
    assert run(blobs.put_bytes(data)) == (digest, len(data))
    assert run(blobs.put_bytes(data)) == (digest, len(data))      # a second writer is harmless
    assert blobs.stat(digest) == len(data) and blobs.exists(digest)
    assert run(blobs.read(digest)) == data


def test_ranged_reads_as_chunks(storage):
    blobs = storage.blobs
    data = os.urandom(600_000)
    digest, _ = run(blobs.put_bytes(data))

    async def collect(start: int, end: int | None) -> bytes:
        return b"".join([c async for c in blobs.read_chunks(digest, start, end, chunk_size=65536)])
    assert run(collect(0, None)) == data
    assert run(collect(100, 200)) == data[100:200]
    assert run(collect(599_990, None)) == data[599_990:]


def test_stream_with_expected_digest(storage):
    blobs = storage.blobs
    parts = [os.urandom(1000) for _ in range(5)]
    whole = b"".join(parts)
    digest = hashlib.sha256(whole).hexdigest()
    assert run(blobs.put_stream(_chunks(*parts), digest)) == (digest, len(whole))


def test_mismatch_and_oversize_store_nothing(storage):
    blobs = storage.blobs
    data = b"payload" * 100
    digest = hashlib.sha256(data).hexdigest()
    with pytest.raises(DigestMismatch):
        run(blobs.put_stream(_chunks(data), "0" * 64))
    with pytest.raises(TooLarge):
        run(blobs.put_stream(_chunks(data, data), None, max_size=len(data)))
    assert not blobs.exists(digest)
    assert [d for d, _, _ in blobs.scan()] == []


def test_writer_commit_and_abort(storage):
    blobs = storage.blobs
    writer = blobs.writer()
    writer.write(b"abc")
    writer.abort()
    assert blobs.scan() == []
    writer = blobs.writer()
    writer.write(b"abc")
    digest = writer.commit()
    assert digest == hashlib.sha256(b"abc").hexdigest() and blobs.stat(digest) == 3


def test_scan_and_delete(storage):
    blobs = storage.blobs
    digests = {run(blobs.put_bytes(os.urandom(100)))[0] for _ in range(5)}
    assert {d for d, size, _ in blobs.scan()} == digests
    victim = sorted(digests)[0]
    assert blobs.delete(victim) == 100
    assert blobs.delete(victim) == 0
    assert {d for d, _, _ in blobs.scan()} == digests - {victim}


def test_local_path_or_direct_url(storage):
    blobs = storage.blobs
    digest, _ = run(blobs.put_bytes(b"x" * 10))
    local, url = blobs.local_path(digest), blobs.direct_url(digest)
    assert local is not None or url is not None
    if local is not None:
        assert local.read_bytes() == b"x" * 10
    if url is not None:                               # presigned: a plain GET, no credentials
        import requests
        answer = requests.get(url, timeout=10)
        assert answer.status_code == 200 and answer.content == b"x" * 10
        assert requests.get(url.replace("X-Amz-Signature=", "X-Amz-Signature=0"), timeout=10).status_code == 403


def test_digests_are_validated(storage):
    with pytest.raises(ValueError):
        storage.blobs.stat("../../etc/passwd")


def test_large_stream_in_parts_with_ranges_across_parts(storage):
    """Past one part (8 MiB for s3): a multipart upload, readable across part boundaries."""
    blobs = storage.blobs
    parts = [os.urandom(1024 * 1024) for _ in range(20)]
    whole = b"".join(parts)
    digest = hashlib.sha256(whole).hexdigest()
    assert run(blobs.put_stream(_chunks(*parts), digest)) == (digest, len(whole))
    assert blobs.stat(digest) == len(whole)

    async def collect(start: int, end: int | None) -> bytes:
        return b"".join([c async for c in blobs.read_chunks(digest, start, end)])
    edge = 8 * 1024 * 1024
    assert run(collect(edge - 1000, edge + 1000)) == whole[edge - 1000:edge + 1000]
    assert hashlib.sha256(run(collect(0, None))).hexdigest() == digest


def test_large_mismatch_stores_nothing(storage):
    blobs = storage.blobs
    parts = [os.urandom(1024 * 1024) for _ in range(12)]
    with pytest.raises(DigestMismatch):
        run(blobs.put_stream(_chunks(*parts), "0" * 64))
    assert blobs.scan() == []
    leftovers = getattr(blobs, "stale_uploads", None)
    if leftovers is not None:                         # no temporary upload left behind
        assert leftovers(older_than=-60) == 0


def test_racing_writers_of_one_blob(storage):
    blobs = storage.blobs
    data = os.urandom(300_000)
    digest = hashlib.sha256(data).hexdigest()

    async def race() -> list[tuple[str, int]]:
        return await asyncio.gather(*(blobs.put_bytes(data) for _ in range(8)))
    assert run(race()) == [(digest, len(data))] * 8
    assert run(blobs.read(digest)) == data and [d for d, _, _ in blobs.scan()] == [digest]


def test_local_file_and_adopt(storage, tmp_path):
    blobs = storage.blobs
    data = os.urandom(9 * 1024 * 1024 + 5)
    digest, _ = run(blobs.put_bytes(data))
    with blobs.local_file(digest) as path:
        assert path.read_bytes() == data
    other = os.urandom(1000)
    temp = blobs.tmp / "adopt-me.part"
    temp.write_bytes(other)
    blobs.adopt(temp, hashlib.sha256(other).hexdigest())
    assert not temp.exists() and run(blobs.read(hashlib.sha256(other).hexdigest())) == other
