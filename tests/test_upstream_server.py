"""Quick checks that the test upstream (tests/upstream.py) behaves as the other tests assume."""
from __future__ import annotations

import http.client
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from upstream import Upstream, start_upstream  # noqa: E402

BIG = os.urandom(1 << 20)


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upstream]:
    root = tmp_path_factory.mktemp("up")
    (root / "dir").mkdir()
    (root / "dir" / "a.txt").write_bytes(b"hello\n")
    (root / "big.bin").write_bytes(BIG)
    server = start_upstream(root)
    try:
        yield server
    finally:
        server.stop()
    assert server.proc.poll() is not None


@pytest.fixture(autouse=True)
def _fresh(up: Upstream) -> None:
    up.reset(modes=True)


def fetch(up: Upstream, path: str, headers: dict[str, str] | None = None,
          method: str = "GET", timeout: float = 10) -> tuple[int, dict[str, str], bytes, bool]:
    """(status, headers, body read, complete?) — complete is False on a truncated body."""
    conn = http.client.HTTPConnection("127.0.0.1", up.port, timeout=timeout)
    try:
        conn.request(method, path, headers=headers or {})
        resp = conn.getresponse()
        hdrs = {k.lower(): v for k, v in resp.getheaders()}
        try:
            return resp.status, hdrs, resp.read(), True
        except http.client.IncompleteRead as exc:
            return resp.status, hdrs, exc.partial, False
        except ConnectionResetError:
            return resp.status, hdrs, b"", False
    finally:
        conn.close()


def test_serves_files_with_validators_and_counts(up: Upstream) -> None:
    status, hdrs, body, complete = fetch(up, "/dir/a.txt")
    assert (status, body, complete) == (200, b"hello\n", True)
    assert hdrs["etag"].startswith('"') and "last-modified" in hdrs
    assert fetch(up, "/missing")[0] == 404
    assert fetch(up, "/../etc/passwd")[0] == 404
    assert fetch(up, "/dir/a.txt", method="HEAD")[0] == 200
    assert up.counts() == {"GET /dir/a.txt": 1, "GET /missing": 1, "HEAD /dir/a.txt": 1,
                           "GET /../etc/passwd": 1}
    up.reset()
    assert up.counts() == {}


def test_conditional_requests_get_304_and_are_counted_apart(up: Upstream) -> None:
    _, hdrs, _, _ = fetch(up, "/dir/a.txt")
    status, _, body, _ = fetch(up, "/dir/a.txt", {"If-None-Match": hdrs["etag"]})
    assert (status, body) == (304, b"")
    status, _, _, _ = fetch(up, "/dir/a.txt", {"If-Modified-Since": hdrs["last-modified"]})
    assert status == 304
    assert fetch(up, "/dir/a.txt", {"If-None-Match": '"other"'})[0] == 200
    assert up.count("/dir/a.txt", conditional=True) == 3
    assert up.count("/dir/a.txt", conditional=False) == 1


def test_put_publishes_a_new_version_and_delete_removes(up: Upstream) -> None:
    up.put("new/v.txt", b"v1", mtime=1_000_000_000)
    _, h1, b1, _ = fetch(up, "/new/v.txt")
    assert b1 == b"v1" and h1["last-modified"] == "Sun, 09 Sep 2001 01:46:40 GMT"
    up.put("/new/v.txt", b"v2")
    status, h2, b2, _ = fetch(up, "/new/v.txt", {"If-None-Match": h1["etag"]})
    assert (status, b2) == (200, b"v2") and h2["etag"] != h1["etag"]
    up.delete("new/v.txt")
    assert fetch(up, "/new/v.txt")[0] == 404
    assert "GET /_files/new/v.txt" not in up.counts()


@pytest.mark.parametrize("reset", [False, True])
def test_drop_aborts_before_content_length(up: Upstream, reset: bool) -> None:
    up.mode("/big.bin", "drop", after=1000, reset=reset)
    status, hdrs, body, complete = fetch(up, "/big.bin")
    assert status == 200 and int(hdrs["content-length"]) == len(BIG)
    assert not complete and len(body) < len(BIG)
    if not reset:
        assert body == BIG[:1000]


def test_short_announces_more_than_it_sends(up: Upstream) -> None:
    up.mode("/dir/a.txt", "short", extra=10)
    status, hdrs, body, complete = fetch(up, "/dir/a.txt")
    assert int(hdrs["content-length"]) == 16 and body == b"hello\n" and not complete


def test_status_mode_counts_down_then_clears(up: Upstream) -> None:
    up.mode("*", "status", status=503, times=2, headers={"Retry-After": "1"})
    status, hdrs, _, _ = fetch(up, "/dir/a.txt")
    assert (status, hdrs["retry-after"]) == (503, "1")
    assert fetch(up, "/big.bin", method="HEAD")[0] == 503
    assert fetch(up, "/dir/a.txt")[0] == 200
    up.mode("/dir/a.txt", "status", status=429, times=1)
    assert fetch(up, "/dir/a.txt")[0] == 429
    assert fetch(up, "/dir/a.txt")[0] == 200
    up.mode("/dir/a.txt", "status", status=500)
    up.mode("/dir/a.txt", "normal")
    assert fetch(up, "/dir/a.txt")[0] == 200


def test_hang_and_slow(up: Upstream) -> None:
    up.mode("/dir/a.txt", "hang", seconds=30)
    with pytest.raises((socket.timeout, TimeoutError)):
        fetch(up, "/dir/a.txt", timeout=0.5)
    up.mode("/big.bin", "slow", chunk=64 * 1024, delay=0.02)
    t0 = time.monotonic()
    status, _, body, complete = fetch(up, "/big.bin")
    assert (status, complete, body == BIG) == (200, True, True)
    assert time.monotonic() - t0 >= 15 * 0.02


def test_range(up: Upstream) -> None:
    status, hdrs, body, _ = fetch(up, "/big.bin", {"Range": "bytes=10-19"})
    assert (status, body, hdrs["content-range"]) == (206, BIG[10:20], f"bytes 10-19/{len(BIG)}")
