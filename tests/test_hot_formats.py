"""Repeat hits of the formats whose hits used to take their full path every time (Maven, Go, Cargo,
Composer) are answered by the hot path (depot_hot_hits_total counts them): Maven checksum
sidecars, documents rebased onto the client's base URL, and files a format looks up before
opening. The hot answers stay correct: the same bytes and X-Cache as the full path, the new
bytes once an entry is refreshed or purged, and a rebased document follows X-Forwarded-Host."""
from __future__ import annotations

import hashlib
import json
import os
import time
from typing import Any

from admin_helpers import api
from cargo_fixtures import index_path
from http_util import get
from test_observability import scrape, total

TTL = 4                                     # metadata_ttl of the repositories that refresh


def hot_hits(depot: Any) -> float:
    return total(scrape(depot.url), "depot_hot_hits_total", repository="remote")


def assert_hot(depot: Any, url: str, body: bytes, times: int = 3, headers: dict[str, str] | None = None) -> None:
    """`url` answers `body` as a HIT `times` more, every one of them by the hot path."""
    before = hot_hits(depot)
    for _ in range(times):
        answer = get(url, headers=headers)
        assert answer.status == 200 and answer.body == body, (url, answer.status, answer.body[:200])
        assert answer.headers["X-Cache"] == "HIT"
    assert hot_hits(depot) - before == times, url


def warm(urls: list[str], rounds: int = 2) -> None:
    """Fill and hit every URL (interleaved, as a client does), so each is a plain repeat hit."""
    for _ in range(rounds):
        for url in urls:
            assert get(url).status == 200, url


def proxy(depot_factory: Any, fmt: str, upstream_url: str, **options: Any) -> tuple[Any, str]:
    depot = depot_factory({"remote": {"format": fmt, "type": "proxy", "upstream": upstream_url, **options}})
    return depot, f"{depot.url}/remote/"


def test_maven_files_and_their_checksums_are_hot(depot_factory: Any, upstream: Any) -> None:
    pom = b"<project><artifactId>a</artifactId><version>1.0</version></project>"
    jar = os.urandom(600 * 1024)                       # above the memory item limit: sendfile
    base = "org/hot/a/1.0/a-1.0"
    for name, data in ((f"{base}.pom", pom), (f"{base}.jar", jar)):
        upstream.put(name, data)
        upstream.put(name + ".sha1", hashlib.sha1(data).hexdigest().encode())
    depot, root = proxy(depot_factory, "maven", upstream.url + "/")
    urls = [root + p for p in (f"{base}.pom", f"{base}.pom.sha1", f"{base}.jar", f"{base}.jar.sha1",
                               f"{base}.pom.md5")]
    warm(urls)
    # each request of a sidecar opens its file again: that must not make the file's own hits cold
    for _ in range(2):
        assert_hot(depot, root + f"{base}.pom", pom, times=1)
        assert_hot(depot, root + f"{base}.pom.sha1", hashlib.sha1(pom).hexdigest().encode(), times=1)
        assert_hot(depot, root + f"{base}.jar", jar, times=1)
        assert_hot(depot, root + f"{base}.jar.sha1", hashlib.sha1(jar).hexdigest().encode(), times=1)
        assert_hot(depot, root + f"{base}.pom.md5", hashlib.md5(pom).hexdigest().encode(), times=1)
    head = get(root + f"{base}.jar.sha1", "HEAD")
    assert head.status == 200 and head.headers["Content-Length"] == "40" and head.body == b""
    assert upstream.count(f"/{base}.jar") == 1 and upstream.count(f"/{base}.pom") == 1


def test_a_hot_maven_checksum_follows_its_refreshed_document(depot_factory: Any, upstream: Any) -> None:
    meta = "org/hot/b/maven-metadata.xml"
    first = b"<metadata><versioning><latest>1.0</latest></versioning></metadata>"
    upstream.put(meta, first)
    depot, root = proxy(depot_factory, "maven", upstream.url + "/", metadata_ttl=TTL)
    warm([root + meta + ".sha1", root + meta])
    assert_hot(depot, root + meta + ".sha1", hashlib.sha1(first).hexdigest().encode())
    assert_hot(depot, root + meta, first)
    second = b"<metadata><versioning><latest>2.0</latest></versioning></metadata>"
    upstream.put(meta, second)
    time.sleep(TTL + 0.5)
    assert get(root + meta + ".sha1").body == hashlib.sha1(second).hexdigest().encode()
    assert get(root + meta).body == second
    warm([root + meta + ".sha1", root + meta], rounds=1)
    assert_hot(depot, root + meta + ".sha1", hashlib.sha1(second).hexdigest().encode())


