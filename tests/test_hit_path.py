"""The cache-hit fast path (answered before routing): repeat hits of small bodies from memory and
of bigger files by sendfile give the same answers as the full path (bytes, validators, HEAD,
Range, 304, metrics, access log), survive a blob removed under them, and never bypass the
supply-chain policy (an advisory imported at run time refuses a file that was hot)."""
from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import requests

from depot_process import DepotProcess
from http_util import get
from test_observability import scrape, total
from test_policy_npm_pypi import npm_upstream  # noqa: F401  (fixture)

BIG = 3 * 1024 * 1024          # above the memory cache's item limit: served by sendfile


def fetch(url: str, method: str = "GET", headers: dict[str, str] | None = None) -> Any:
    """http_util.get with the response headers' names in lower case."""
    answer = get(url, method, headers)
    answer.headers = {k.lower(): v for k, v in answer.headers.items()}
    return answer


def blob_file(depot: Any, data: bytes) -> Path:
    digest = hashlib.sha256(data).hexdigest()
    return depot.data_dir / "blobs" / "sha256" / digest[:2] / digest[2:4] / digest


def test_repeat_hits_of_a_big_file_match_the_first_answer(depot_factory: Any, upstream: Any) -> None:
    data = os.urandom(BIG)
    upstream.put("big.bin", data)
    depot = depot_factory({"remote": {"format": "generic", "type": "proxy", "upstream": upstream.url + "/"}})
    url = f"{depot.url}/remote/big.bin"
    first = fetch(url)
    assert first.status == 200 and first.body == data and first.headers["x-cache"] == "MISS"
    before = scrape(depot.url)
    hits = [fetch(url) for _ in range(4)]                  # the second one on is the fast path
    for hit in hits:
        assert hit.status == 200 and hit.complete and hit.body == data
        assert hit.headers["x-cache"] == "HIT" and hit.headers["content-length"] == str(BIG)
        assert hit.headers["etag"] == f'"{hashlib.sha256(data).hexdigest()}"'
        assert hit.headers["accept-ranges"] == "bytes" and "last-modified" in hit.headers
    head = fetch(url, "HEAD")
    assert head.status == 200 and head.body == b"" and head.headers["content-length"] == str(BIG)
    part = fetch(url, headers={"Range": "bytes=1000-1999"})
    assert part.status == 206 and part.body == data[1000:2000]
    assert part.headers["content-range"] == f"bytes 1000-1999/{BIG}"
    assert fetch(url, headers={"If-None-Match": hits[0].headers["etag"]}).status == 304
    assert upstream.count("/big.bin") == 1
    after = scrape(depot.url)
    served = total(after, "depot_bytes_served_total", repository="remote", source="cache") - \
        total(before, "depot_bytes_served_total", repository="remote", source="cache")
    assert served >= 4 * BIG                   # every fast-path hit counted (the 206 and 304 go the full path)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        lines = [line for line in depot.log().splitlines() if "depot.access" in line and "/remote/big.bin" in line]
        if len(lines) == 8:
            break
        time.sleep(0.1)
    assert [line.rsplit(" ", 1)[-1] for line in lines] == ['"MISS"'] + ['"HIT"'] * 7, lines


def test_a_hot_big_file_removed_from_disk_is_fetched_again(depot_factory: Any, upstream: Any) -> None:
    data = os.urandom(BIG)
    upstream.put("gone.bin", data)
    depot = depot_factory({"remote": {"format": "generic", "type": "proxy", "upstream": upstream.url + "/"}})
    url = f"{depot.url}/remote/gone.bin"
    for _ in range(3):
        assert get(url).body == data
    blob_file(depot, data).unlink()               # what eviction or a hand-cleaned disk does
    again = get(url)
    assert again.status == 200 and again.complete and again.body == data
    assert get(url).body == data
    assert upstream.count("/gone.bin") == 2


def test_an_advisory_imported_at_run_time_refuses_a_hot_file(tmp_path: Path, npm_upstream: Any) -> None:  # noqa: F811
    repos = {"npm-remote": {"format": "npm", "type": "proxy", "upstream": npm_upstream.url + "/"}}
    depot = DepotProcess(tmp_path / "d", repos)
    try:
        base = f"{depot.url}/npm-remote"
        assert requests.get(f"{base}/cool-pkg", timeout=30).status_code == 200
        tarball = f"{base}/cool-pkg/-/cool-pkg-1.0.0.tgz"
        answers = [requests.get(tarball, timeout=30) for _ in range(3)]     # the last ones are hot
        assert [a.status_code for a in answers] == [200] * 3 and answers[-1].headers["X-Cache"] == "HIT"
        dump = tmp_path / "osv"
        dump.mkdir()
        (dump / "MAL-1.json").write_text(json.dumps({"id": "MAL-2026-0042", "affected": [
            {"package": {"ecosystem": "npm", "name": "cool-pkg"}, "versions": ["1.0.0"]}]}))
        assert "1 documents" in depot.run_cli("policy", "import", str(dump)).stdout
        deadline = time.monotonic() + 30           # the server reloads advisories every few seconds
        status = 200
        while status == 200 and time.monotonic() < deadline:
            time.sleep(0.5)
            status = requests.get(tarball, timeout=30).status_code
        assert status == 403
        refused = requests.get(tarball, timeout=30)
        assert refused.status_code == 403 and "MAL-2026-0042" in refused.headers.get("X-Depot-Policy", "")
    finally:
        depot.stop()


def test_big_hits_over_https_are_whole_and_intact(depot_factory: Any, upstream: Any, tmp_path: Path) -> None:
    """The socket-level sendfile is for plain TCP only: over TLS the bytes go through the transport."""
    import subprocess
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-days", "1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True, timeout=60)
    data = os.urandom(BIG)
    upstream.put("tls.bin", data)
    depot = depot_factory({"remote": {"format": "generic", "type": "proxy", "upstream": upstream.url + "/"}},
                          extra={"tls": {"cert": str(cert), "key": str(key)}})
    url = f"{depot.url}/remote/tls.bin"
    answers = [requests.get(url, verify=str(cert), timeout=60) for _ in range(3)]
    assert [a.status_code for a in answers] == [200] * 3
    assert all(a.content == data for a in answers) and answers[-1].headers["X-Cache"] == "HIT"
    part = requests.get(url, verify=str(cert), headers={"Range": "bytes=5-9"}, timeout=60)
    assert part.status_code == 206 and part.content == data[5:10]
