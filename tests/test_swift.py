"""Swift Package Registry against real depot processes, by replaying SwiftPM's requests.

No Swift toolchain on this machine: the sequences are taken from swiftlang/swift-package-manager
(Documentation/PackageRegistry/Registry.md and Sources/PackageRegistry/RegistryClient.swift):
resolution sends `GET /{scope}/{name}`, `GET /{scope}/{name}/{version}` (checksum), `GET …/Package.swift`
(then the `swift-version` alternates its Link header names), `GET …/{version}.zip` checked against the
checksum, each with its `Accept: application/vnd.swift.registry.v1+{json,swift,zip}`;
`--replace-scm-with-registry` adds `GET /identifiers?url=`; `package-registry login` sends `POST /login`;
`package-registry publish` sends `PUT /{scope}/{name}/{version}` as multipart (`source-archive`,
`metadata`), `Accept: …v1+json`, `Expect: 100-continue`, `Prefer: respond-async`.
"""
from __future__ import annotations

import base64
import hashlib
import json
import re
from typing import Any

import pytest
import requests

from http_util import get, get_many
from longtail_fixtures import make_token, zip_bytes

V1 = "application/vnd.swift.registry.v1+"
REPOS = {
    "swift-local": {"format": "swift", "type": "hosted", "anonymous_read": True},
    "swift": {"format": "swift", "type": "group", "members": ["swift-local"], "deploy_to": "swift-local",
              "anonymous_read": True},
}
MANIFEST = b"// swift-tools-version:5.7\nimport PackageDescription\nlet package = Package(name: \"LinkedList\")\n"
MANIFEST_54 = b"// swift-tools-version:5.4\nimport PackageDescription\nlet package = Package(name: \"LinkedList\")\n"


def source_archive(version: str, top: str = "LinkedList") -> bytes:
    return zip_bytes({f"{top}/Package.swift": MANIFEST, f"{top}/Package@swift-5.4.swift": MANIFEST_54,
                      f"{top}/Sources/LinkedList/LinkedList.swift": f"public let version = \"{version}\"\n".encode()})


class SwiftPM:
    """The requests of `swift package resolve` / `swift package-registry publish|login`."""

    def __init__(self, registry: str, token: str | None = None) -> None:
        self.registry = registry.rstrip("/")
        self.auth = {"Authorization": f"Bearer {token}"} if token else {}

    def _get(self, path: str, kind: str, **kw: Any) -> requests.Response:
        return requests.get(f"{self.registry}/{path}", headers={"Accept": V1 + kind, **self.auth}, timeout=30, **kw)

    def login(self) -> requests.Response:
        return requests.post(f"{self.registry}/login", headers={"Accept": V1 + "json", **self.auth}, timeout=10)

    def publish(self, package_id: str, version: str, archive: bytes, metadata: dict[str, Any] | None = None,
                signature: bytes | None = None) -> requests.Response:
        scope, name = package_id.split(".")
        files: dict[str, Any] = {"source-archive": (None, archive, "application/zip"),
                                 "metadata": (None, json.dumps(metadata or {}).encode(), "application/json")}
        headers = {"Accept": V1 + "json", "Expect": "100-continue", "Prefer": "respond-async", **self.auth}
        if signature:
            files["source-archive-signature"] = (None, signature, "application/octet-stream")
            headers["X-Swift-Package-Signature-Format"] = "cms-1.0.0"
        return requests.put(f"{self.registry}/{scope}/{name}/{version}", files=files, headers=headers, timeout=30)

    def resolve(self, package_id: str, swift: str | None = None) -> dict[str, Any]:
        """The newest release: its metadata, manifest(s) and verified archive."""
        scope, name = package_id.split(".")
        releases = self._get(f"{scope}/{name}", "json")
        assert releases.status_code == 200, releases.text
        assert releases.headers["Content-Version"] == "1"
        version = next(iter(releases.json()["releases"]))
        assert releases.json()["releases"][version]["url"].startswith(self.registry + "/")
        meta = self._get(f"{scope}/{name}/{version}", "json")
        assert meta.status_code == 200, meta.text
        checksum = next(r["checksum"] for r in meta.json()["resources"] if r["name"] == "source-archive")
        manifest = self._get(f"{scope}/{name}/{version}/Package.swift", "swift")
        assert manifest.status_code == 200, manifest.text
        alternates = re.findall(r'swift-version=([0-9.]+)>; rel="alternate"', manifest.headers.get("Link", ""))
        variant = None
        if swift is not None:
            variant = self._get(f"{scope}/{name}/{version}/Package.swift", "swift", params={"swift-version": swift})
        archive = self._get(f"{scope}/{name}/{version}.zip", "zip")
        assert archive.status_code == 200, archive.text
        assert hashlib.sha256(archive.content).hexdigest() == checksum                   # SwiftPM's integrity check
        digest = base64.b64encode(hashlib.sha256(archive.content).digest()).decode()
        assert archive.headers["Digest"] == f"sha-256={digest}"
        return {"version": version, "meta": meta, "manifest": manifest, "alternates": alternates,
                "variant": variant, "archive": archive}


