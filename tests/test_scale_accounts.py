"""Users and tokens across several nodes: with the metadata in PostgreSQL, accounts, tokens,
revocation, lockout and the audit log are the cluster's, not one node's (real twine and npm,
the `depot` CLI of node A, two depot processes on one PostgreSQL and one Ceph RGW bucket)."""
from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import requests

from test_scale import cluster  # noqa: F401  (the fixture: nodes on one database and bucket)

PASSWORD = "ci-password-123"


def _cli(node: Any, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """`depot <args>` with the node's config and environment (its storage keys)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEPOT_")}
    env.update({k: v for k, v in node.env.items() if k != "DEPOT_ADMIN_PASSWORD"})
    done = subprocess.run(node.command(*args), input=stdin, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def _basic(user: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()}


def _twine(url: str, user: str, secret: str, *files: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "TWINE_", "DEPOT_"))}
    return subprocess.run([str(Path(sys.executable).parent / "twine"), "upload", "--repository-url", url,
                           "-u", user, "-p", secret, "--non-interactive", "--disable-progress-bar",
                           *map(str, files)], capture_output=True, text=True, env=env, timeout=120)


def test_user_and_token_made_on_node_a_work_on_node_b_until_revoked(cluster, tmp_path):  # noqa: F811
    """`depot user add` / `token create` against node A; twine and npm publish through node B
    with that token; `depot token revoke` on A; B answers 401 to the very next request."""
    from npm_fixtures import NpmCli, make_package
    from pypi_fixtures import build_dist
    access = {"ci": "write"}
    a, b = cluster(2, extra={"open_access": False, "repositories": {"py": {"format": "pypi", "type": "hosted", "access": access},
                                              "js": {"format": "npm", "type": "hosted", "access": access}}})
    _cli(a, "user", "add", "ci", "--password-stdin", stdin=PASSWORD + "\n")
    made = _cli(a, "token", "create", "--user", "ci", "--perm", "write", "--repo", "py", "--repo", "js",
                "--description", "ci on node b").stdout.strip().splitlines()
    token_id, secret = made[0].split()[1], made[-1]

    # the password and the token work on node B at once
    assert requests.get(f"{b.url}/py/simple/", headers=_basic("ci", PASSWORD), timeout=30).status_code == 200
    dist = build_dist(tmp_path, "dpt-accounts", "1.0")
    up = _twine(f"{b.url}/py/", "ci", secret, dist.wheel, dist.sdist)
    assert up.returncode == 0, up.stdout + up.stderr
    npm = NpmCli(tmp_path / "npm-b", f"{b.url}/js/", token=secret)
    npm.ok("publish", cwd=make_package(tmp_path / "src1", "dscale-acc", "1.0.0"))
    assert requests.get(f"{a.url}/js/dscale-acc", headers={"Authorization": f"Bearer {secret}"},
                        timeout=30).json()["dist-tags"]["latest"] == "1.0.0"
    # B used it: `token list` on A shows the last use
    listed = _cli(a, "token", "list").stdout
    row = next(line for line in listed.splitlines() if line.startswith(token_id))
    assert re.search(r"py,js +- +\d{4}-\d\d-\d\d \d\d:\d\d +active +ci on node b$", row), row

    # revoked on A: refused by B at once (B's credential cache is dropped by the shared generation)
    _cli(a, "token", "revoke", token_id)
    refused = requests.get(f"{b.url}/py/simple/", headers=_basic("ci", secret), timeout=30)
    assert refused.status_code == 401
    dist2 = build_dist(tmp_path, "dpt-accounts", "2.0")
    again = _twine(f"{b.url}/py/", "ci", secret, dist2.wheel)
    assert again.returncode != 0 and "401" in again.stdout + again.stderr
    denied = npm.run("publish", cwd=make_package(tmp_path / "src2", "dscale-acc", "2.0.0"))
    assert denied.returncode != 0 and "E401" in denied.stdout + denied.stderr
    assert requests.get(f"{b.url}/py/simple/dpt-accounts/", headers=_basic("ci", PASSWORD),
                        timeout=30).text.count("dpt_accounts-2.0") == 0
    # a user deleted on A loses their password on B too
    _cli(a, "user", "delete", "ci")
    assert requests.get(f"{b.url}/py/simple/", headers=_basic("ci", PASSWORD), timeout=30).status_code == 401


def test_lockout_docker_tokens_and_audit_are_the_clusters(cluster):  # noqa: F811
    """Wrong passwords on A lock the name on B; a Docker token from B's token service works on
    A; node A's audit endpoint shows what happened on B."""
    a, b = cluster(2, extra={"open_access": False, "login": {"max_failures": 3, "lockout": "60s"},
                             "repositories": {"images": {"format": "oci", "type": "hosted",
                                                         "access": {"ci": "write"}}}})
    _cli(b, "user", "add", "ci", "--password-stdin", stdin=PASSWORD + "\n")
    service = {"service": "depot", "scope": "repository:images/x:pull,push"}
    for _ in range(3):
        wrong = requests.get(f"{a.url}/v2/token", params=service, headers=_basic("ci", "wrong-password"), timeout=30)
        assert wrong.status_code == 401
    locked = requests.get(f"{b.url}/v2/token", params=service, headers=_basic("ci", PASSWORD), timeout=30)
    assert locked.status_code == 401                     # the right password, but the name is locked
    from depot_process import DepotProcess
    audit = requests.get(f"{a.url}/-/api/audit", headers=_basic("admin", DepotProcess.ADMIN_PASSWORD), timeout=30)
    assert audit.status_code == 200, audit.text
    records = audit.json()
    assert any(r["action"] == "user.add" and r.get("user") == "ci" for r in records)     # the CLI on B
    assert any(r["action"] == "lockout" and r.get("user") == "ci" for r in records)      # engaged on A
    _cli(a, "user", "unlock", "ci")
    token = requests.get(f"{b.url}/v2/token", params=service, headers=_basic("ci", PASSWORD), timeout=30)
    assert token.status_code == 200, token.text
    bearer = {"Authorization": f"Bearer {token.json()['token']}"}
    upload = f"{a.url}/v2/images/x/blobs/uploads/"
    assert requests.post(upload, headers=bearer, timeout=30).status_code == 202   # signed with the cluster's key
    assert requests.post(upload, timeout=30).status_code == 401
