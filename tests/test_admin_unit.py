"""Pure parts of the admin work: retention decisions, their config validation, and the
package_of() hooks that group stored files into (package, version) for every format."""
from __future__ import annotations

import pytest

from depot.cache.retention import Cleanup, Protection, Retention, VersionFacts, to_delete
from depot.proxy.config import ConfigError, validate_repositories
from depot.registry import FORMATS

DAY = 86400.0


def facts(n: int, prefix: str = "build-", **kw) -> list[VersionFacts]:
    return [VersionFacts("app", f"{prefix}{i}", created=i * DAY, **kw) for i in range(n)]


def test_keep_n_and_name_regex_keep() -> None:
    versions = facts(10) + [VersionFacts("app", "release-1", created=0.5 * DAY)]
    doomed = {v.version for v in to_delete(Cleanup(keep_n=3, name_regex_keep="^release-"), versions, 100 * DAY)}
    assert doomed == {f"build-{i}" for i in range(7)}


def test_older_than_name_regex_and_recently_used() -> None:
    versions = facts(10)
    at = 10 * DAY
    assert {v.version for v in to_delete(Cleanup(older_than=5 * DAY), versions, at)} == \
        {f"build-{i}" for i in range(6)}                                    # created at or before day 5
    assert {v.version for v in to_delete(Cleanup(name_regex="-[13]$"), versions, at)} == {"build-1", "build-3"}
    used = [VersionFacts("app", "old", created=0, last_download=at - DAY)]
    assert to_delete(Cleanup(keep_n=0, keep_recently_used=7 * DAY), used, at) == []
    assert to_delete(Cleanup(keep_n=0, keep_recently_used=0.5 * DAY), used, at) == used


def test_protection_duplicates_and_immutability() -> None:
    rules = Retention(duplicates="deny", duplicates_exception_regex=r"-SNAPSHOT$",
                      protected=(Protection("^stable$", "admin"), Protection("^core-", "delete")),
                      immutable_tags=("^v[0-9]",))
    assert rules.protection("team/app", "stable") == "admin"
    assert rules.protection("core-lib", "1.0") == "delete"
    assert rules.protection("other", "1.0") is None
    assert rules.duplicates_denied("lib", "1.0") and not rules.duplicates_denied("lib", "1.0-SNAPSHOT")
    assert rules.immutable("img", "v2") and not rules.immutable("img", "latest")
    assert not Retention().duplicates_denied("lib", "1.0")


@pytest.mark.parametrize("raw, key", [
    ({"cleanup": {"keep_n": -1}}, "cleanup.keep_n"),
    ({"cleanup": {"unused_for": "90d"}}, "cleanup.unused_for"),            # a hosted repository
    ({"cleanup": {"name_regex": "("}}, "cleanup.name_regex"),
    ({"duplicates": "sometimes"}, "duplicates"),
    ({"protected": [{"pattern": "x", "perm": "read"}]}, "protected[0].perm"),
    ({"immutable_tags": "v1"}, "immutable_tags"),
])
def test_bad_retention_config_names_the_key(raw: dict, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        validate_repositories({"r": {"format": "generic", "type": "hosted", **raw}}, resolve_upstreams=False)
    assert key in str(info.value)


def test_retention_config_parsed() -> None:
    repos = validate_repositories({
        "h": {"format": "oci", "type": "hosted", "cleanup": {"keep_n": 5, "older_than": "30d",
                                                              "name_regex_keep": "^release-", "schedule": "1h"},
              "protected": ["^stable$", {"pattern": "^rc-", "perm": "delete"}], "immutable_tags": ["^v"]},
        "p": {"format": "generic", "type": "proxy", "upstream": "http://127.0.0.1:1/",
              "cleanup": {"unused_for": "90d"}},
    }, resolve_upstreams=False)
    h, p = repos["h"].retention, repos["p"].retention
    assert h.cleanup == Cleanup(keep_n=5, older_than=30 * DAY, name_regex_keep="^release-", schedule=3600.0)
    assert h.protected == (Protection("^stable$", "admin"), Protection("^rc-", "delete"))
    assert p.cleanup.unused_for == 90 * DAY and p.cleanup.active


@pytest.mark.parametrize("fmt, path, expected", [
    ("pypi", "adm-pkg/adm_pkg-1.0-py3-none-any.whl", ("adm-pkg", "1.0")),
    ("pypi", "adm-pkg/adm_pkg-1.0.tar.gz.metadata", ("adm-pkg", "1.0")),
    ("pypi", "files/abc123/Foo_Bar-2.0rc1.tar.gz", ("foo-bar", "2.0rc1")),
    ("pypi", "simple/adm-pkg/", None),
    ("npm", "@adm/lib/-/lib-1.0.0.tgz", ("@adm/lib", "1.0.0")),
    ("npm", "left-pad/-/left-pad-1.0.0-beta.1.tgz", ("left-pad", "1.0.0-beta.1")),
    ("npm", "tarball/@s/x/x-2.0.0.tgz", ("@s/x", "2.0.0")),
    ("npm", "left-pad/package.json", None),
    ("oci", "team/app/_tags/v1", ("team/app", "v1")),
    ("oci", "team/app/_manifests/sha256:abc", None),
    ("oci", "_blobs/sha256:abc", None),
    ("generic", "tools/a.txt", ("tools/a.txt", "")),
])
def test_package_of_groups_stored_files(fmt: str, path: str, expected) -> None:
    assert FORMATS[fmt]().package_of(path) == expected