@pytest.fixture
def depot(depot_factory: Any) -> Any:
    return depot_factory(REPOS, secure=True)


def test_publish_then_resolve_through_hosted_and_group(depot: Any) -> None:
    token = make_token(depot, "--repo", "swift-local", "--perm", "write")
    client = SwiftPM(f"{depot.url}/swift", token)
    assert client.login().status_code == 200
    meta = {"description": "One thing links to another.", "repositoryURLs": ["https://github.com/mona/LinkedList.git"]}
    first = client.publish("mona.LinkedList", "1.0.0", source_archive("1.0.0"), meta)
    assert first.status_code == 201, first.text
    assert first.headers["Location"] == f"{depot.url}/swift/mona/LinkedList/1.0.0"
    assert client.publish("mona.LinkedList", "1.1.0", source_archive("1.1.0"), meta,
                          signature=b"\x30\x82sig").status_code == 201

    for registry in (f"{depot.url}/swift", f"{depot.url}/swift-local"):
        got = SwiftPM(registry).resolve("mona.LinkedList", swift="5.4")             # anonymous read
        assert got["version"] == "1.1.0" and got["manifest"].content == MANIFEST
        assert got["alternates"] == ["5.4"] and got["variant"].content == MANIFEST_54
        assert got["meta"].json()["metadata"]["description"] == "One thing links to another."
        assert got["meta"].json()["publishedAt"].endswith("Z")
        assert got["meta"].json()["resources"][0]["signing"]["signatureFormat"] == "cms-1.0.0"
        assert got["archive"].content == source_archive("1.1.0")
    assert SwiftPM(f"{depot.url}/swift").resolve("mona.LinkedList")["archive"].headers["X-Cache"] == "HIT"
    missing = requests.get(f"{depot.url}/swift/mona/LinkedList/1.1.0/Package.swift?swift-version=4",
                           headers={"Accept": V1 + "swift"}, allow_redirects=False, timeout=10)
    assert missing.status_code == 303
    assert missing.headers["Location"] == f"{depot.url}/swift/mona/LinkedList/1.1.0/Package.swift"
    found = requests.get(f"{depot.url}/swift/identifiers", params={"url": "git@github.com:mona/LinkedList.git"},
                         headers={"Accept": V1 + "json"}, timeout=10)
    assert found.json() == {"identifiers": ["mona.LinkedList"]} and found.headers["Content-Version"] == "1"
    # case-insensitive identifiers; a second publish of a version is a 409 problem
    assert SwiftPM(f"{depot.url}/swift").resolve("Mona.linkedlist")["version"] == "1.1.0"
    again = client.publish("mona.LinkedList", "1.0.0", source_archive("1.0.0-other"))
    assert again.status_code == 409 and again.headers["Content-Type"].startswith("application/problem+json")
    assert again.json()["detail"] == "a release with version 1.0.0 already exists"
    other = requests.get(f"{depot.url}/swift/mona/LinkedList", headers={"Accept": "application/vnd.swift.registry.v2+json"},
                         timeout=10)
    assert other.status_code == 415 and "v2" in other.json()["detail"]


