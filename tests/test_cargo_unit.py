"""Cargo format mechanics without a server: index paths, names, publish JSON, merging, policy hooks."""
from __future__ import annotations

import json

import pytest

from depot.registry import cargo_index as ci
from depot.registry.cargo import Cargo


def test_index_paths_and_dl_templates() -> None:
    assert [ci.index_path(n) for n in ("a", "ab", "Abc", "Serde_Json")] == ["1/a", "2/ab", "3/a/abc", "se/rd/serde_json"]
    assert ci.download_url("https://static.example/crates", "Serde", "1.0.0", "c" * 64) == \
        "https://static.example/crates/Serde/1.0.0/download"
    assert ci.download_url("https://x/{prefix}/{lowerprefix}/{crate}-{version}-{sha256-checksum}", "Serde", "1.0.0",
                           "ab") == "https://x/Se/rd/se/rd/Serde-1.0.0-ab"


def test_names_compare_like_crates_io() -> None:
    assert ci.canonical("Foo_Bar") == ci.canonical("foo-bar")
    for bad in ("1abc", "a/b", "", "a" * 65, "ä"):
        with pytest.raises(ci.CargoError):
            ci.check_name(bad)


def test_publish_json_becomes_an_index_line() -> None:
    meta = {"name": "app", "vers": "1.0.0", "links": None, "rust_version": "1.70",
            "deps": [{"name": "serde", "version_req": "^1", "features": ["derive"], "optional": True,
                      "default_features": False, "target": None, "kind": "normal", "registry": None,
                      "explicit_name_in_toml": "ser"}],
            "features": {"default": ["std"], "std": [], "json": ["dep:serde"]}}
    line = ci.index_line(ci.Upload("app", "1.0.0", meta, b"crate"))
    assert line["deps"] == [{"name": "ser", "req": "^1", "features": ["derive"], "optional": True,
                             "default_features": False, "target": None, "kind": "normal", "registry": None,
                             "package": "serde"}]
    assert line["features"] == {"default": ["std"], "std": []} and line["features2"] == {"json": ["dep:serde"]}
    assert line["v"] == 2 and line["rust_version"] == "1.70" and line["yanked"] is False


def test_group_merge_keeps_the_first_member_per_version_byte_for_byte() -> None:
    first = b'{"name":"a","vers":"1.0.0","cksum":"1"}\n'
    second = b'{"name":"a","vers":"1.0.0","cksum":"2"}\n{ "name": "a", "vers": "1.1.0", "cksum": "3" }\n'
    assert ci.merge_index([first, second]) == first + b'{ "name": "a", "vers": "1.1.0", "cksum": "3" }\n'


def test_yank_and_duplicates() -> None:
    body = ci.add_line(None, {"name": "a", "vers": "1.0.0"})
    with pytest.raises(ci.CargoError, match="already uploaded"):
        ci.add_line(body, {"name": "a", "vers": "1.0.0+meta"})
    assert json.loads(ci.set_yanked(body, "1.0.0", True))["yanked"] is True
    with pytest.raises(ci.CargoError):
        ci.set_yanked(body, "2.0.0", True)


def test_policy_hooks() -> None:
    fmt = Cargo()
    body = b'{"name":"a-b","vers":"1.0.0"}\n{"name":"a-b","vers":"1.1.0"}\n'
    assert [(v.package, v.version, v.published) for v in fmt.metadata_versions("3/a/a-b", body) or []] == \
        [("a-b", "1.0.0", None), ("a-b", "1.1.0", None)]   # no publish times in index lines
    assert fmt.metadata_versions("config.json", b"{}") is None
    assert fmt.filter_metadata("3/a/a-b", body, frozenset({("a-b", "1.1.0")})) == b'{"name":"a-b","vers":"1.0.0"}\n'
    assert fmt.package_of("api/v1/crates/a-b/1.0.0/download") == ("a-b", "1.0.0")
    assert fmt.package_of("crates/a-b/1.0.0.crate") == ("a-b", "1.0.0")


def test_snippets_name_the_index() -> None:
    from depot.registry.repo import RepoConfig
    out = Cargo.snippets(RepoConfig("cargo", "cargo", "group"), "http://h/cargo", "h", True)
    assert 'index = "sparse+http://h/cargo/"' in out[0][1] and "cargo publish --registry depot" in out[1][1]
    assert len(Cargo.snippets(RepoConfig("cargo-remote", "cargo", "proxy"), "http://h/c", "h", True)) == 1
