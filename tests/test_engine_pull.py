"""The pull-through engine against a real depot and a fault-injecting upstream."""
from __future__ import annotations

import hashlib
import os
import threading
import time
from pathlib import Path

import pytest

from http_util import get, get_many, sha256

MiB = 2**20


def proxy_repos(upstream_url: str, **extra: object) -> dict[str, object]:
    return {"remote": {"format": "generic", "type": "proxy", "upstream": upstream_url + "/",
                       "metadata_patterns": ["*.json"], "metadata_ttl": "1s", "negative_ttl": "1s",
                       **extra}}


def blobs_are_sound(data_dir: Path) -> int:
    """Every blob in the store hashes to its name; returns how many there are."""
    count = 0
    for path in (data_dir / "blobs" / "sha256").rglob("*"):
        if path.is_file():
            assert hashlib.sha256(path.read_bytes()).hexdigest() == path.name, path
            count += 1
    return count


@pytest.mark.parametrize("workers", [1, 2])
def test_concurrent_misses_make_one_upstream_fetch(upstream, depot_factory, workers):
    body = os.urandom(20 * MiB)
    upstream.put("big.bin", body)
    upstream.mode("/big.bin", "slow", chunk=512 * 1024, delay=0.02)
    depot = depot_factory(proxy_repos(upstream.url), workers=workers)
    results = get_many(f"{depot.url}/remote/big.bin", 50)
    assert all(r.status == 200 and r.complete for r in results)
    assert {sha256(r.body) for r in results} == {sha256(body)}
    assert upstream.count("/big.bin") == 1
    assert get(f"{depot.url}/remote/big.bin").headers["X-Cache"] == "HIT"
    assert upstream.count("/big.bin") == 1


def test_first_byte_arrives_while_upstream_still_sending(upstream, depot_factory):
    body = os.urandom(4 * MiB)
    upstream.put("slow.bin", body)
    upstream.mode("/slow.bin", "slow", rate=1 * MiB)     # about 4 s for the whole body
    depot = depot_factory(proxy_repos(upstream.url))
    started = time.monotonic()
    result = get(f"{depot.url}/remote/slow.bin")
    total = time.monotonic() - started
    assert result.status == 200 and sha256(result.body) == sha256(body)
    assert total > 3.0
    assert result.first_byte_at < total / 3, (result.first_byte_at, total)


def test_kill9_mid_stream_leaves_nothing_half_written(upstream, depot_factory):
    body = os.urandom(50 * MiB)
    upstream.put("huge.bin", body)
    upstream.mode("/huge.bin", "slow", rate=10 * MiB, times=1)
    depot = depot_factory(proxy_repos(upstream.url))
    got: dict[str, object] = {}
    reader = threading.Thread(target=lambda: got.update(r=get(f"{depot.url}/remote/huge.bin")))
    reader.start()
    time.sleep(1.5)
    depot.kill9()
    reader.join(timeout=30)
    first = got["r"]
    assert not first.complete and len(first.body) < len(body)      # an aborted transfer
    blobs_are_sound(depot.data_dir)
    depot.start()
    again = get(f"{depot.url}/remote/huge.bin")
    assert again.status == 200 and again.complete and sha256(again.body) == sha256(body)
    assert blobs_are_sound(depot.data_dir) >= 1


@pytest.mark.parametrize("fault", [{"mode": "drop"}, {"mode": "short"},
                                   {"mode": "drop", "reset": True}])
def test_broken_upstream_body_is_an_aborted_transfer_and_not_cached(upstream, depot_factory, fault):
    body = os.urandom(3 * MiB)
    upstream.put("flaky.bin", body)
    upstream.mode("/flaky.bin", times=1, **fault)
    depot = depot_factory(proxy_repos(upstream.url))
    first = get(f"{depot.url}/remote/flaky.bin")
    assert not first.complete or first.status >= 500
    if first.status == 200:         # fewer bytes than announced: the client knows it is broken
        assert len(first.body) < int(first.headers["Content-Length"])
    assert blobs_are_sound(depot.data_dir) == 0
    second = get(f"{depot.url}/remote/flaky.bin")
    assert second.status == 200 and sha256(second.body) == sha256(body)
    assert second.headers["X-Cache"] == "MISS"
    assert upstream.count("/flaky.bin") == 2


def test_metadata_revalidates_then_serves_stale_when_upstream_down(upstream, depot_factory):
    upstream.put("index.json", b'{"v": 1}')
    depot = depot_factory(proxy_repos(upstream.url))
    url = f"{depot.url}/remote/index.json"
    assert get(url).headers["X-Cache"] == "MISS"
    assert get(url).headers["X-Cache"] == "HIT"
    time.sleep(1.2)
    revalidated = get(url)
    assert revalidated.headers["X-Cache"] == "REVALIDATED" and revalidated.body == b'{"v": 1}'
    assert upstream.count("/index.json", conditional=True) == 1
    time.sleep(1.2)
    upstream.mode("/index.json", "status", status=503)
    stale = get(url)
    assert stale.status == 200 and stale.headers["X-Cache"] == "STALE" and stale.body == b'{"v": 1}'
    upstream.mode("/index.json", "status", status=429)
    assert get(url).headers["X-Cache"] == "STALE"
    upstream.mode("/index.json", "normal")
    upstream.put("index.json", b'{"v": 2}')
    fresh = get(url)
    assert fresh.body == b'{"v": 2}' and fresh.headers["X-Cache"] in ("MISS", "REVALIDATED")


