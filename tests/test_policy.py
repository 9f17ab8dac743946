"""Supply-chain policy at the proxy (issue 18) with real clients: deny/allow by pattern for generic
files (curl) and OCI tags (skopeo), OSV malicious-package records, report mode, audit and metrics.
npm and PyPI cooldown tests live in tests/test_policy_npm_pypi.py."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests

from depot_process import DepotProcess
from oci_fixtures import Layout
from test_oci import Registry, host, skopeo


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    up = Registry(tmp_path_factory.mktemp("registry"))
    built = Layout(tmp_path_factory.mktemp("layout"))
    for tag in ("1.0", "2.0", "release-7"):
        built.tag(built.image({"f.txt": f"tag {tag}\n".encode()}), tag)
    for tag in ("1.0", "2.0", "release-7"):
        skopeo("copy", "--dest-tls-verify=false", f"oci:{built.root}:{tag}",
               f"docker://127.0.0.1:{up.port}/team/app:{tag}")
    yield up
    up.stop()


def start(tmp: Path, repos: dict[str, Any], policy: dict[str, Any]) -> DepotProcess:
    return DepotProcess(tmp, repos, extra={"policy": policy})


def test_oci_tag_rules_hide_tags_and_refuse_pulls(tmp_path: Path, registry: Registry) -> None:
    depot = start(tmp_path / "d", {"hub": {"format": "oci", "type": "proxy", "upstream": registry.url}},
                  {"deny": ["team/app@<2"]})
    try:
        listed = json.loads(skopeo("list-tags", "--tls-verify=false", f"docker://{host(depot)}/hub/team/app"))
        assert sorted(listed["Tags"]) == ["2.0", "release-7"]
        refused = subprocess.run(["skopeo", "inspect", "--tls-verify=false", f"docker://{host(depot)}/hub/team/app:1.0"],
                                 capture_output=True, text=True, timeout=60)
        assert refused.returncode != 0 and "denied" in refused.stderr.lower()
        raw = requests.get(f"{depot.url}/v2/hub/team/app/manifests/1.0")
        assert raw.status_code == 403 and raw.json()["errors"][0]["code"] == "DENIED"
        assert "team/app@<2" in raw.json()["errors"][0]["message"] and raw.headers["X-Depot-Policy"].startswith("deny")
        skopeo("inspect", "--tls-verify=false", f"docker://{host(depot)}/hub/team/app:2.0")
        metrics = requests.get(f"{depot.url}/-/metrics").text
        assert 'depot_policy_blocked_total{format="oci",mode="enforce",repository="hub",rule="deny"}' in metrics
        recent = requests.get(f"{depot.url}/-/api/policy").json()["decisions"]
        assert {(d["action"], d["package"], d["version"], d["rule"]) for d in recent} >= {
            ("refused", "team/app", "1.0", "deny"), ("hidden", "team/app", "1.0", "deny")}
        assert requests.get(f"{depot.url}/-/api/policy?limit=0").status_code == 400
        audit = (depot.data_dir / "audit.log").read_text()
        assert '"action": "policy-refused"' in audit and '"package": "team/app"' in audit
    finally:
        depot.stop()


def test_curated_allow_list_and_report_mode(tmp_path: Path, upstream: Any) -> None:
    upstream.put("tools/a/1.0/a.tgz", b"a\n")
    upstream.put("tools/b/1.0/b.tgz", b"b\n")
    repos = {"files": {"format": "generic", "type": "proxy", "upstream": upstream.url + "/"},
             "seen": {"format": "generic", "type": "proxy", "upstream": upstream.url + "/",
                      "policy": {"mode": "report"}}}
    depot = start(tmp_path / "d", repos, {"allow": ["tools/a/*"]})
    try:
        assert requests.get(f"{depot.url}/files/tools/a/1.0/a.tgz").content == b"a\n"
        refused = requests.get(f"{depot.url}/files/tools/b/1.0/b.tgz")
        assert refused.status_code == 403 and "not in the allow list" in refused.text
        assert upstream.count("tools/b/1.0/b.tgz") == 0               # refused before any fetch
        reported = requests.get(f"{depot.url}/seen/tools/b/1.0/b.tgz")  # report mode: served, counted
        assert reported.status_code == 200 and reported.content == b"b\n"
        metrics = requests.get(f"{depot.url}/-/metrics").text
        assert 'depot_policy_blocked_total{format="generic",mode="report",repository="seen",rule="allow"} 1.0' in metrics
    finally:
        depot.stop()


def test_osv_dump_blocks_malicious_files(tmp_path: Path, upstream: Any) -> None:
    upstream.put("evil-pkg/1.0/evil.tgz", b"evil\n")
    dump = tmp_path / "osv"
    dump.mkdir()
    (dump / "MAL-1.json").write_text(json.dumps({"id": "MAL-2026-0001", "affected": [
        {"package": {"ecosystem": "npm", "name": "evil-pkg"}, "versions": []}]}))
    depot = start(tmp_path / "d", {"files": {"format": "generic", "type": "proxy", "upstream": upstream.url + "/"}},
                  {})
    try:
        out = depot.run_cli("policy", "import", str(dump))
        assert "1 documents" in out.stdout
        check = depot.run_cli("policy", "check", "npm", "evil-pkg", "1.0.0", check=False)
        assert check.returncode == 1 and "MAL-2026-0001" in check.stdout
        assert depot.run_cli("policy", "check", "npm", "good-pkg", "1.0.0").stdout.startswith("allowed")
    finally:
        depot.stop()