def test_go_info_mod_zip_and_list_are_hot_and_refresh(depot_factory: Any, upstream: Any) -> None:
    base = "example.org/!hot/@v"
    files = {f"{base}/list": b"v1.0.0\n", f"{base}/v1.0.0.info": b'{"Version":"v1.0.0"}',
             f"{base}/v1.0.0.mod": b"module example.org/Hot\n", f"{base}/v1.0.0.zip": os.urandom(300 * 1024)}
    for path, data in files.items():
        upstream.put(path, data)
    depot, root = proxy(depot_factory, "go", upstream.url, metadata_ttl=TTL)
    for path, data in files.items():           # one at a time: the list must not expire meanwhile
        warm([root + path])
        assert_hot(depot, root + path, data)
    upstream.put(f"{base}/list", b"v1.0.0\nv1.1.0\n")
    time.sleep(TTL + 0.5)
    assert get(root + f"{base}/list").body == b"v1.0.0\nv1.1.0\n"      # refreshed: the hot copy is stale
    warm([root + f"{base}/list"], rounds=1)
    assert_hot(depot, root + f"{base}/list", b"v1.0.0\nv1.1.0\n")


def test_cargo_crates_are_hot_and_a_purged_one_is_fetched_again(depot_factory: Any, upstream: Any) -> None:
    crate = os.urandom(20 * 1024)
    upstream.put("config.json", json.dumps({"dl": upstream.url + "/dl/{crate}/{crate}-{version}.crate"}).encode())
    line = {"name": "hotcrate", "vers": "1.0.0", "deps": [], "cksum": hashlib.sha256(crate).hexdigest(),
            "features": {}, "yanked": False}
    index = (json.dumps(line) + "\n").encode()
    upstream.put(index_path("hotcrate"), index)
    upstream.put("dl/hotcrate/hotcrate-1.0.0.crate", crate)
    depot, root = proxy(depot_factory, "cargo", upstream.url)
    download = root + "api/v1/crates/hotcrate/1.0.0/download"
    warm([root + index_path("hotcrate"), download])
    assert_hot(depot, download, crate)
    assert_hot(depot, root + index_path("hotcrate"), index)
    purged = api(depot, "DELETE", "cache/remote", auth=("admin", depot.ADMIN_PASSWORD))
    assert purged.status_code == 200, purged.text
    again = get(download)
    assert again.status == 200 and again.body == crate and again.headers["X-Cache"] == "MISS"
    assert upstream.count("/dl/hotcrate/hotcrate-1.0.0.crate") == 2


def test_composer_documents_are_hot_per_base_url(depot_factory: Any, upstream: Any) -> None:
    data = os.urandom(10 * 1024)
    doc = {"packages": {"hot/pkg": [{"name": "hot/pkg", "version": "1.0.0", "version_normalized": "1.0.0.0",
                                     "dist": {"type": "zip", "url": f"{upstream.url}/dl/pkg.zip", "reference": "r1",
                                              "shasum": hashlib.sha1(data).hexdigest()}}]},
           "minified": "composer/2.0"}
    upstream.put("p2/hot/pkg.json", json.dumps(doc).encode())
    upstream.put("dl/pkg.zip", data)
    depot, root = proxy(depot_factory, "composer", upstream.url, metadata_ttl=TTL)
    url = root + "p2/hot/pkg.json"
    warm([url])
    answer = get(url)
    dist = json.loads(answer.body)["packages"]["hot/pkg"][0]["dist"]["url"]
    assert dist.startswith(f"{depot.url}/remote/dists/hot/pkg/1.0.0/")
    assert_hot(depot, url, answer.body)
    assert get(dist).body == data
    # a trusted proxy naming another base URL gets that base (never the hot copy of the Host's)
    before = hot_hits(depot)
    forwarded = get(url, headers={"X-Forwarded-Host": "mirror.example", "X-Forwarded-Proto": "https"})
    assert b"https://mirror.example/remote/dists/hot/pkg/1.0.0/" in forwarded.body
    assert forwarded.headers["X-Cache"] == "HIT" and hot_hits(depot) == before
    assert_hot(depot, url, answer.body)                      # the Host's own copy is still hot
    # refreshed upstream document: the new content, rebased, then hot again
    doc["packages"]["hot/pkg"][0]["dist"]["reference"] = "r2"
    upstream.put("p2/hot/pkg.json", json.dumps(doc).encode())
    time.sleep(TTL + 0.5)
    fresh = get(url)
    assert b"/remote/dists/hot/pkg/1.0.0/r2.zip" in fresh.body and fresh.body != answer.body
    warm([url], rounds=1)
    assert_hot(depot, url, fresh.body)
