"""Table-driven tests of the pure npm helpers: packuments, publish bodies, SRI checks."""
from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import pytest

from depot.cache.integrity import IntegrityCheck, IntegrityMismatch
from depot.registry import npm_packument as pk
from depot.registry import npm_publish as pub
from depot.registry.base import FormatError

BASE = "http://depot.test:8080/npm"
DATA = b"\x1f\x8b fake tarball bytes"
SRI = "sha512-" + base64.b64encode(hashlib.sha512(DATA).digest()).decode()
SHA1 = hashlib.sha1(DATA).hexdigest()


# ---------------------------------------------------------------------------- names and URLs

@pytest.mark.parametrize("raw, expected", [
    ("lodash", "lodash"),
    ("@scope%2fname", "@scope/name"),
    ("@scope%2Fname", "@scope/name"),
    ("@scope/name", "@scope/name"),
    ("JSONStream", "JSONStream"),             # legacy upper-case names are readable
    ("a.b-c_d~e", "a.b-c_d~e"),
    ("..", None),
    (".", None),
    ("@scope/..", None),
    ("a/b", None),
    ("a b", None),
    ("a?x", None),
    ("@/x", None),
    ("x" * 215, None),
])
def test_parse_name(raw: str, expected: str | None) -> None:
    assert pk.parse_name(raw) == expected


@pytest.mark.parametrize("name, version, filename, url", [
    ("a", "1.0.0", "a-1.0.0.tgz", f"{BASE}/a/-/a-1.0.0.tgz"),
    ("@s/a", "2.0.0-rc.1", "a-2.0.0-rc.1.tgz", f"{BASE}/@s/a/-/a-2.0.0-rc.1.tgz"),
])
def test_tarball_names(name: str, version: str, filename: str, url: str) -> None:
    assert pk.tarball_filename(name, version) == filename
    assert pk.tarball_url(BASE + "/", name, filename) == url


@pytest.mark.parametrize("url, expected", [
    ("http://up/a/-/a-1.0.0.tgz", "a-1.0.0.tgz"),
    ("https://up/@s/a/-/a-1.0.0.tgz", "a-1.0.0.tgz"),
    ("http://up/a/-/a-1.0.0.tgz?x=1", "a-1.0.0.tgz"),
    ("http://up/a/-/a%2D1.0.0.tgz", "a-1.0.0.tgz"),
    ("http://up/a/-/..", None),
    ("http://up/a/-/a-1.0.0.zip", None),
])
def test_tarball_basename(url: str, expected: str | None) -> None:
    assert pk.tarball_basename(url) == expected


@pytest.mark.parametrize("accept, expected", [
    ("application/vnd.npm.install-v1+json; q=1.0, application/json; q=0.8, */*", True),
    ("application/vnd.npm.install-v1+json", True),
    ("application/json", False),
    ("application/vnd.npm.install-v1+json;q=0, application/json", False),
    (None, False),
    ("", False),
])
def test_wants_abbreviated(accept: str | None, expected: bool) -> None:
    assert pk.wants_abbreviated(accept) is expected


def test_semver_ordering() -> None:
    ordered = ["0.9.0", "1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-beta", "1.0.0-beta.2",
               "1.0.0-beta.11", "1.0.0-rc.1", "1.0.0", "1.2.0", "1.10.0", "2.0.0"]
    assert sorted(reversed(ordered), key=pk.semver_key) == ordered
    assert pk.highest_version(["1.0.0", "2.0.0-rc.1"]) == "1.0.0"
    assert pk.highest_version(["2.0.0-rc.1"]) == "2.0.0-rc.1"
    assert pk.highest_version([]) is None


# ---------------------------------------------------------------------------- upstream documents

