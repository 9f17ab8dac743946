"""Bad or abusive requests get clear errors and change nothing stored."""
from __future__ import annotations

import os
import re
import signal
import socket
import stat
import subprocess
import time
from pathlib import Path

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


def _closed_within(sock: socket.socket, limit: float, trickle: bytes = b"", every: float = 0.5) -> float | None:
    """Seconds until the server closes `sock` (None if still open after `limit`), sending one byte
    of `trickle` every `every` s meanwhile (a slow client)."""
    started = time.monotonic()
    sock.settimeout(every)
    position = 0
    while time.monotonic() - started < limit:
        try:
            data = sock.recv(4096)
            if not data:
                return time.monotonic() - started
        except socket.timeout:
            pass
        except ConnectionResetError:
            return time.monotonic() - started
        if position < len(trickle):
            try:
                sock.sendall(trickle[position:position + 1])
            except (BrokenPipeError, ConnectionResetError):
                return time.monotonic() - started
            position += 1
    return None


TIMEOUTS = {"keepalive_timeout": "2s", "header_timeout": "2s", "client_timeout": "2s"}


@pytest.fixture
def strict(depot_factory):
    return depot_factory({"small": {"format": "generic", "type": "hosted"},
                          "npm-local": {"format": "npm", "type": "hosted"}}, extra=TIMEOUTS)


def test_an_idle_keepalive_connection_is_closed(strict):
    with socket.create_connection(("127.0.0.1", strict.port), timeout=10) as sock:
        sock.sendall(b"GET /-/healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        closed = _closed_within(sock, 15)                  # then nothing: idle keep-alive
    assert closed is not None and 1 < closed < 8
    with socket.create_connection(("127.0.0.1", strict.port), timeout=10) as sock:
        closed = _closed_within(sock, 15)                  # a connection that never sends a request
    assert closed is not None and closed < 8


def test_slowly_sent_headers_are_cut_off(strict):
    request = b"GET /small/file.bin HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100 + b"\r\n\r\n"
    with socket.create_connection(("127.0.0.1", strict.port), timeout=10) as sock:
        # one byte every 0.3 s keeps the keep-alive timer busy; the header deadline still applies
        closed = _closed_within(sock, 20, trickle=request, every=0.3)
    assert closed is not None and closed < 8


def test_headers_sent_in_time_are_served(strict):
    request = b"GET /-/healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    with socket.create_connection(("127.0.0.1", strict.port), timeout=10) as sock:
        for i in range(len(request)):                     # ~1 s in total: inside the 2 s deadline
            sock.sendall(request[i:i + 1])
            time.sleep(1 / len(request))
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")


def test_a_stalled_npm_publish_body_times_out_by_the_config(strict):
    with socket.create_connection(("127.0.0.1", strict.port), timeout=30) as sock:
        sock.sendall(b"PUT /npm-local/slow-pkg HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 5000\r\n\r\n{\"name\": \"slow-pkg\"")
        sock.settimeout(30)
        started = time.monotonic()
        answer = sock.recv(4096)
        waited = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert waited < 15


def test_the_data_directory_is_private_under_umask_022(depot_factory):
    old = os.umask(0o022)
    try:
        depot = depot_factory({"small": {"format": "generic", "type": "hosted"}}, secure=True)
    finally:
        os.umask(old)
    assert code("-u", f"admin:{depot.ADMIN_PASSWORD}", "-T", "-", f"{depot.url}/small/secret.bin",
                data=b"private bytes") == "201"
    assert code(f"{depot.url}/-/healthz") == "200"
    assert stat.S_IMODE(depot.data_dir.stat().st_mode) == 0o700
    exposed = [str(p) for p in depot.data_dir.rglob("*") if p.stat().st_mode & 0o077]
    assert exposed == []                     # database, audit log, blobs: owner only


def _pid_in_name(path: Path) -> int:
    """blob-<pid>-….part or <flight>.<pid>-<gen>.part"""
    match = re.search(r"(?:^blob-|\.)(\d+)-", path.name)
    assert match, path.name
    return int(match.group(1))


def _wait_for(predicate, limit: float = 15.0):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.1)
    return None


