"""The node-local disk tier in front of the S3 blob store (storage.local_cache, cache/blob_tier.py).

Against a real Ceph RGW bucket and real depot nodes on one PostgreSQL; the DiskTier's own rules
(verified fills, nothing partial visible, one fill per digest, LRU bound) with a counting source.
"""
from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Iterable

import obstore
import pytest
import requests

from depot.cache.blob_tier import DiskTier, TieredS3BlobStore
from depot.cache.blobs_s3 import S3Settings
from depot.cache.storage import open_storage

MiB = 1024 * 1024


def _wait_for(check: Any, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


class Source:
    """Blobs by digest for a DiskTier, counting reads; `hold` pauses a read halfway."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.reads: dict[str, int] = {}
        self.hold: threading.Event | None = None
        self.halfway = threading.Event()

    def add(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        self.blobs[digest] = data
        return digest

    def __call__(self, digest: str) -> tuple[int, Iterable[bytes]]:
        self.reads[digest] = self.reads.get(digest, 0) + 1
        data = self.blobs[digest]

        def chunks() -> Iterable[bytes]:
            yield data[:len(data) // 2]
            self.halfway.set()
            if self.hold is not None:
                assert self.hold.wait(20)
            yield data[len(data) // 2:]
        return len(data), chunks()


# --- DiskTier rules -------------------------------------------------------------------------
def test_a_fill_is_invisible_until_verified(tmp_path):
    source = Source()
    digest = source.add(os.urandom(2 * MiB))
    tier = DiskTier(tmp_path / "tier", 64 * MiB, source)
    source.hold = threading.Event()
    filler = threading.Thread(target=tier.fill, args=(digest,))
    filler.start()
    try:
        assert source.halfway.wait(20)
        # half the bytes are written: nothing under the digest yet
        assert tier.get(digest) is None and not tier.path(digest).exists()
        assert list((tmp_path / "tier" / "tmp").glob("fill-*.part"))
    finally:
        source.hold.set()
        filler.join(20)
    assert tier.get(digest) is not None and tier.path(digest).read_bytes() == source.blobs[digest]
    assert not list((tmp_path / "tier" / "tmp").glob("fill-*.part"))
    tier.close()


def test_wrong_or_broken_bytes_never_enter_the_tier(tmp_path):
    source = Source()
    good = source.add(b"right bytes" * 1000)
    liar = "f" * 64
    source.blobs[liar] = b"these bytes do not hash to the digest"
    tier = DiskTier(tmp_path / "tier", 64 * MiB, source)
    assert tier.fill(liar) is False
    assert tier.get(liar) is None and not list((tmp_path / "tier" / "tmp").glob("fill-*"))

    def broken(digest: str) -> tuple[int, Iterable[bytes]]:
        def chunks() -> Iterable[bytes]:
            yield source.blobs[digest][:100]
            raise ConnectionResetError("the bucket hung up")
        return len(source.blobs[digest]), chunks()
    tier.source = broken
    with pytest.raises(ConnectionResetError):
        tier.fill(good)
    assert tier.get(good) is None and not list((tmp_path / "tier" / "tmp").glob("fill-*"))
    tier.close()


def test_one_fill_per_digest_across_the_nodes_processes(tmp_path):
    """Two tiers on one folder (as two worker processes: separate flock descriptions) and a
    burst of want() calls: the source is read once."""
    source = Source()
    digest = source.add(os.urandom(MiB))
    first, second = DiskTier(tmp_path / "tier", 64 * MiB, source), DiskTier(tmp_path / "tier", 64 * MiB, source)
    source.hold = threading.Event()
    for _ in range(20):
        first.want(digest)
    assert source.halfway.wait(20)
    racer = threading.Thread(target=second.fill, args=(digest,))
    racer.start()
    time.sleep(0.3)
    source.hold.set()
    racer.join(20)
    first.close()
    second.close()
    assert source.reads == {digest: 1} and first.get(digest) is not None


def test_eviction_keeps_the_tier_under_max_size(tmp_path):
    source = Source()
    digests = [source.add(os.urandom(MiB)) for _ in range(6)]
    tier = DiskTier(tmp_path / "tier", 3 * MiB + 100, source)
    past = time.time() - 3600
    for i, digest in enumerate(digests[:3]):
        assert tier.fill(digest)
        os.utime(tier.path(digest), (past + i, past + i))      # filled long ago, oldest first
    assert tier.get(digests[0]) is not None                      # a hit: the oldest is young again

    def fill(digest: str) -> set[str]:
        time.sleep(0.02)                                         # mtimes are coarse (jiffies)
        assert tier.fill(digest)
        assert tier.size() <= 3 * MiB + 100
        return {d for d in digests if tier.path(d).exists()}
    assert fill(digests[3]) == {digests[0], digests[2], digests[3]}
    assert fill(digests[4]) == {digests[0], digests[3], digests[4]}
    assert fill(digests[5]) == {digests[3], digests[4], digests[5]}     # now 0 is the least recent
    big = source.add(os.urandom(4 * MiB))                        # larger than the whole tier
    assert tier.fill(big) is False and tier.size() <= 3 * MiB + 100
    tier.close()


# --- the tiered S3 store --------------------------------------------------------------------
@pytest.fixture
def tiered(ceph_rgw, tmp_path):
    settings = S3Settings(ceph_rgw.endpoint, "tier", access_key=ceph_rgw.access_key, secret_key=ceph_rgw.secret_key,
                          prefix=f"t-{uuid.uuid4().hex[:10]}", cache_max_size=64 * MiB)
    storage = open_storage(tmp_path / "data", "s3", s3=settings)
    yield storage.blobs
    storage.close()


def test_second_read_comes_from_the_tier_and_existence_from_the_bucket(tiered):
    assert isinstance(tiered, TieredS3BlobStore)
    data = os.urandom(3 * MiB)
    digest, _ = asyncio.run(tiered.put_bytes(data))
    assert tiered.local_path(digest) is None                     # first read: from the bucket, a fill starts
    _wait_for(lambda: tiered.tier.get(digest) is not None)
    assert tiered.local_path(digest) == tiered.tier.path(digest)
    tiered.delete_key(tiered.key(digest))                        # the bucket loses it behind depot's back

    async def chunks(start: int, end: int | None) -> bytes:
        return b"".join([c async for c in tiered.read_chunks(digest, start, end)])
    assert asyncio.run(tiered.read(digest)) == data               # the tier's copy
    assert asyncio.run(chunks(MiB - 5, MiB + 5)) == data[MiB - 5:MiB + 5]
    with tiered.local_file(digest) as path:
        assert path.read_bytes() == data
    # whether a blob exists is never answered from the tier (a push would skip its upload)
    assert tiered.stat(digest) is None and not tiered.exists(digest)


def test_delete_and_gc_scan_drop_local_copies(tiered, tmp_path):
    kept, gone = (asyncio.run(tiered.put_bytes(os.urandom(MiB)))[0] for _ in range(2))
    for digest in (kept, gone):
        asyncio.run(tiered.read(digest))
    _wait_for(lambda: tiered.tier.get(kept) is not None and tiered.tier.get(gone) is not None)
    assert tiered.delete(kept) == MiB and tiered.tier.get(kept) is None
    # another node deleted `gone` from the bucket: this node's next GC listing drops its copy
    obstore.delete(tiered.s3, tiered.key(gone))
    time.sleep(0.01)
    assert tiered.scan() == [] and tiered.tier.get(gone) is None


def test_a_wrong_object_in_the_bucket_is_not_cached(tiered):
    data = os.urandom(MiB)
    digest, _ = asyncio.run(tiered.put_bytes(data))
    obstore.put(tiered.s3, tiered.key(digest), b"tampered")
    assert tiered.tier.fill(digest) is False
    assert tiered.tier.get(digest) is None and not list(tiered.tier.tmp.glob("fill-*"))


# --- depot nodes ----------------------------------------------------------------------------
@pytest.fixture
def nodes(pg_cluster, ceph_rgw, depot_factory, upstream):
    """make(n, local_cache=True) -> n nodes (2 workers each) on a fresh database and prefix."""
    url, prefix = pg_cluster.new_database(), f"n-{uuid.uuid4().hex[:8]}"
    settings = S3Settings(ceph_rgw.endpoint, "depot", access_key=ceph_rgw.access_key,
                          secret_key=ceph_rgw.secret_key, prefix=prefix)

    def make(count: int, local_cache: bool = True) -> list[Any]:
        storage = {"kind": "s3", "endpoint": ceph_rgw.endpoint, "bucket": "depot", "prefix": prefix,
                   "access_key": ceph_rgw.access_key, "secret_key": ceph_rgw.secret_key,
                   **({"local_cache": {"max_size": "64MiB"}} if local_cache else {})}
        repos = {"local": {"format": "generic", "type": "hosted"},
                 "remote": {"format": "generic", "type": "proxy", "upstream": upstream.url + "/"}}
        return [depot_factory(repos, workers=2,
                              name=f"node-{uuid.uuid4().hex[:6]}",
                              extra={"storage": storage, "database": {"url": url}})
                for _ in range(count)]
    make.settings = settings  # type: ignore[attr-defined]
    return make


def _tier_copy(node: Any, digest: str) -> Path:
    return node.data_dir / "blob-cache" / digest[:2] / digest


def test_hits_are_served_from_the_nodes_tier(nodes):
    """After the first hit fills the tier, the blob's object is deleted from the bucket behind
    depot's back: the node with a tier still answers every hit, range and HEAD (it no longer asks
    the bucket); a node without one cannot."""
    tiered, plain = nodes(1)[0], nodes(1, local_cache=False)[0]
    data = os.urandom(5 * MiB + 3)
    digest = hashlib.sha256(data).hexdigest()
    assert requests.put(f"{tiered.url}/local/big.bin", data=data, timeout=30).status_code == 201
    first = requests.get(f"{tiered.url}/local/big.bin", timeout=30)
    assert first.status_code == 200 and first.content == data
    _wait_for(lambda: _tier_copy(tiered, digest).exists())
    obstore.delete(nodes.settings.store(), f"{nodes.settings.prefix}/blobs/sha256/"
                   f"{digest[:2]}/{digest}")
    for _ in range(4):                                   # both workers
        again = requests.get(f"{tiered.url}/local/big.bin", timeout=30)
        assert again.status_code == 200 and again.content == data
    ranged = requests.get(f"{tiered.url}/local/big.bin", headers={"Range": "bytes=1000-1999"}, timeout=30)
    assert ranged.status_code == 206 and ranged.content == data[1000:2000]
    assert requests.head(f"{tiered.url}/local/big.bin", timeout=30).headers["Content-Length"] == str(len(data))
    with pytest.raises(requests.RequestException):
        answer = requests.get(f"{plain.url}/local/big.bin", timeout=30)
        answer.raise_for_status()
        assert answer.content == data


def test_gc_on_one_node_and_the_other_nodes_tier_serves_it_no_more(nodes):
    a, b = nodes(2)
    data = os.urandom(2 * MiB)
    digest = hashlib.sha256(data).hexdigest()
    assert requests.put(f"{a.url}/local/gone.bin", data=data, timeout=30).status_code == 201
    for node in (a, b):
        assert requests.get(f"{node.url}/local/gone.bin", timeout=30).content == data
    _wait_for(lambda: _tier_copy(a, digest).exists() and _tier_copy(b, digest).exists())
    assert requests.delete(f"{a.url}/local/gone.bin", timeout=30).status_code in (200, 204)
    out = subprocess.run(a.command("gc", "--grace", "0s"), capture_output=True, text=True, timeout=120,
                         env={**os.environ, **a.env})
    assert out.returncode == 0, out.stderr
    assert not _tier_copy(a, digest).exists()                 # A's GC removed its own copy
    assert _tier_copy(b, digest).exists()                     # B still has bytes on disk ...
    for _ in range(4):                                        # ... and never serves them
        assert requests.get(f"{b.url}/local/gone.bin", timeout=30).status_code == 404
    # published again (same bytes): served, from B's copy or the bucket alike
    assert requests.put(f"{a.url}/local/again.bin", data=data, timeout=30).status_code == 201
    assert requests.get(f"{b.url}/local/again.bin", timeout=30).content == data
    # B's own GC drops copies whose blob the bucket no longer has
    assert requests.delete(f"{a.url}/local/again.bin", timeout=30).status_code in (200, 204)
    out = subprocess.run(a.command("gc", "--grace", "0s"), capture_output=True, text=True, timeout=120,
                         env={**os.environ, **a.env})
    assert out.returncode == 0, out.stderr
    out = subprocess.run(b.command("gc", "--grace", "0s"), capture_output=True, text=True, timeout=120,
                         env={**os.environ, **b.env})
    assert out.returncode == 0, out.stderr
    assert not _tier_copy(b, digest).exists()


def test_local_cache_config():
    from depot.proxy.config import ConfigError, default_document, validate

    def storage(**local: Any) -> Any:
        document = default_document()
        document["storage"] = {"kind": "s3", "bucket": "b", "endpoint": "http://127.0.0.1:1",
                               **({"local_cache": local} if local else {})}
        return validate(document, resolve_upstreams=False).storage.s3_settings()
    assert storage().cache_max_size == 0                                   # off by default
    on = storage(max_size="10 GiB")
    assert on.cache_max_size == 10 * 1024 ** 3 and on.cache_path is None  # default: data_dir/blob-cache
    assert storage(path="/srv/cache", max_size="1MiB").cache_path == "/srv/cache"
    for bad in ({"max_size": "lots"}, {"size": "1MiB"}):
        with pytest.raises(ConfigError):
            storage(**bad)


def test_a_proxy_fill_writes_through_to_the_tier(nodes, upstream):
    """The node that fetched a file keeps its verified copy in its tier at once (its MISS was
    streamed from the fetch, not read from the bucket, so no read-triggered fill is involved)."""
    body = os.urandom(3 * MiB + 1)
    digest = hashlib.sha256(body).hexdigest()
    upstream.put("wt/file.bin", body)
    (node,) = nodes(1)
    first = requests.get(f"{node.url}/remote/wt/file.bin", timeout=30)
    assert first.status_code == 200 and first.content == body and first.headers["X-Cache"] == "MISS"
    _wait_for(lambda: _tier_copy(node, digest).exists(), 10)
    assert _tier_copy(node, digest).read_bytes() == body
    assert not list((node.data_dir / "blob-cache" / "tmp").glob("fill-*"))