def upstream_doc() -> dict[str, Any]:
    return {
        "_id": "@s/a", "_rev": "12-abc", "name": "@s/a", "readme": "long text",
        "dist-tags": {"latest": "1.1.0"},
        "time": {"modified": "2024-01-01T00:00:00.000Z"},
        "versions": {
            v: {"name": "@s/a", "version": v, "readme": "x", "scripts": scripts,
                "dependencies": {"b": "^1"}, "engines": {"node": ">=18"},
                "dist": {"tarball": f"https://up.example/@s/a/-/a-{v}.tgz", "integrity": SRI, "shasum": SHA1}}
            for v, scripts in (("1.0.0", {"test": "t"}), ("1.1.0", {"postinstall": "node x"}))
        },
    }


@pytest.mark.parametrize("abbreviated", [False, True])
def test_transform_rewrites_and_abbreviates(abbreviated: bool) -> None:
    body = json.dumps(upstream_doc()).encode()
    out = json.loads(pk.transform_packument(body, BASE, "@s/a", abbreviated))
    v = out["versions"]["1.1.0"]
    assert v["dist"] == {"tarball": f"{BASE}/@s/a/-/a-1.1.0.tgz", "integrity": SRI, "shasum": SHA1}
    assert "_rev" not in out
    if abbreviated:
        assert set(out) == {"name", "dist-tags", "versions", "modified"}
        assert "readme" not in v and "scripts" not in v
        assert v["hasInstallScript"] is True and "hasInstallScript" not in out["versions"]["1.0.0"]
        assert v["dependencies"] == {"b": "^1"} and v["engines"] == {"node": ">=18"}
    else:
        assert v["readme"] == "x" and out["readme"] == "long text"


def test_tarball_index() -> None:
    index = pk.tarball_index(json.dumps(upstream_doc()).encode())
    assert index["a-1.0.0.tgz"] == {"version": "1.0.0", "url": "https://up.example/@s/a/-/a-1.0.0.tgz",
                                    "integrity": SRI, "shasum": SHA1}


def test_offload_large_document_matches_inline(monkeypatch: pytest.MonkeyPatch) -> None:
    body = json.dumps(upstream_doc()).encode()
    inline = pk.transform_packument(body, BASE, "@s/a", True)
    monkeypatch.setattr(pk, "OFFLOAD_THRESHOLD", 1)
    assert pk.transform_packument(body, BASE, "@s/a", True) == inline


@pytest.mark.parametrize("docs, versions, tags", [
    # hosted (first) wins a version both have, and its dist-tags win
    ([{"name": "a", "versions": {"1.0.0": {"from": "hosted"}}, "dist-tags": {"latest": "1.0.0"}},
      {"name": "a", "versions": {"1.0.0": {"from": "proxy"}, "2.0.0": {"from": "proxy"}},
       "dist-tags": {"latest": "2.0.0", "next": "2.0.0"}}],
     {"1.0.0": "hosted", "2.0.0": "proxy"}, {"latest": "1.0.0", "next": "2.0.0"}),
    # a tag pointing at a version nobody has is dropped
    ([{"name": "a", "versions": {"1.0.0": {"from": "h"}}, "dist-tags": {"beta": "9.9.9"}}],
     {"1.0.0": "h"}, {}),
])
def test_merge_packuments(docs: list[dict[str, Any]], versions: dict[str, str], tags: dict[str, str]) -> None:
    merged = pk.merge_packuments(docs)
    assert {v: m["from"] for v, m in merged["versions"].items()} == versions
    assert merged["dist-tags"] == tags


def test_merge_bodies_single_is_identity() -> None:
    assert pk.merge_bodies([b'{"name":"a"}']) == b'{"name":"a"}'


# ---------------------------------------------------------------------------- hosted documents

def hosted_with(*versions: str) -> dict[str, Any]:
    doc = pk.new_hosted("a", now=0)
    for version in versions:
        manifest = {"name": "a", "version": version, "_npmVersion": "11", "description": f"d{version}",
                    "dist": {"integrity": SRI, "shasum": SHA1, "tarball": "http://ignored"}}
        pk.add_version(doc, manifest, f"a-{version}.tgz", {"latest": version}, now=1)
    return doc