def test_anonymous_and_read_token_cannot_publish(depot: Any) -> None:
    anonymous = SwiftPM(f"{depot.url}/swift").publish("mona.LinkedList", "1.0.0", source_archive("1.0.0"))
    assert anonymous.status_code == 401 and anonymous.headers["WWW-Authenticate"]
    assert anonymous.headers["Content-Type"].startswith("application/problem+json") and anonymous.json()["detail"]
    assert SwiftPM(f"{depot.url}/swift").login().status_code == 401
    reader = SwiftPM(f"{depot.url}/swift", make_token(depot, "--repo", "swift-local", "--perm", "read"))
    refused = reader.publish("mona.LinkedList", "1.0.0", source_archive("1.0.0"))
    assert refused.status_code == 403 and refused.json()["detail"]
    assert requests.get(f"{depot.url}/swift/mona/LinkedList", timeout=10).status_code == 404


@pytest.mark.parametrize("case", ["not-zip", "no-manifest", "bad-metadata", "no-archive"])
def test_bad_releases_are_refused_as_problem_details_and_nothing_stored(depot: Any, case: str) -> None:
    client = SwiftPM(f"{depot.url}/swift", make_token(depot, "--repo", "swift-local", "--perm", "write"))
    headers = {"Accept": V1 + "json", **client.auth}
    if case == "bad-metadata":
        answer = requests.put(f"{depot.url}/swift/mona/LinkedList/1.0.0", headers=headers, timeout=10, files={
            "source-archive": (None, source_archive("1.0.0"), "application/zip"),
            "metadata": (None, b"{not json", "application/json")})
    elif case == "no-archive":
        answer = requests.put(f"{depot.url}/swift/mona/LinkedList/1.0.0", headers=headers, timeout=10,
                              files={"metadata": (None, b"{}", "application/json")})
    else:
        archive = b"plain bytes" if case == "not-zip" else zip_bytes({"LinkedList/README.md": b"hi"})
        answer = client.publish("mona.LinkedList", "1.0.0", archive)
    assert answer.status_code == 422, answer.text
    assert answer.headers["Content-Type"].startswith("application/problem+json")
    assert answer.headers["Content-Version"] == "1" and answer.json()["detail"]
    for path in ("mona/LinkedList", "mona/LinkedList/1.0.0", "mona/LinkedList/1.0.0.zip"):
        gone = requests.get(f"{depot.url}/swift/{path}", headers={"Accept": V1 + "json"}, timeout=10)
        assert gone.status_code == 404 and gone.json()["detail"]


# ------------------------------------------------------------------------------------- proxy

def test_proxy_in_front_of_a_second_depot_then_upstream_stopped(depot_factory: Any) -> None:
    upstream = depot_factory(REPOS, name="upstream")
    meta = {"repositoryURLs": ["https://github.com/mona/LinkedList"]}
    assert SwiftPM(f"{upstream.url}/swift").publish("mona.LinkedList", "1.0.0", source_archive("1.0.0"),
                                                    meta).status_code == 201
    proxy = depot_factory({
        "swift-remote": {"format": "swift", "type": "proxy", "upstream": f"{upstream.url}/swift-local"},
        "swift-local": {"format": "swift", "type": "hosted"},
        "swift": {"format": "swift", "type": "group", "members": ["swift-local", "swift-remote"],
                  "deploy_to": "swift-local"},
    }, name="proxy")
    assert SwiftPM(f"{proxy.url}/swift").publish("acme.Mine", "0.1.0", source_archive("0.1.0", "Mine")).status_code == 201

    first = SwiftPM(f"{proxy.url}/swift").resolve("mona.LinkedList")
    assert first["archive"].headers["X-Cache"] == "MISS" and first["archive"].content == source_archive("1.0.0")
    second = SwiftPM(f"{proxy.url}/swift").resolve("mona.LinkedList")
    assert all(second[k].headers["X-Cache"] == "HIT" for k in ("meta", "manifest", "archive"))
    direct = requests.get(f"{proxy.url}/swift-remote/mona/LinkedList", headers={"Accept": V1 + "json"}, timeout=10)
    assert direct.headers["X-Cache"] == "HIT"
    assert direct.json()["releases"]["1.0.0"]["url"] == f"{proxy.url}/swift-remote/mona/LinkedList/1.0.0"
    ids = requests.get(f"{proxy.url}/swift/identifiers", params={"url": "https://github.com/mona/LinkedList"},
                       timeout=10)
    assert ids.json() == {"identifiers": ["mona.LinkedList"]}
    upstream.stop()
    third = SwiftPM(f"{proxy.url}/swift").resolve("mona.LinkedList")                  # upstream gone
    assert third["archive"].content == source_archive("1.0.0") and third["archive"].headers["X-Cache"] == "HIT"
    assert SwiftPM(f"{proxy.url}/swift").resolve("acme.Mine")["version"] == "0.1.0"


