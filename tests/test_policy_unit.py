"""The supply-chain policy's decisions (cache/gate.py, cache/osv.py) and the npm hook, without I/O."""
from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pytest

from depot.cache import osv
from depot.cache.gate import Judge, Policy, parse_policy, parse_rule, version_in
from depot.proxy.units import parse_duration
from depot.registry.npm_policy import filter_packument, packument_versions

DAY = 86400.0


@pytest.mark.parametrize("scheme,version,spec,expected", [
    ("pep440", "1.0", "<1.0.1", True), ("pep440", "1.0.1", "<1.0.1", False), ("pep440", "2.0rc1", ">=2.0rc1", True),
    ("semver", "1.2.3", "^1.2.0", True), ("semver", "2.0.0", "^1.2.0", False), ("semver", "1.0.0", "<1.0.1", True),
    ("maven", "1.5", "[1.0,2.0)", True), ("maven", "2.0", "[1.0,2.0)", False), ("maven", "0.9", "(,1.0]", True),
    ("generic", "1.10", ">1.9", True), ("generic", "1.9", ">=1.10", False), ("generic", "3", "==3", True),
])
def test_version_ranges_in_each_format_syntax(scheme, version, spec, expected):
    assert version_in(scheme, version, spec) is expected


def test_rules_parse_names_scopes_and_ranges():
    assert parse_rule("left-pad").spec is None
    scoped = parse_rule("@scope/pkg@^2")
    assert (scoped.pattern, scoped.spec) == ("@scope/pkg", "^2")
    assert parse_rule("pkg@<1.0.1").matches("semver", "pkg", "1.0.0")
    assert not parse_rule("pkg@<1.0.1").matches("semver", "pkg", "1.0.1")
    assert parse_rule("evil-*").matches("generic", "Evil-Thing", "9")


def test_cooldown_deny_allow_exempt():
    policy = parse_policy({"cooldown": "3d", "deny": ["bad"], "exempt": ["urgent"]}, parse_duration)
    judge = Judge(policy, "semver")
    now = time.time()
    assert judge.verdict("pkg", "1.0.0", now - 10 * DAY, now) is None
    young = judge.verdict("pkg", "1.1.0", now - 3600, now)
    assert young is not None and young.rule == "cooldown" and young.until == pytest.approx(now - 3600 + 3 * DAY)
    assert "allowed from" in young.message("pkg", "1.1.0") and young.header().startswith("cooldown until ")
    assert judge.verdict("urgent", "1.1.0", now - 3600, now) is None
    assert judge.verdict("bad", "1.0.0", now - 100 * DAY, now).rule == "deny"
    assert judge.verdict("pkg", "1.1.0", None, now) is None        # no publish time: no cooldown
    curated = Judge(parse_policy({"allow": ["good-*"]}, parse_duration), "semver")
    assert curated.verdict("good-one", "1", None) is None and curated.verdict("other", "1", None).rule == "allow"


def test_repository_rules_add_to_global_ones():
    merged = parse_policy({"deny": ["a"]}, parse_duration).merged(
        parse_policy({"deny": ["b"], "mode": "report"}, parse_duration))
    assert [r.pattern for r in merged.deny] == ["a", "b"] and merged.mode == "report"


@pytest.mark.parametrize("raw,key", [({"cooldown": "soon"}, "cooldown"), ({"mode": "maybe"}, "mode"),
                                     ({"deny": "x"}, "deny"), ({"typo": 1}, "typo")])
def test_bad_policy_names_the_key(raw, key):
    with pytest.raises(ValueError, match=f"^{key}: "):
        parse_policy(raw, parse_duration)


def test_osv_dump_becomes_deny_records(tmp_path: Path):
    dump = tmp_path / "osv"
    dump.mkdir()
    (dump / "MAL-1.json").write_text(json.dumps({"id": "MAL-2026-1", "affected": [
        {"package": {"ecosystem": "npm", "name": "evil-pkg"},
         "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}]}]}]}))
    (dump / "MAL-2.json").write_text(json.dumps({"id": "MAL-2026-2", "affected": [
        {"package": {"ecosystem": "PyPI", "name": "pkg"},
         "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1.0.1"}]}]}]}))
    (dump / "GHSA-x.json").write_text(json.dumps({"id": "GHSA-x", "database_specific": {"severity": "HIGH"},
                                                  "affected": [{"package": {"ecosystem": "npm", "name": "vuln"},
                                                                "versions": ["2.0.0"]}]}))
    conn = sqlite3.connect(":memory:", isolation_level=None)
    assert osv.import_into(conn, dump) == (3, 3)
    loaded = osv.load(conn)
    assert set(loaded) == {"npm", "pypi"} and "vuln" not in loaded["npm"]      # not malicious, no floor
    npm = Judge(Policy(), "semver", loaded["npm"])
    assert npm.verdict("evil-pkg", "9.9.9", None).rule == "malicious"
    pypi = Judge(Policy(), "pep440", loaded["pypi"])
    assert pypi.verdict("pkg", "1.0", None) is not None and pypi.verdict("pkg", "1.0.1", None) is None
    assert "vuln" in osv.load(conn, "HIGH")["npm"]


def test_npm_packument_filter_keeps_tags_consistent():
    doc = {"name": "pkg", "dist-tags": {"latest": "1.1.0", "next": "2.0.0-rc.1"},
           "versions": {"1.0.0": {}, "1.1.0": {}, "2.0.0-rc.1": {}},
           "time": {"created": "2026-01-01T00:00:00Z", "1.0.0": "2026-11-01T00:00:00.000Z",
                    "1.1.0": "2026-12-01T10:00:00.000Z", "2.0.0-rc.1": "2026-12-01T11:00:00Z"}}
    body = json.dumps(doc).encode()
    infos = {v.version: v.published for v in packument_versions(body)}
    assert infos["1.0.0"] < infos["1.1.0"]
    out = json.loads(filter_packument(body, frozenset({("pkg", "1.1.0"), ("pkg", "2.0.0-rc.1")})))
    assert list(out["versions"]) == ["1.0.0"] and out["dist-tags"] == {"latest": "1.0.0"}
    assert "1.1.0" not in out["time"] and "created" in out["time"]