def test_add_version_and_render() -> None:
    doc = hosted_with("1.0.0", "1.1.0")
    assert doc["dist-tags"] == {"latest": "1.1.0"} and doc["description"] == "d1.1.0"
    assert "_npmVersion" not in doc["versions"]["1.0.0"]
    assert doc["versions"]["1.0.0"]["dist"]["tarball"] == "a-1.0.0.tgz"
    assert doc["_rev"].startswith("2-")
    full = json.loads(pk.render_hosted(doc, BASE, abbreviated=False))
    assert full["versions"]["1.0.0"]["dist"]["tarball"] == f"{BASE}/a/-/a-1.0.0.tgz"
    assert full["_rev"] == doc["_rev"]
    corgi = json.loads(pk.render_hosted(doc, BASE, abbreviated=True))
    assert set(corgi) == {"name", "dist-tags", "versions", "modified"}
    assert doc["versions"]["1.0.0"]["dist"]["tarball"] == "a-1.0.0.tgz"     # stored doc unchanged


@pytest.mark.parametrize("incoming, removed, tags, deprecated", [
    # npm deprecate: one version gains a message
    (lambda d: d["versions"]["1.0.0"].update(deprecated="old") or d, [], {"latest": "1.1.0"},
     {"1.0.0": "old"}),
    # npm unpublish a@1.1.0: the version and its tags are gone, latest re-pointed by npm
    (lambda d: (d["versions"].pop("1.1.0"), d.update({"dist-tags": {"latest": "1.0.0"}}), d)[-1],
     ["1.1.0"], {"latest": "1.0.0"}, {}),
    # a client that forgets to re-point latest still gets one
    (lambda d: (d["versions"].pop("1.1.0"), d.update({"dist-tags": {}}), d)[-1],
     ["1.1.0"], {"latest": "1.0.0"}, {}),
])
def test_apply_update(incoming: Any, removed: list[str], tags: dict[str, str],
                      deprecated: dict[str, str]) -> None:
    doc = hosted_with("1.0.0", "1.1.0")
    body = incoming(json.loads(pk.render_hosted(doc, BASE, False)))
    assert pk.apply_update(doc, body) == removed
    assert doc["dist-tags"] == tags
    assert {v: m["deprecated"] for v, m in doc["versions"].items() if "deprecated" in m} == deprecated


