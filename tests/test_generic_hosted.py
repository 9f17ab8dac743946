"""Hosted and group generic repositories driven with curl, the generic format's real client."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess

import pytest

CURL = shutil.which("curl")


def curl(*args: str) -> subprocess.CompletedProcess[bytes]:
    assert CURL, "curl is required (apt-get install curl)"
    return subprocess.run([CURL, "-sS", "--path-as-is", *args], capture_output=True, timeout=60)


def status_of(*args: str) -> int:
    out = curl("-o", os.devnull, "-w", "%{http_code}", *args)
    return int(out.stdout)


@pytest.fixture
def depot(depot_factory, upstream):
    upstream.put("from-upstream.txt", b"remote bytes\n")
    return depot_factory({
        "local": {"format": "generic", "type": "hosted"},
        "remote": {"format": "generic", "type": "proxy", "upstream": upstream.url + "/"},
        "all": {"format": "generic", "type": "group", "members": ["local", "remote"],
                "deploy_to": "local"},
    })


def test_put_get_range_delete_round_trip(depot, tmp_path):
    payload = os.urandom(100_000)
    src = tmp_path / "payload.bin"
    src.write_bytes(payload)
    digest = hashlib.sha256(payload).hexdigest()
    url = f"{depot.url}/local/tools/v1.0/payload.bin"
    assert status_of("-T", str(src), "-H", f"X-Checksum-Sha256: {digest}", url) == 201
    out = tmp_path / "out.bin"
    headers = curl("-D", "-", "-o", str(out), url).stdout.decode()
    assert out.read_bytes() == payload
    assert f'etag: "{digest}"' in headers.lower() and "content-length: 100000" in headers.lower()
    assert "last-modified:" in headers.lower()
    part = curl("-r", "10-19", url)
    assert part.stdout == payload[10:20]
    assert status_of("-r", "10-19", url) == 206
    assert status_of("-H", f'If-None-Match: "{digest}"', url) == 304
    assert status_of("-I", url) == 200
    assert status_of("-X", "DELETE", url) == 204
    assert status_of(url) == 404


def test_checksum_mismatch_stores_nothing(depot, tmp_path):
    src = tmp_path / "x.bin"
    src.write_bytes(b"some bytes")
    result = curl("-w", "%{http_code}", "-T", str(src), "-H", "X-Checksum-Sha256: " + "0" * 64,
                  f"{depot.url}/local/x.bin")
    assert result.stdout.endswith(b"400") and b"mismatch" in result.stdout
    assert status_of(f"{depot.url}/local/x.bin") == 404
    assert not list((depot.data_dir / "blobs").rglob("*.bin"))
    blobs = [p for p in (depot.data_dir / "blobs").rglob("*") if p.is_file()]
    assert blobs == []


@pytest.mark.parametrize("path", ["../escape.txt", "%2e%2e/escape.txt", "a/%2e%2e/%2e%2e/escape.txt",
                                  "a//b.txt", "a/%00/b.txt", "x" * 1100, "%2Fetc%2Fpasswd",
                                  "a/./b.txt", "sp ace.txt".replace(" ", "%20")])
def test_bad_paths_are_refused_and_write_nothing(depot, tmp_path, path):
    src = tmp_path / "evil.txt"
    src.write_bytes(b"evil")
    before = sorted(str(p) for p in depot.workdir.parent.rglob("*"))
    code = status_of("-T", str(src), f"{depot.url}/local/{path}")
    assert code == 400, (path, code)
    assert status_of(f"{depot.url}/local/{path}") in (400, 404)
    after = sorted(str(p) for p in depot.workdir.parent.rglob("*") if "escape" in p.name or "evil" in p.name)
    assert after == [p for p in before if "escape" in p or "evil" in p]


def test_duplicate_put_refused_without_overwrite(depot, tmp_path):
    src = tmp_path / "a.txt"
    src.write_bytes(b"one")
    assert status_of("-T", str(src), f"{depot.url}/local/a.txt") == 201
    src.write_bytes(b"two")
    assert status_of("-T", str(src), f"{depot.url}/local/a.txt") == 409
    assert curl(f"{depot.url}/local/a.txt").stdout == b"one"


def test_racing_puts_of_one_path_store_exactly_one(depot, tmp_path):
    """Overwrite off: of N concurrent PUTs of different bytes to one path, exactly one wins (201)
    and the rest get 409; the stored file is the winner's. Re-sending the same bytes is a 200."""
    from concurrent.futures import ThreadPoolExecutor
    bodies = []
    for i in range(8):
        src = tmp_path / f"race-{i}.bin"
        src.write_bytes(os.urandom(200_000) + bytes([i]))
        bodies.append(src)
    url = f"{depot.url}/local/race/file.bin"
    with ThreadPoolExecutor(len(bodies)) as pool:
        codes = list(pool.map(lambda src: status_of("-T", str(src), url), bodies))
    assert sorted(codes) == [201] + [409] * (len(bodies) - 1), codes
    winner = bodies[codes.index(201)]
    assert curl(url).stdout == winner.read_bytes()
    assert status_of("-T", str(winner), url) == 200          # same bytes again: accepted, unchanged


def test_group_reads_members_in_order_and_writes_to_deploy_to(depot, tmp_path):
    src = tmp_path / "g.txt"
    src.write_bytes(b"published through the group\n")
    assert status_of("-T", str(src), f"{depot.url}/all/pub/g.txt") == 201
    assert curl(f"{depot.url}/local/pub/g.txt").stdout == b"published through the group\n"
    remote = curl("-D", "-", f"{depot.url}/all/from-upstream.txt").stdout.decode()
    assert remote.endswith("remote bytes\n") and "x-cache: miss" in remote.lower()
    hosted = curl("-D", "-", f"{depot.url}/all/pub/g.txt").stdout.decode().lower()
    assert "x-cache: hit" in hosted
    assert status_of(f"{depot.url}/all/nowhere.txt") == 404
    listing = json.loads(curl(f"{depot.url}/-/api/repositories").stdout)
    assert {r["name"]: r["type"] for r in listing} == {"local": "hosted", "remote": "proxy", "all": "group"}


def test_healthz_and_metrics(depot):
    assert curl(f"{depot.url}/-/healthz").stdout == b"ok\n"
    curl(f"{depot.url}/remote/from-upstream.txt")
    text = curl(f"{depot.url}/-/metrics").stdout.decode()
    assert 'depot_requests_total{format="generic",repository="remote",result="miss"} 1.0' in text
    assert "depot_upstream_requests_total" in text
