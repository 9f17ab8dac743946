"""Bad or abusive requests get clear errors and change nothing stored."""
from __future__ import annotations

import socket
import subprocess
import time

import pytest


@pytest.fixture
def depot(depot_factory):
    return depot_factory({"small": {"format": "generic", "type": "hosted", "max_upload": "1MiB"}})


def code(*args: str, data: bytes | None = None) -> str:
    out = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", *args], input=data,
                         capture_output=True, timeout=60)
    return out.stdout.decode()


def stored_blobs(depot) -> list:
    return [p for p in (depot.data_dir / "blobs").rglob("*") if p.is_file()]


def test_body_over_the_repository_limit_is_413(depot):
    big = b"x" * (2 * 2**20)
    assert code("-X", "PUT", "--data-binary", "@-", f"{depot.url}/small/big.bin", data=big) == "413"
    assert code("-X", "PUT", "--data-binary", "@-", "-H", "Transfer-Encoding: chunked",
                f"{depot.url}/small/big.bin", data=big) == "413"
    assert stored_blobs(depot) == []
    assert code("-X", "PUT", "--data-binary", "@-", f"{depot.url}/small/ok.bin", data=b"y" * 1000) == "201"


def test_overlong_url_and_headers_are_refused(depot):
    assert code(f"{depot.url}/small/{'a' * 10000}") in ("400", "414")
    assert code("-H", "X-Big: " + "b" * 20000, f"{depot.url}/small/ok.bin") in ("400", "431")
    assert code(f"{depot.url}/-/healthz") == "200"                      # still serving


def test_a_stalled_upload_times_out_and_stores_nothing(depot_factory, monkeypatch):
    depot = depot_factory({"small": {"format": "generic", "type": "hosted"}}, extra={"client_timeout": "2s"})
    with socket.create_connection(("127.0.0.1", depot.port), timeout=30) as sock:
        sock.sendall(b"PUT /small/slow.bin HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nfirst bytes")
        sock.settimeout(30)
        started = time.monotonic()
        answer = sock.recv(4096)
        waited = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408"), answer[:100]
    assert waited < 20
    assert stored_blobs(depot) == []