def test_a_killed_workers_part_files_are_removed_when_it_is_restarted(depot_factory, upstream):
    upstream.put("big.bin", os.urandom(4 * 2**20))
    upstream.mode("/big.bin", "slow", chunk=65536, delay=0.5)           # ~30 s to stream: still running
    depot = depot_factory({"small": {"format": "generic", "type": "hosted"},
                           "remote": {"format": "generic", "type": "proxy", "upstream": upstream.url}},
                          workers=2)
    tmp = depot.data_dir / "tmp"
    download = subprocess.Popen(["curl", "-s", "-o", "/dev/null", f"{depot.url}/remote/big.bin"])
    upload = socket.create_connection(("127.0.0.1", depot.port), timeout=30)
    try:
        upload.sendall(b"PUT /small/up.bin HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + b"x" * 1000)
        fetch_part = _wait_for(lambda: list((tmp / "flights").glob("*.part")))
        upload_part = _wait_for(lambda: list(tmp.glob("blob-*.part")))
        assert fetch_part and upload_part
        victims = {_pid_in_name(p) for p in fetch_part + upload_part}
        for pid in victims:
            os.kill(pid, signal.SIGKILL)
        for pid in victims:
            assert _wait_for(lambda pid=pid: f"worker died pid={pid}" in depot.log()), depot.log()
        leftovers = _wait_for(lambda: not [p for p in tmp.rglob("*") if p.is_file() and ".part" in p.name
                                           and _pid_in_name(p) in victims], 10)
        assert leftovers, [p.name for p in tmp.rglob("*.part")]
        assert code(f"{depot.url}/-/healthz") == "200"                # the master is still serving
    finally:
        upload.close()
        download.kill()
        download.wait(timeout=10)


@pytest.fixture
def tiny_disk(tmp_path):
    """An 8 MiB tmpfs (this test machine runs as root): a real filesystem that fills up."""
    mount = tmp_path / "tiny-disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m,mode=0700", "tmpfs", str(mount)], check=True,
                   capture_output=True, timeout=30)
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True, timeout=30)


def _fill(directory: Path, leave: int) -> Path:
    """Write a filler file until only about `leave` bytes are free."""
    filler = directory / "filler"
    with open(filler, "wb") as handle:
        while True:
            st = os.statvfs(directory)
            room = st.f_bavail * st.f_frsize - leave
            if room <= 0:
                break
            try:
                handle.write(b"\0" * min(room, 1 << 20))
                handle.flush()
            except OSError:
                break
    return filler


def _answer(*args: str, data: bytes | None = None) -> tuple[str, str]:
    out = subprocess.run(["curl", "-sS", "-w", "\n%{http_code}", *args], input=data, capture_output=True, timeout=60)
    body, _, status = out.stdout.decode(errors="replace").rpartition("\n")
    return status, body.strip()


def test_a_full_disk_is_degraded_health_and_507_in_the_formats_shape(tiny_disk, depot_factory):
    import base64
    import json
    workdir = tiny_disk.parent / "full"
    workdir.mkdir()
    (workdir / "data").symlink_to(tiny_disk)                  # only the data directory is on the tiny disk
    depot = depot_factory({"small": {"format": "generic", "type": "hosted"},
                           "npm-local": {"format": "npm", "type": "hosted"}},
                          extra={"health": {"min_free": "2MiB"}}, name="full")
    assert _answer(f"{depot.url}/-/healthz") == ("200", "ok")
    assert _answer("-X", "PUT", "--data-binary", "@-", f"{depot.url}/small/fits.bin", data=b"f" * 2**20)[0] == "201"
    # a body larger than the disk: the write hits ENOSPC
    status, body = _answer("-X", "PUT", "--data-binary", "@-", f"{depot.url}/small/huge.bin",
                           data=os.urandom(12 * 2**20))
    assert status == "507" and "disk is full" in body
    assert not list(tiny_disk.rglob("*.part"))
    filler = _fill(tiny_disk, 1 << 20)                         # under health.min_free
    status, body = _answer(f"{depot.url}/-/healthz")
    assert status == "503" and "low disk space" in body and "health.min_free" in body
    rest = _fill(tiny_disk / "tmp", 0)                        # and now nothing at all
    data = os.urandom(256 * 1024)
    doc = {"_id": "full-pkg", "name": "full-pkg", "dist-tags": {"latest": "1.0.0"},
           "versions": {"1.0.0": {"name": "full-pkg", "version": "1.0.0", "dist": {"tarball": "http://x/full-pkg.tgz"}}},
           "_attachments": {"full-pkg-1.0.0.tgz": {"content_type": "application/octet-stream",
                                                    "data": base64.b64encode(data).decode(), "length": len(data)}}}
    status, body = _answer("-X", "PUT", "-H", "Content-Type: application/json", "--data-binary", "@-",
                           f"{depot.url}/npm-local/full-pkg", data=json.dumps(doc).encode())
    assert status == "507" and "disk is full" in json.loads(body)["error"]      # npm's error shape
    filler.unlink()
    rest.unlink()
    assert _answer(f"{depot.url}/-/healthz") == ("200", "ok")
    assert _answer(f"{depot.url}/small/fits.bin")[0] == "200"


def test_a_trickled_upload_body_is_cut_off(strict):
    """A byte every 0.4 s never leaves the body idle for client_timeout (2 s), but it is no upload."""
    with socket.create_connection(("127.0.0.1", strict.port), timeout=10) as sock:
        sock.sendall(b"PUT /small/trickle.bin HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
        sock.settimeout(0.4)
        started, answer = time.monotonic(), b""
        while time.monotonic() - started < 20 and not answer:
            try:
                answer = sock.recv(4096)
            except socket.timeout:
                sock.sendall(b"t")
        waited = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert waited < 10
    assert stored_blobs(strict) == []