@pytest.mark.parametrize("incoming", [
    {"versions": {"1.0.0": {}, "1.1.0": {}, "9.0.0": {}}},     # new version without a tarball
    {"versions": []},
    {"versions": {}, "dist-tags": "latest"},
])
def test_apply_update_rejects(incoming: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        pk.apply_update(hosted_with("1.0.0", "1.1.0"), incoming)


def test_remove_version_repoints_latest() -> None:
    doc = hosted_with("1.0.0", "1.1.0", "2.0.0-rc.1")
    doc["dist-tags"]["latest"] = "1.1.0"
    assert pk.remove_version(doc, "1.1.0") == "a-1.1.0.tgz"
    assert doc["dist-tags"]["latest"] == "1.0.0"
    assert pk.remove_version(doc, "7.7.7") is None


def test_version_document_and_search() -> None:
    doc = hosted_with("1.0.0", "1.1.0")
    doc["keywords"] = ["depot"]
    doc["versions"]["1.1.0"]["keywords"] = ["depot", "cache"]
    assert pk.version_document(doc, "latest")["version"] == "1.1.0"
    assert pk.version_document(doc, "1.0.0")["version"] == "1.0.0"
    assert pk.version_document(doc, "2.0.0") is None
    assert pk.search_matches(doc, "cache") and pk.search_matches(doc, "A D1.1")
    assert not pk.search_matches(doc, "nothing")
    assert pk.search_object(doc)["package"]["version"] == "1.1.0"


# ---------------------------------------------------------------------------- publish bodies

def publish_body(name: str = "@s/a", version: str = "1.0.0", data: bytes = DATA,
                 **changes: Any) -> dict[str, Any]:
    integrity = "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()
    body: dict[str, Any] = {
        "_id": name, "name": name, "dist-tags": {"latest": version}, "access": "public",
        "versions": {version: {"name": name, "version": version,
                               "dist": {"integrity": integrity, "shasum": hashlib.sha1(data).hexdigest(),
                                        "tarball": f"http://x/{name}/-/{name}-{version}.tgz"}}},
        "_attachments": {f"{name}-{version}.tgz": {"content_type": "application/octet-stream",
                                                   "data": base64.b64encode(data).decode(),
                                                   "length": len(data)}},
    }
    body.update(changes)
    return body


def test_parse_publish_ok() -> None:
    release = pub.parse_publish(json.dumps(publish_body()).encode(), "@s/a")
    assert (release.name, release.version, release.filename) == ("@s/a", "1.0.0", "a-1.0.0.tgz")
    assert release.tarball == DATA and release.integrity == SRI and release.shasum == SHA1
    assert release.tags == {"latest": "1.0.0"}
    assert release.manifest["dist"]["integrity"] == SRI


def _bad(body: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    node = body
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return body


@pytest.mark.parametrize("mutate, status, fragment", [
    (lambda b: _bad(b, ("name",), "@S/A"), 400, "invalid package name"),
    (lambda b: _bad(b, ("name",), "@s/b"), 400, "does not match the URL"),
    (lambda b: b | {"versions": {}}, 400, "exactly one version"),
    (lambda b: b | {"_attachments": {}}, 400, "exactly one attachment"),
    (lambda b: b | {"_attachments": {"other.tgz": b["_attachments"]["@s/a-1.0.0.tgz"]}}, 400,
     "does not match"),
    (lambda b: _bad(b, ("versions", "1.0.0", "version"), "1.0"), 400, "repeat the package name"),
    (lambda b: b | {"dist-tags": {"latest": "2.0.0"}}, 400, "dist-tags"),
    (lambda b: b | {"dist-tags": {"1.0.0": "1.0.0"}}, 400, "invalid dist-tag"),
])
def test_parse_publish_rejects(mutate: Any, status: int, fragment: str) -> None:
    with pytest.raises(FormatError) as info:
        pub.parse_publish(mutate(publish_body()), "@s/a")
    assert info.value.status == status and fragment in info.value.message


@pytest.mark.parametrize("attachment, status, fragment", [
    ({"data": "!!!not base64"}, 400, "base64"),
    ({"data": base64.b64encode(DATA).decode(), "length": 3}, 400, "length"),
    ({"data": ""}, 400, "empty"),
    ({}, 400, "no base64"),
    ({"data": "A" * 100}, 413, "larger"),
])
def test_decode_attachment(attachment: dict[str, Any], status: int, fragment: str) -> None:
    with pytest.raises(FormatError) as info:
        pub.decode_attachment(attachment, max_size=50)
    assert info.value.status == status and fragment in info.value.message


@pytest.mark.parametrize("integrity, shasum, ok", [
    (SRI, SHA1, True),
    (SRI, None, True),
    (None, SHA1, True),
    (None, None, True),
    (f"{SRI} sha1-{base64.b64encode(hashlib.sha1(DATA).digest()).decode()}", None, True),
    ("sha512-" + base64.b64encode(hashlib.sha512(b"other").digest()).decode(), None, False),
    (SRI, "0" * 40, False),
    ("md5-whatever", None, True),            # unknown algorithms are not checked
])
def test_verify_digests(integrity: str | None, shasum: str | None, ok: bool) -> None:
    if ok:
        pub.verify_digests(DATA, integrity, shasum)
    else:
        with pytest.raises(FormatError):
            pub.verify_digests(DATA, integrity, shasum)


@pytest.mark.parametrize("name, ok", [
    ("a", True), ("@scope/pkg", True), ("a.b-c_d~e", True), ("A", False), ("_a", False),
    (".a", False), ("a b", False), ("node_modules", False), ("@s/.a", False), ("x" * 215, False),
    ("", False), (None, False),
])
def test_check_name(name: Any, ok: bool) -> None:
    if ok:
        assert pub.check_name(name) == name
    else:
        with pytest.raises(FormatError):
            pub.check_name(name)


@pytest.mark.parametrize("version, ok", [
    ("1.0.0", True), ("0.0.1-alpha.1+build.5", True), ("1.0", False), ("01.0.0", False),
    ("v1.0.0", False), ("1.0.0-", False), (1, False),
])
def test_check_version(version: Any, ok: bool) -> None:
    if ok:
        assert pub.check_version(version) == version
    else:
        with pytest.raises(FormatError):
            pub.check_version(version)


@pytest.mark.parametrize("body, expected", [
    (b'"1.2.3"', "1.2.3"), (b"1.2.3", "1.2.3"),
])
def test_parse_tag_body(body: bytes, expected: str) -> None:
    assert pub.parse_tag_body(body) == expected


def test_is_publish() -> None:
    assert pub.is_publish(publish_body())
    assert not pub.is_publish({"versions": {}})


# ---------------------------------------------------------------------------- engine SRI check

@pytest.mark.parametrize("sri, data, ok", [
    (SRI, DATA, True),
    (SRI, DATA + b"x", False),
    (f"sha1-{base64.b64encode(hashlib.sha1(DATA).digest()).decode()}", DATA, True),
    (f"sha1-{base64.b64encode(hashlib.sha1(b'no').digest()).decode()} {SRI}", DATA, True),  # strongest wins
])
def test_integrity_check(sri: str, data: bytes, ok: bool) -> None:
    check = IntegrityCheck.parse(sri)
    assert check is not None
    check.update(data[:5])
    check.update(data[5:])
    if ok:
        check.verify()
    else:
        with pytest.raises(IntegrityMismatch):
            check.verify()


def test_integrity_check_none_and_malformed() -> None:
    assert IntegrityCheck.parse(None) is None
    assert IntegrityCheck.parse("md5-abc") is None
    with pytest.raises(IntegrityMismatch):
        IntegrityCheck.parse("sha512-!!!")


# ---------------------------------------------------------------------------- default upstream

def test_default_upstream_is_what_npm_prints(monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil
    import subprocess

    from depot.registry import npm as npm_format
    npm = shutil.which("npm")
    assert npm, "npm is not installed"
    printed = subprocess.run([npm, "config", "get", "registry"], capture_output=True, text=True,
                             timeout=30).stdout.strip().rstrip("/")
    npm_format.npm_config_registry.cache_clear()
    assert npm_format.Npm.default_upstream() == printed
    npm_format.npm_config_registry.cache_clear()
    monkeypatch.setattr(npm_format.shutil, "which", lambda _: None)
    assert npm_format.Npm.default_upstream() is None
    npm_format.npm_config_registry.cache_clear()


# ---------------------------------------------------------------------------- engine catalog CAS

def test_catalog_swap(tmp_path: Any) -> None:
    import asyncio

    from depot.cache.catalog import Catalog
    from depot.cache.db import Database

    async def scenario() -> list[bool]:
        catalog = Catalog(Database(tmp_path / "db.sqlite"))
        return [
            await catalog.swap("r", "p", None, "a" * 64, 1),          # create
            await catalog.swap("r", "p", None, "b" * 64, 1),          # exists already
            await catalog.swap("r", "p", "b" * 64, "c" * 64, 1),      # stale expectation
            await catalog.swap("r", "p", "a" * 64, "c" * 64, 1),      # current: swapped
            (await catalog.get("r", "p")).digest == "c" * 64,         # type: ignore[union-attr]
        ]
    assert asyncio.run(scenario()) == [True, False, False, True, True]