def _static_release(upstream: Any, name: str, archive: bytes, checksum: str, published: str) -> None:
    doc = {"id": f"mona.{name}", "version": "1.0.0", "metadata": {}, "publishedAt": published,
           "resources": [{"name": "source-archive", "type": "application/zip", "checksum": checksum}]}
    upstream.put(f"mona/{name}/1.0.0", json.dumps(doc).encode())
    upstream.put(f"mona/{name}/1.0.0.zip", archive)


def test_twenty_concurrent_clients_one_upstream_get_and_checksum(depot_factory: Any, upstream: Any) -> None:
    big = zip_bytes({"Big/Package.swift": MANIFEST, "Big/blob.bin": bytes(range(256)) * 2000})
    _static_release(upstream, "Big", big, hashlib.sha256(big).hexdigest(), "2020-01-01T00:00:00Z")
    _static_release(upstream, "Evil", big, "0" * 64, "2020-01-01T00:00:00Z")
    proxy = depot_factory({"swift-remote": {"format": "swift", "type": "proxy", "upstream": upstream.url}})
    upstream.mode("/mona/Big/1.0.0.zip", "slow", rate=2_000_000)
    answers = get_many(f"{proxy.url}/swift-remote/mona/Big/1.0.0.zip", 20)
    assert all(a.status == 200 and a.body == big for a in answers)
    assert upstream.count("/mona/Big/1.0.0.zip") == 1 and upstream.count("/mona/Big/1.0.0") == 1
    for _ in range(2):                # not the checksum of the release metadata: refused, never stored
        answer = get(f"{proxy.url}/swift-remote/mona/Evil/1.0.0.zip")
        assert answer.status == 502 or not answer.complete, answer.status
    assert upstream.count("/mona/Evil/1.0.0.zip") == 2


def test_policy_refuses_a_release_newer_than_the_cooldown(depot_factory: Any, upstream: Any) -> None:
    archive = zip_bytes({"New/Package.swift": MANIFEST})
    _static_release(upstream, "New", archive, hashlib.sha256(archive).hexdigest(), "2099-01-01T00:00:00Z")
    _static_release(upstream, "Old", archive, hashlib.sha256(archive).hexdigest(), "2020-01-01T00:00:00Z")
    proxy = depot_factory({"swift-remote": {"format": "swift", "type": "proxy", "upstream": upstream.url}},
                          extra={"policy": {"cooldown": "7d"}})
    refused = requests.get(f"{proxy.url}/swift-remote/mona/New/1.0.0.zip", timeout=10)
    assert refused.status_code == 403 and "cooldown" in refused.json()["detail"]
    assert requests.get(f"{proxy.url}/swift-remote/mona/Old/1.0.0.zip", timeout=10).content == archive


def test_policy_deny_filters_the_release_list_and_refuses_the_release(depot_factory: Any) -> None:
    upstream = depot_factory(REPOS, name="upstream")
    for version in ("1.0.0", "1.1.0"):
        assert SwiftPM(f"{upstream.url}/swift").publish("mona.LinkedList", version,
                                                        source_archive(version)).status_code == 201
    proxy = depot_factory({"swift-remote": {"format": "swift", "type": "proxy",
                                            "upstream": f"{upstream.url}/swift-local"},
                           "swift": {"format": "swift", "type": "group", "members": ["swift-remote"]}},
                          extra={"policy": {"deny": ["mona.LinkedList@>=1.1"]}}, name="proxy")
    for repo in ("swift-remote", "swift"):
        listed = requests.get(f"{proxy.url}/{repo}/mona/LinkedList", headers={"Accept": V1 + "json"}, timeout=10)
        assert list(listed.json()["releases"]) == ["1.0.0"], repo
    for path in ("mona/LinkedList/1.1.0", "mona/LinkedList/1.1.0.zip"):
        refused = requests.get(f"{proxy.url}/swift-remote/{path}", headers={"Accept": V1 + "json"}, timeout=10)
        assert refused.status_code == 403 and "mona.LinkedList@>=1.1" in refused.json()["detail"], path
    assert SwiftPM(f"{proxy.url}/swift").resolve("mona.LinkedList")["version"] == "1.0.0"
