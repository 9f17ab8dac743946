"""Several depot nodes on one PostgreSQL and one Ceph RGW bucket (real components, loopback).

Clients are spread over the nodes by hand (no balancer). curl is the generic format's client.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import uuid
from typing import Any

import pytest
import requests

from depot.cache.blobs_s3 import S3Settings
from depot.cache.storage import open_storage


@pytest.fixture
def cluster(pg_cluster, ceph_rgw, depot_factory, upstream, tmp_path):
    """make(n, workers=1, redirect=False) -> n nodes on a fresh database and bucket prefix."""
    url = pg_cluster.new_database()
    prefix = f"n-{uuid.uuid4().hex[:8]}"

    def make(count: int, workers: int = 1, redirect: bool = False) -> list[Any]:
        storage = {"kind": "s3", "endpoint": ceph_rgw.endpoint, "bucket": "depot", "prefix": prefix,
                   "redirect": redirect, "redirect_min_size": "64KiB"}
        env = {"DEPOT_STORAGE__ACCESS_KEY": ceph_rgw.access_key, "DEPOT_STORAGE__SECRET_KEY": ceph_rgw.secret_key}
        repos = {"local": {"format": "generic", "type": "hosted"},
                 "remote": {"format": "generic", "type": "proxy", "upstream": upstream.url + "/"}}
        return [depot_factory(repos, workers=workers, name=f"node{i}", env=env,
                              extra={"storage": storage, "database": {"url": url}}) for i in range(count)]
    make.database_url = url  # type: ignore[attr-defined]
    make.s3 = S3Settings(ceph_rgw.endpoint, "depot", access_key=ceph_rgw.access_key,  # type: ignore[attr-defined]
                         secret_key=ceph_rgw.secret_key, prefix=prefix)
    return make


def _bucket_digests(cluster, tmp_path) -> set[str]:
    """Every blob in the cluster's bucket prefix, listed with depot's own S3 store."""
    storage = open_storage(tmp_path / "lister", "s3", s3=cluster.s3)
    try:
        return {d for d, _, _ in storage.blobs.scan()}
    finally:
        storage.close()


def test_published_on_one_node_is_served_by_another(cluster, tmp_path):
    a, b = cluster(2)
    payload = os.urandom(3 * 1024 * 1024)
    digest = hashlib.sha256(payload).hexdigest()
    put = requests.put(f"{a.url}/local/tools/1.0/tool.bin", data=payload,
                       headers={"X-Checksum-Sha256": digest}, timeout=30)
    assert put.status_code == 201, put.text
    got = requests.get(f"{b.url}/local/tools/1.0/tool.bin", timeout=30)
    assert got.status_code == 200 and got.content == payload
    ranged = requests.get(f"{b.url}/local/tools/1.0/tool.bin", headers={"Range": "bytes=100-199"}, timeout=30)
    assert ranged.status_code == 206 and ranged.content == payload[100:200]
    # nothing under either node's data dir: the blob is in the bucket, the record in PostgreSQL
    for node in (a, b):
        assert not list((node.data_dir / "blobs").rglob(digest))
    assert digest in _bucket_digests(cluster, tmp_path)
    # the same path with other bytes is a conflict on any node
    again = requests.put(f"{b.url}/local/tools/1.0/tool.bin", data=b"other", timeout=30)
    assert again.status_code == 409


def test_proxy_fill_on_one_node_is_a_hit_on_another(cluster, upstream):
    body = os.urandom(2 * 1024 * 1024 + 17)
    upstream.put("pkg/file.tgz", body)
    b, c = cluster(2)
    first = requests.get(f"{b.url}/remote/pkg/file.tgz", timeout=30)
    assert first.status_code == 200 and first.content == body and first.headers["X-Cache"] == "MISS"
    second = requests.get(f"{c.url}/remote/pkg/file.tgz", timeout=30)
    assert second.status_code == 200 and second.content == body and second.headers["X-Cache"] == "HIT"
    assert upstream.count("/pkg/file.tgz") == 1
    # a 404 remembered by one node is remembered by all (negative cache in PostgreSQL)
    assert requests.get(f"{b.url}/remote/pkg/missing.tgz", timeout=30).status_code == 404
    assert requests.get(f"{c.url}/remote/pkg/missing.tgz", timeout=30).status_code == 404
    assert upstream.count("/pkg/missing.tgz") == 1


def test_healthz_reports_database_and_storage(cluster, pg_cluster):
    (node,) = cluster(1)
    answer = requests.get(f"{node.url}/-/healthz", timeout=30)
    assert answer.status_code == 200
    assert "database: ok" in answer.text and "storage: ok" in answer.text


def test_redirect_answers_presigned_urls_for_large_hits(cluster, tmp_path):
    (node,) = cluster(1, redirect=True)
    big, small = os.urandom(256 * 1024), b"tiny"
    for name, data in (("big.bin", big), ("small.txt", small)):
        assert requests.put(f"{node.url}/local/{name}", data=data, timeout=30).status_code == 201
    answer = requests.get(f"{node.url}/local/big.bin", allow_redirects=False, timeout=30)
    assert answer.status_code == 307
    location = answer.headers["Location"]
    assert "X-Amz-Signature=" in location and "/depot/" in location
    assert requests.get(location, timeout=30).content == big
    # curl follows it like any client would
    out = subprocess.run(["curl", "-sSfL", f"{node.url}/local/big.bin"], capture_output=True, timeout=30)
    assert out.returncode == 0 and out.stdout == big
    # small blobs are streamed by depot itself
    direct = requests.get(f"{node.url}/local/small.txt", allow_redirects=False, timeout=30)
    assert direct.status_code == 200 and direct.content == small
