"""Dart pub against real depot processes, by replaying the `dart pub` client's requests.

No Dart SDK on this machine: the sequences are taken from dart-lang/pub (doc/repository-spec-v2.md
and lib/src/command/lish.dart for publish: GET api/packages/versions/new, multipart POST of `file`
with the returned fields and redirects off, GET of the Location; lib/src/source/hosted.dart for
get: GET api/packages/<name> with `Accept: application/vnd.pub.v2+json`, then GET archive_url with
the token when the hosted-url is its prefix, checked against archive_sha256).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import requests

from http_util import get, get_many
from longtail_fixtures import make_token, tar_gz

ACCEPT = "application/vnd.pub.v2+json"
UA = "Dart pub 3.5.0"
REPOS = {
    "pub-local": {"format": "pub", "type": "hosted", "anonymous_read": True},
    "pub": {"format": "pub", "type": "group", "members": ["pub-local"], "deploy_to": "pub-local",
            "anonymous_read": True},
}


def package(name: str, version: str, extra: str = "") -> bytes:
    pubspec = f"name: {name}\nversion: {version}\nenvironment:\n  sdk: '>=3.0.0 <4.0.0'\n{extra}"
    return tar_gz({"pubspec.yaml": pubspec.encode(), "lib/" + name + ".dart": b"int answer() => 42;\n"})


class DartPub:
    """The requests `dart pub publish` / `dart pub get` send, in order."""

    def __init__(self, hosted_url: str, token: str | None = None) -> None:
        self.hosted = hosted_url.rstrip("/")
        self.token = token

    def headers(self, url: str) -> dict[str, str]:
        out = {"Accept": ACCEPT, "User-Agent": UA}
        if self.token and url.startswith(self.hosted):        # pub sends its token only under hosted-url
            out["Authorization"] = f"Bearer {self.token}"
        return out

    def publish(self, archive: bytes) -> requests.Response:
        new = requests.get(f"{self.hosted}/api/packages/versions/new", headers=self.headers(self.hosted), timeout=10)
        if new.status_code != 200:
            return new
        target = new.json()
        post = requests.post(target["url"], data=target["fields"], allow_redirects=False, timeout=30,
                             files={"file": ("package.tar.gz", archive, "application/octet-stream")},
                             headers={k: v for k, v in self.headers(target["url"]).items() if k != "Accept"})
        location = post.headers.get("Location")
        if location is None:
            return post
        return requests.get(location, headers=self.headers(location), timeout=10)

    def get(self, name: str, version: str) -> tuple[bytes, requests.Response]:
        listing = requests.get(f"{self.hosted}/api/packages/{name}", headers=self.headers(self.hosted), timeout=10)
        assert listing.status_code == 200, listing.text
        assert listing.headers["Content-Type"].startswith(ACCEPT)
        entry = next(v for v in listing.json()["versions"] if v["version"] == version)
        archive = requests.get(entry["archive_url"], headers=self.headers(entry["archive_url"]), timeout=30)
        assert archive.status_code == 200, archive.text
        assert hashlib.sha256(archive.content).hexdigest() == entry["archive_sha256"]
        return archive.content, archive


@pytest.fixture
def depot(depot_factory: Any) -> Any:
    return depot_factory(REPOS, secure=True)


def test_publish_then_get_through_hosted_and_group(depot: Any) -> None:
    token = make_token(depot, "--repo", "pub-local", "--perm", "write")
    client = DartPub(f"{depot.url}/pub", token)
    done = client.publish(package("dpt_leaf", "1.0.0"))
    assert done.status_code == 200 and "Successfully uploaded dpt_leaf version 1.0.0" in done.json()["success"]["message"]
    assert client.publish(package("dpt_leaf", "1.1.0-beta.1")).status_code == 200
    assert client.publish(package("dpt_leaf", "1.0.1")).status_code == 200

    listing = requests.get(f"{depot.url}/pub/api/packages/dpt_leaf", headers={"Accept": ACCEPT}, timeout=10).json()
    assert [v["version"] for v in listing["versions"]] == ["1.0.0", "1.0.1", "1.1.0-beta.1"]
    assert listing["latest"]["version"] == "1.0.1" and listing["latest"]["pubspec"]["name"] == "dpt_leaf"
    assert all(v["archive_url"].startswith(f"{depot.url}/pub/packages/dpt_leaf/versions/") and v["published"]
               for v in listing["versions"])
    body, answer = DartPub(f"{depot.url}/pub").get("dpt_leaf", "1.0.1")          # anonymous through the group
    assert body == package("dpt_leaf", "1.0.1") and answer.headers["X-Cache"] == "HIT"
    hosted, _ = DartPub(f"{depot.url}/pub-local", token).get("dpt_leaf", "1.0.0")
    assert hosted == package("dpt_leaf", "1.0.0")
    old = requests.get(f"{depot.url}/pub/api/packages/dpt_leaf/versions/1.0.0", headers={"Accept": ACCEPT}, timeout=10)
    assert old.json()["archive_url"].endswith("/pub/packages/dpt_leaf/versions/1.0.0.tar.gz")

    again = client.publish(package("dpt_leaf", "1.0.0", extra="description: other bytes\n"))
    assert again.status_code == 400 and "already exists" in again.json()["error"]["message"]


def test_anonymous_and_read_token_cannot_publish(depot: Any) -> None:
    anonymous = DartPub(f"{depot.url}/pub").publish(package("dpt_leaf", "1.0.0"))
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"].startswith('Bearer realm="pub", message="')
    assert anonymous.json()["error"]["message"]
    reader = DartPub(f"{depot.url}/pub", make_token(depot, "--repo", "pub-local", "--perm", "read"))
    refused = reader.publish(package("dpt_leaf", "1.0.0"))
    assert refused.status_code == 403 and refused.json()["error"]["message"]
    # a client that skips versions/new and posts directly is refused the same way
    direct = requests.post(f"{depot.url}/pub/api/packages/versions/upload", timeout=10,
                           files={"file": ("package.tar.gz", package("dpt_leaf", "1.0.0"))})
    assert direct.status_code == 401
    assert requests.get(f"{depot.url}/pub/api/packages/dpt_leaf", timeout=10).status_code == 404


@pytest.mark.parametrize("case", ["not-gzip", "no-pubspec", "bad-name", "bad-version", "not-yaml", "no-file"])
def test_bad_archives_are_refused_in_pubs_error_shape_and_nothing_stored(depot: Any, case: str) -> None:
    client = DartPub(f"{depot.url}/pub", make_token(depot, "--repo", "pub-local", "--perm", "write"))
    archive = {"not-gzip": b"plain bytes",
               "no-pubspec": tar_gz({"lib/a.dart": b""}),
               "bad-name": tar_gz({"pubspec.yaml": b"name: Bad-Name\nversion: 1.0.0\n"}),
               "bad-version": tar_gz({"pubspec.yaml": b"name: dpt_leaf\nversion: '1.0'\n"}),
               "not-yaml": tar_gz({"pubspec.yaml": b"name: [unclosed\n"}),
               "no-file": b""}[case]
    if case == "no-file":
        new = requests.get(f"{depot.url}/pub/api/packages/versions/new", headers=client.headers(client.hosted),
                           timeout=10)
        answer = requests.post(new.json()["url"], files={"other": ("a.txt", b"x")}, timeout=10,
                               headers=client.headers(client.hosted))
    else:
        answer = client.publish(archive)
    assert answer.status_code == 400, answer.text
    assert answer.headers["Content-Type"].startswith(ACCEPT)
    error = answer.json()["error"]
    assert error["code"] and error["message"]
    stored = requests.get(f"{depot.url}/pub/packages/dpt_leaf/versions/1.0.0.tar.gz", timeout=10)
    assert stored.status_code == 404 and stored.json()["error"]["code"] == "NotFound"
    assert requests.get(f"{depot.url}/pub/api/packages/dpt_leaf", timeout=10).status_code == 404


# ------------------------------------------------------------------------------------- proxy

def test_proxy_in_front_of_a_second_depot_then_upstream_stopped(depot_factory: Any) -> None:
    upstream = depot_factory(REPOS, name="upstream")
    DartPub(f"{upstream.url}/pub").publish(package("dpt_leaf", "1.0.0"))
    DartPub(f"{upstream.url}/pub").publish(package("dpt_leaf", "2.0.0"))
    proxy = depot_factory({
        "pub-remote": {"format": "pub", "type": "proxy", "upstream": f"{upstream.url}/pub-local"},
        "pub-local": {"format": "pub", "type": "hosted"},
        "pub": {"format": "pub", "type": "group", "members": ["pub-local", "pub-remote"], "deploy_to": "pub-local"},
    }, name="proxy")
    DartPub(f"{proxy.url}/pub").publish(package("dpt_mine", "0.1.0"))

    body, first = DartPub(f"{proxy.url}/pub").get("dpt_leaf", "2.0.0")
    assert body == package("dpt_leaf", "2.0.0") and first.headers["X-Cache"] == "MISS"
    listing = requests.get(f"{proxy.url}/pub-remote/api/packages/dpt_leaf", headers={"Accept": ACCEPT}, timeout=10)
    assert listing.headers["X-Cache"] == "HIT"
    assert all(v["archive_url"].startswith(f"{proxy.url}/pub-remote/") for v in listing.json()["versions"])
    _, second = DartPub(f"{proxy.url}/pub").get("dpt_leaf", "2.0.0")
    assert second.headers["X-Cache"] == "HIT"
    upstream.stop()
    body, third = DartPub(f"{proxy.url}/pub").get("dpt_leaf", "2.0.0")                # upstream gone
    assert body == package("dpt_leaf", "2.0.0") and third.headers["X-Cache"] == "HIT"
    assert DartPub(f"{proxy.url}/pub").get("dpt_mine", "0.1.0")[0] == package("dpt_mine", "0.1.0")


def test_twenty_concurrent_clients_one_upstream_get_and_sha_checked(depot_factory: Any, upstream: Any) -> None:
    big = package("dpt_big", "1.0.0", extra="description: " + "x" * 200 + "\n") + b"\0" * 0
    evil = package("dpt_evil", "1.0.0")
    listing = {"name": "dpt_big", "versions": [
        {"version": "1.0.0", "archive_url": f"{upstream.url}/files/dpt_big-1.0.0.tar.gz",
         "archive_sha256": hashlib.sha256(big).hexdigest(), "pubspec": {"name": "dpt_big", "version": "1.0.0"},
         "published": "2024-01-01T00:00:00.000Z"}]}
    upstream.put("api/packages/dpt_big", json.dumps(listing).encode())
    upstream.put("files/dpt_big-1.0.0.tar.gz", big)
    bad = {"name": "dpt_evil", "versions": [
        {"version": "1.0.0", "archive_url": f"{upstream.url}/files/dpt_evil-1.0.0.tar.gz",
         "archive_sha256": "0" * 64, "pubspec": {"name": "dpt_evil", "version": "1.0.0"}}]}
    upstream.put("api/packages/dpt_evil", json.dumps(bad).encode())
    upstream.put("files/dpt_evil-1.0.0.tar.gz", evil)
    proxy = depot_factory({"pub-remote": {"format": "pub", "type": "proxy", "upstream": upstream.url}})
    upstream.mode("/files/dpt_big-1.0.0.tar.gz", "slow", chunk=256, delay=0.05)
    answers = get_many(f"{proxy.url}/pub-remote/packages/dpt_big/versions/1.0.0.tar.gz", 20)
    assert all(a.status == 200 and a.body == big for a in answers)
    assert upstream.count("/files/dpt_big-1.0.0.tar.gz") == 1
    assert upstream.count("/api/packages/dpt_big") == 1
    for _ in range(2):                    # not matching archive_sha256: refused (or cut off), never stored
        answer = get(f"{proxy.url}/pub-remote/packages/dpt_evil/versions/1.0.0.tar.gz")
        assert answer.status == 502 or not answer.complete, answer.status
    assert upstream.count("/files/dpt_evil-1.0.0.tar.gz") == 2


def test_policy_hides_versions_newer_than_the_cooldown(depot_factory: Any, upstream: Any, tmp_path: Path) -> None:
    now = "2099-01-01T00:00:00.000Z"
    doc = {"name": "dpt_pol", "versions": [
        {"version": v, "archive_url": f"{upstream.url}/f/{v}.tar.gz", "pubspec": {}, "published": t}
        for v, t in (("1.0.0", "2020-01-01T00:00:00Z"), ("2.0.0", now))]}
    upstream.put("api/packages/dpt_pol", json.dumps(doc).encode())
    proxy = depot_factory({"pub-remote": {"format": "pub", "type": "proxy", "upstream": upstream.url}},
                          extra={"policy": {"cooldown": "7d"}})
    listing = requests.get(f"{proxy.url}/pub-remote/api/packages/dpt_pol", timeout=10).json()
    assert [v["version"] for v in listing["versions"]] == ["1.0.0"] and listing["latest"]["version"] == "1.0.0"


def test_warm_from_pubspec_lock_then_hits_with_upstream_stopped(depot_factory: Any, tmp_path: Path) -> None:
    upstream = depot_factory(REPOS, name="upstream")
    DartPub(f"{upstream.url}/pub").publish(package("dpt_leaf", "1.0.0"))
    proxy = depot_factory({"pub-remote": {"format": "pub", "type": "proxy", "upstream": f"{upstream.url}/pub-local"}},
                          name="proxy")
    lock = tmp_path / "pubspec.lock"
    lock.write_text("packages:\n  dpt_leaf:\n    dependency: direct main\n    description:\n      name: dpt_leaf\n"
                    "      url: https://pub.dev\n    source: hosted\n    version: '1.0.0'\n"
                    "  app_local:\n    dependency: direct main\n    description: {path: ../x}\n    source: path\n"
                    "    version: '0.0.1'\nsdks:\n  dart: '>=3.0.0 <4.0.0'\n")
    warmed = proxy.run_cli("warm", "pub-remote", str(lock), "--url", proxy.url, check=False)
    assert warmed.returncode == 0 and "2 fetched" in warmed.stdout, warmed.stdout + warmed.stderr
    upstream.stop()
    body, answer = DartPub(f"{proxy.url}/pub-remote").get("dpt_leaf", "1.0.0")
    assert body == package("dpt_leaf", "1.0.0") and answer.headers["X-Cache"] == "HIT"


def test_policy_filters_the_listing_a_group_merges_and_the_version_endpoint(depot_factory: Any,
                                                                           upstream: Any) -> None:
    doc = {"name": "dpt_grp", "versions": [
        {"version": v, "archive_url": f"{upstream.url}/f/{v}.tar.gz", "pubspec": {"name": "dpt_grp", "version": v},
         "published": t} for v, t in (("1.0.0", "2020-01-01T00:00:00Z"), ("2.0.0", "2099-01-01T00:00:00Z"))]}
    upstream.put("api/packages/dpt_grp", json.dumps(doc).encode())
    proxy = depot_factory({"pub-remote": {"format": "pub", "type": "proxy", "upstream": upstream.url},
                           "pub-local": {"format": "pub", "type": "hosted"},
                           "pub": {"format": "pub", "type": "group", "members": ["pub-local", "pub-remote"]}},
                          extra={"policy": {"cooldown": "7d"}})
    listing = requests.get(f"{proxy.url}/pub/api/packages/dpt_grp", timeout=10).json()
    assert [v["version"] for v in listing["versions"]] == ["1.0.0"] and listing["latest"]["version"] == "1.0.0"
    assert requests.get(f"{proxy.url}/pub-remote/api/packages/dpt_grp/versions/2.0.0", timeout=10).status_code == 404
    assert requests.get(f"{proxy.url}/pub-remote/api/packages/dpt_grp/versions/1.0.0", timeout=10).status_code == 200