def test_upstream_gone_entirely_serves_stale(upstream, depot_factory):
    upstream.put("index.json", b'{"v": 1}')
    depot = depot_factory(proxy_repos(upstream.url))
    url = f"{depot.url}/remote/index.json"
    assert get(url).status == 200
    upstream.stop()
    time.sleep(1.2)
    stale = get(url)
    assert stale.status == 200 and stale.headers["X-Cache"] == "STALE"
    missing = get(f"{depot.url}/remote/never-fetched.bin")
    assert missing.status == 502 and b"upstream" in missing.body


def test_upstream_timeout_is_504(upstream, depot_factory):
    upstream.put("slowpoke.bin", b"x")
    upstream.mode("/slowpoke.bin", "hang", seconds=10)
    depot = depot_factory(proxy_repos(upstream.url), extra={"upstream": {"read_timeout": "1s"}})
    result = get(f"{depot.url}/remote/slowpoke.bin")
    assert result.status == 504


def test_not_found_is_cached_for_negative_ttl(upstream, depot_factory):
    depot = depot_factory(proxy_repos(upstream.url))
    url = f"{depot.url}/remote/later.bin"
    assert get(url).status == 404
    upstream.put("later.bin", b"now here")
    assert get(url).status == 404
    assert upstream.count("/later.bin") == 1
    time.sleep(1.2)
    found = get(url)
    assert found.status == 200 and found.body == b"now here"
    assert upstream.count("/later.bin") == 2


def test_upstream_500_without_copy_is_502(upstream, depot_factory):
    upstream.put("err.bin", b"x")
    upstream.mode("/err.bin", "status", status=500)
    depot = depot_factory(proxy_repos(upstream.url))
    result = get(f"{depot.url}/remote/err.bin")
    assert result.status == 502 and b"500" in result.body


def test_eviction_keeps_proxy_under_max_size_and_never_hosted(upstream, depot_factory):
    repos = {**proxy_repos(upstream.url), "local": {"format": "generic", "type": "hosted"}}
    depot = depot_factory(repos, extra={"cache": {"max_size": "3MiB"}})
    import urllib.request
    hosted = os.urandom(2 * MiB)
    req = urllib.request.Request(f"{depot.url}/local/keep.bin", data=hosted, method="PUT")
    assert urllib.request.urlopen(req).status == 201
    for i in range(5):
        upstream.put(f"f{i}.bin", os.urandom(1 * MiB))
    for i in range(5):
        assert get(f"{depot.url}/remote/f{i}.bin").status == 200
        time.sleep(0.3)
        if i == 1:
            get(f"{depot.url}/remote/f0.bin")   # f0 becomes recently used
            time.sleep(2.5)                      # let access times flush
    time.sleep(2.5)
    get(f"{depot.url}/remote/f4.bin")
    time.sleep(1)
    upstream.reset()
    assert get(f"{depot.url}/remote/f4.bin").headers["X-Cache"] == "HIT"
    assert get(f"{depot.url}/remote/f1.bin").headers["X-Cache"] == "MISS"   # least recently used: evicted
    kept = get(f"{depot.url}/local/keep.bin")
    assert kept.status == 200 and sha256(kept.body) == sha256(hosted)
    stats = depot.run_cli("stats", "--json").stdout
    import json
    rows = {r["name"]: r for r in json.loads(stats)}
    assert rows["remote"]["bytes"] <= 3 * MiB
    assert rows["local"]["bytes"] == 2 * MiB


def test_upstream_credentials_from_env_and_retries_on_503(upstream, depot_factory, tmp_path):
    import base64
    upstream.put("private.bin", b"secret stuff")
    upstream.mode("/private.bin", "status", status=503, times=1)          # one transient failure
    depot = depot_factory(proxy_repos(upstream.url, username="svc", password_env="UPSTREAM_PW"),
                          env={"UPSTREAM_PW": "pw-from-env"})
    result = get(f"{depot.url}/remote/private.bin")
    assert result.status == 200 and result.body == b"secret stuff"
    sent = [entry["headers"].get("Authorization") for entry in upstream.log() if entry["path"] == "/private.bin"]
    assert sent == ["Basic " + base64.b64encode(b"svc:pw-from-env").decode()] * 2   # retried once
    assert "pw-from-env" not in depot.log()


def test_bearer_token_from_file(upstream, depot_factory, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("tok-123\n")
    upstream.put("t.bin", b"t")
    depot = depot_factory(proxy_repos(upstream.url, token_file=str(token_file)))
    assert get(f"{depot.url}/remote/t.bin").status == 200
    assert [e["headers"].get("Authorization") for e in upstream.log()] == ["Bearer tok-123"]
