"""The default access log is buffered and written by a thread: the request path only appends;
lines keep their format (logger depot.access, request line, status, bytes, time, X-Cache)."""
from __future__ import annotations

import os
import re
import time

from http_util import get


def test_access_lines_are_written_in_batches_off_the_loop(tmp_path) -> None:
    from depot.proxy import access_log
    read_fd, write_fd = os.pipe()
    sink = access_log._Sink()
    sink.fd = write_fd
    for i in range(10):
        sink.add((time.time(), "127.0.0.1", f"GET /files/{i} HTTP/1.1", 200, 5, 0.001, "HIT"))
    assert sink.thread is not None and sink.thread.name == "depot-access-log"
    deadline = time.monotonic() + 5
    data = b""
    while data.count(b"\n") < 10 and time.monotonic() < deadline:
        data += os.read(read_fd, 65536)
    lines = data.decode().splitlines()
    assert len(lines) == 10
    assert re.fullmatch(r'\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO depot\.access 127\.0\.0\.1 '
                        r'"GET /files/0 HTTP/1\.1" 200 5 0\.001000s "HIT"', lines[0]), lines[0]


def test_a_running_depot_logs_every_request_with_x_cache(depot_factory, upstream) -> None:
    (upstream.root / "a.txt").write_bytes(b"x" * 100)
    depot = depot_factory({"remote": {"format": "generic", "type": "proxy", "upstream": upstream.url + "/"}})
    for _ in range(20):
        assert get(f"{depot.url}/remote/a.txt").status == 200
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        lines = [line for line in depot.log().splitlines() if "depot.access" in line and "/remote/a.txt" in line]
        if len(lines) == 20:
            break
        time.sleep(0.1)
    assert len(lines) == 20
    assert lines[0].endswith('"MISS"') and lines[-1].endswith('"HIT"')
    assert re.search(r'"GET /remote/a.txt HTTP/1.1" 200 \d+ \d+\.\d{6}s "HIT"$', lines[-1]), lines[-1]
