"""RubyGems `/versions` refreshed the way bundler and rubygems.org do it: a proxy asks its upstream
`Range: bytes=<stored size - 1>-` for the appended lines only, checks the whole file against the
upstream's Repr-Digest (or MD5 ETag) and fetches it whole on any mismatch; depot answers bundler's
own Range requests on /versions and /info/<gem>."""
from __future__ import annotations

import base64
import hashlib
import sys
import time
from pathlib import Path
from typing import Any

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gem_fixtures import build_gem, bundle_install, gem_env, locked, push  # noqa: E402

from depot.registry import rubygems_index as ri  # noqa: E402

HOSTED = {"rubygems-local": {"format": "rubygems", "type": "hosted"}}


def make_token(depot: Any, *args: str) -> str:
    return depot.run_cli("token", "create", *args).stdout.strip().splitlines()[-1]


def access(depot: Any, path: str) -> list[tuple[int, int]]:
    """(status, bytes) of every GET of `path` in a depot's access log."""
    out = []
    for line in depot.log().splitlines():
        if f'"GET {path} HTTP/1.1"' in line:
            status, size = line.split(f'"GET {path} HTTP/1.1" ', 1)[1].split()[:2]
            out.append((int(status), int(size)))
    return out


def wait_for(check: Any, timeout: float = 5.0) -> Any:
    """The access log is buffered: poll until `check()` is truthy."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def test_proxy_appends_only_the_new_bytes_of_versions_for_bundler(depot_factory: Any, tmp_path: Path) -> None:
    upstream = depot_factory(HOSTED, name="upstream")
    pusher = gem_env(tmp_path, "pusher", make_token(upstream, "--repo", "rubygems-local", "--perm", "write"))
    hosted = f"{upstream.url}/rubygems-local"
    push(pusher, build_gem(tmp_path, "dpt_leaf", "1.0.1"), hosted)
    push(pusher, build_gem(tmp_path, "dpt_tiny", "1.0.0", {"dpt_leaf": ["~> 1.0"]}), hosted)
    proxy = depot_factory({"rubygems-remote": {"format": "rubygems", "type": "proxy", "upstream": hosted,
                                               "metadata_ttl": "1s"}}, name="proxy")
    source = f"{proxy.url}/rubygems-remote/"
    app, bundler = tmp_path / "app", gem_env(tmp_path, "bundler")
    bundle_install(bundler, app, source, {"dpt_tiny": ""})
    assert locked(app) == {"dpt_leaf": "1.0.1", "dpt_tiny": "1.0.0"}
    before = requests.get(f"{source}versions", timeout=10).content           # the proxy's copy

    push(pusher, build_gem(tmp_path, "dpt_leaf", "1.0.2"), hosted)       # the upstream appends a line
    time.sleep(1.5)                                                       # the proxy's copy is now stale
    (app / "Gemfile.lock").unlink()
    bundle_install(bundler, app, source, {"dpt_tiny": ""})               # the same bundler home: Range too
    assert locked(app)["dpt_leaf"] == "1.0.2"

    whole = requests.get(f"{hosted}/versions", timeout=10).content
    assert whole.startswith(before) and requests.get(f"{source}versions", timeout=10).content == whole
    fetched = wait_for(lambda: [a for a in access(upstream, "/rubygems-local/versions") if a[0] != 304][2:])
    fetched = [a for a in access(upstream, "/rubygems-local/versions") if a[0] != 304]
    # the proxy's first fill, then its refresh: a Range request answered 206 (the bytes past its
    # copy, see the next test for the header); the last whole GET is this test's
    assert [status for status, _ in fetched] == [200, 206, 200], fetched
    assert fetched[1][1] < fetched[0][1] < fetched[2][1]      # logged sizes (headers included): one line < all
    # bundler's own Range requests are answered 206 by the proxy, for versions and the changed info file
    assert wait_for(lambda: (206 in [s for s, _ in access(proxy, "/rubygems-remote/versions")]
                             and 206 in [s for s, _ in access(proxy, "/rubygems-remote/info/dpt_leaf")])), \
        proxy.log()[-3000:]


def test_range_answer_that_does_not_match_falls_back_to_a_whole_fetch(depot_factory: Any, upstream: Any) -> None:
    """The static upstream answers Range but sends no digest of the compact index (its ETag is
    not the file's MD5): the appended copy cannot be verified, so the proxy takes the whole file.
    A rewritten (not appended) file is fetched whole too."""
    header = "created_at: 2024-01-01T00:00:00Z\n---\n"
    first = (header + "dpt_a 1.0.0 " + "a" * 32 + "\n").encode()
    upstream.put("versions", first)
    proxy = depot_factory({"rubygems-remote": {"format": "rubygems", "type": "proxy", "upstream": upstream.url,
                                               "metadata_ttl": "1s"}})
    url = f"{proxy.url}/rubygems-remote/versions"
    assert requests.get(url, timeout=10).content == first
    for body in (first + b"dpt_b 2.0.0 " + b"b" * 32 + b"\n",             # appended
                 (header + "dpt_c 3.0.0 " + "c" * 32 + "\n").encode()):       # rewritten
        stored = requests.get(url, timeout=10).content
        upstream.put("versions", body, mtime=time.time() + 10)
        time.sleep(1.2)
        assert requests.get(url, timeout=10).content == body
        asked = [e["headers"].get("Range") for e in upstream.log() if e["path"] == "/versions"][-2:]
        assert asked == [f"bytes={len(stored) - 1}-", None], upstream.log()[-2:]


def _digest_headers(body: bytes, start: int) -> dict[str, str]:
    return {"Repr-Digest": f"sha-256=:{base64.b64encode(hashlib.sha256(body).digest()).decode()}:",
            "Content-Range": f"bytes {start}-{len(body) - 1}/{len(body)}"}


def test_appended_checks_overlap_range_and_digest() -> None:
    old, new = b"---\na 1 x\n", b"---\na 1 x\nb 2 y\n"
    part = new[len(old) - 1:]
    assert ri.appended(old, part, _digest_headers(new, len(old) - 1)) == new
    etag = {"ETag": f'"{hashlib.md5(new).hexdigest()}"', "Content-Range": f"bytes {len(old) - 1}-{len(new) - 1}/*"}
    assert ri.appended(old, part, etag) == new
    assert ri.appended(old, part.replace(b"y", b"z"), _digest_headers(new, len(old) - 1)) is None   # digest
    assert ri.appended(old, b"X" + part[1:], _digest_headers(new, len(old) - 1)) is None            # overlap
    assert ri.appended(old, part, _digest_headers(new, len(old))) is None                           # offset
    assert ri.appended(old, part, {"Content-Range": f"bytes {len(old) - 1}-{len(new) - 1}/{len(new)}"}) is None
