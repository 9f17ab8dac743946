"""The UI page of recent supply-chain policy decisions (issue 18): after a real npm client is
held back by the release cooldown, /-/ui/policy lists the decision (time, repository, package,
version, rule, reason, blocked or would-block in report mode), filters by repository, is linked
from the navigation, and follows the one visibility rule: anonymous callers never see the
decisions of a repository they cannot read."""
from __future__ import annotations

import base64
import html
import re
import time
from pathlib import Path
from typing import Any

import requests

from depot_process import DepotProcess
from npm_fixtures import new_project
from test_policy_npm_pypi import anonymous_npm, npm_upstream  # noqa: F401  (fixture)

ADMIN = {"Authorization": "Basic " + base64.b64encode(f"admin:{DepotProcess.ADMIN_PASSWORD}".encode()).decode()}


def decision_rows(page: str) -> list[dict[str, str]]:
    """The decisions table of the page, one dict per row."""
    rows = []
    for row in re.findall(r'<tr class="decision">(.*?)</tr>', page, re.S):
        cells = [html.unescape(re.sub(r"<[^>]+>", "", c)) for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
        rows.append(dict(zip(("time", "outcome", "repository", "format", "package", "version", "rule", "reason"),
                             cells)))
    return rows


def test_policy_page_lists_what_npm_was_refused_per_visibility(tmp_path: Path, npm_upstream: Any) -> None:  # noqa: F811
    remote = {"format": "npm", "type": "proxy", "upstream": npm_upstream.url + "/"}
    repos = {"npm-remote": remote, "npm-report": {**remote, "policy": {"mode": "report"}},
             "npm-private": {**remote, "anonymous_read": False}}
    depot = DepotProcess(tmp_path / "d", repos, secure=True, extra={"policy": {"cooldown": "3d"}})
    try:
        npm = anonymous_npm(tmp_path / "npm", f"{depot.url}/npm-remote/")
        pinned = npm.run("install", "cool-pkg@1.1.0", cwd=new_project(tmp_path / "p1", {}))
        assert pinned.returncode != 0                                   # the cooldown held it back
        npm.ok("view", "cool-pkg", "dist-tags", "--json", registry=f"{depot.url}/npm-report/")
        private = requests.get(f"{depot.url}/npm-private/cool-pkg/-/cool-pkg-1.1.0.tgz", headers=ADMIN, timeout=30)
        assert private.status_code == 403 and "cooldown" in private.text

        index = requests.get(f"{depot.url}/-/ui/", timeout=30).text
        assert '<a href="./policy">policy decisions</a>' in index      # linked from the navigation
        page = requests.get(f"{depot.url}/-/ui/policy", timeout=30).text
        rows = decision_rows(page)
        blocked = [r for r in rows if r["repository"] == "npm-remote" and r["version"] == "1.1.0"]
        assert blocked and all(r["package"] == "cool-pkg" and r["rule"] == "cooldown" for r in blocked)
        assert blocked[0]["outcome"].startswith("blocked") and "cooldown" in blocked[0]["reason"]
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", blocked[0]["time"])
        reported = [r for r in rows if r["repository"] == "npm-report"]
        assert reported and reported[0]["outcome"].startswith("would block") and reported[0]["version"] == "1.1.0"
        # anonymous: nothing of the repository it cannot read, not even its name in the filter
        assert "npm-private" not in page
        assert decision_rows(requests.get(f"{depot.url}/-/ui/policy?repository=npm-private", timeout=30).text) == []
        api = requests.get(f"{depot.url}/-/api/policy", timeout=30).json()["decisions"]
        assert {(d["repository"], d["version"]) for d in api} == {(r["repository"], r["version"]) for r in rows}

        mine = decision_rows(requests.get(f"{depot.url}/-/ui/policy?repository=npm-private", headers=ADMIN,
                                          timeout=30).text)
        assert mine and {r["repository"] for r in mine} == {"npm-private"}
        assert any(r["outcome"] == "blocked (refused)" and r["version"] == "1.1.0" for r in mine)
        everything = decision_rows(requests.get(f"{depot.url}/-/ui/policy", headers=ADMIN, timeout=30).text)
        assert {r["repository"] for r in everything} == {"npm-remote", "npm-report", "npm-private"}
        only = decision_rows(requests.get(f"{depot.url}/-/ui/policy?repository=npm-report", timeout=30).text)
        assert only and {r["repository"] for r in only} == {"npm-report"}
    finally:
        depot.stop()


def test_every_workers_decisions_are_listed(tmp_path: Path, upstream: Any) -> None:
    """With 2 workers, a request lands on either; the page (whichever worker renders it) and the
    API list the decisions all workers made."""
    repos = {"files": {"format": "generic", "type": "proxy", "upstream": upstream.url + "/"}}
    depot = DepotProcess(tmp_path / "d", repos, workers=2, extra={"policy": {"deny": ["tools/*"]}})
    try:
        names = [f"tools/t{i}.tgz" for i in range(12)]
        for name in names:      # a new connection each: the kernel spreads them over the workers
            refused = requests.get(f"{depot.url}/files/{name}", headers={"Connection": "close"}, timeout=30)
            assert refused.status_code == 403 and refused.headers["X-Depot-Policy"].startswith("deny")
        assert upstream.count("/tools/t0.tgz") == 0
        deadline = time.monotonic() + 15
        while True:
            pages = [decision_rows(requests.get(f"{depot.url}/-/ui/policy?repository=files",
                                                headers={"Connection": "close"}, timeout=30).text) for _ in range(4)]
            apis = [requests.get(f"{depot.url}/-/api/policy", headers={"Connection": "close"}, timeout=30).json()
                    for _ in range(4)]
            listed = [sorted(r["package"] for r in rows) for rows in pages]
            listed += [sorted({d["package"] for d in api["decisions"]}) for api in apis]
            if all(found == sorted(names) for found in listed) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert all(found == sorted(names) for found in listed), listed
        assert all(r["rule"] == "deny" and r["outcome"] == "blocked (refused)" for r in pages[0])
    finally:
        depot.stop()
