"""Conan 2 with the real `conan` client against real depot processes (v2 revisions API).

Every client has a private CONAN_HOME with ConanCenter removed; the proxy's upstream is a real
conan_server (PyPI) on 127.0.0.1 filled by the real client, or a counting static tree; never the
internet.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))

from conan_fixtures import ConanClient, ConanServer, require_clients, write_recipe  # noqa: E402
from http_util import get_many  # noqa: E402

REPOS = {
    "conan-local": {"format": "conan", "type": "hosted"},
    "conan": {"format": "conan", "type": "group", "members": ["conan-local"], "deploy_to": "conan-local"},
}


def make_token(depot: Any, *args: str) -> str:
    return depot.run_cli("token", "create", *args).stdout.strip().splitlines()[-1]


@pytest.fixture
def env(depot_factory: Any, tmp_path: Path) -> SimpleNamespace:
    require_clients()
    depot = depot_factory(REPOS, secure=True)
    writer = make_token(depot, "--repo", "conan-local", "--perm", "write")
    reader = make_token(depot, "--repo", "conan-local", "--perm", "read")
    return SimpleNamespace(depot=depot, tmp=tmp_path, writer=writer, reader=reader)


def client(env: SimpleNamespace, name: str, repo: str = "conan", url: str | None = None) -> ConanClient:
    return ConanClient(env.tmp / f"home-{name}", url or f"{env.depot.url}/{repo}")


def revisions(url: str, ref: str, token: str) -> list[str]:
    answer = requests.get(f"{url}/v2/conans/{ref}/_/_/revisions", headers={"Authorization": f"Bearer {token}"},
                          timeout=10)
    return [r["revision"] for r in answer.json()["revisions"]] if answer.status_code == 200 else []


def test_create_upload_and_install_through_group(env: SimpleNamespace) -> None:
    publisher = client(env, "pub")
    publisher.login("ci", env.writer)
    publisher.run("create", str(write_recipe(env.tmp, "dptleaf", "1.0", payload="leaf")))
    publisher.run("create", str(write_recipe(env.tmp, "dptapp", "2.0", ["dptleaf/1.0"], payload="app")))
    uploaded = publisher.run("upload", "dpt*", "-r", "depot", "-c")
    assert "Uploading recipe 'dptapp/2.0" in uploaded.stderr and "Uploading package 'dptleaf/1.0" in uploaded.stderr

    consumer = client(env, "use")
    consumer.login("reader", env.reader)
    installed = consumer.run("install", "--requires", "dptapp/2.0", "-r", "depot")
    assert "dptleaf/1.0: Downloaded package revision" in installed.stderr, installed.stderr
    assert consumer.installed_header("dptapp", "2.0") == "// dptapp 2.0 app"
    assert consumer.installed_header("dptleaf", "1.0") == "// dptleaf 1.0 leaf"
    found = consumer.run("search", "dpt*", "-r", "depot").stdout
    assert "dptapp/2.0" in found and "dptleaf/1.0" in found


def test_anonymous_and_read_token_cannot_upload(env: SimpleNamespace) -> None:
    recipe = write_recipe(env.tmp, "dptleaf", "1.0")
    anonymous = client(env, "anon")
    anonymous.run("create", str(recipe))
    refused = anonymous.run("upload", "dptleaf/1.0", "-r", "depot", "-c", check=False)
    # a 401 makes conan ask for credentials; non-interactive it stops there
    assert refused.returncode != 0 and "interactive" in refused.stderr.lower(), refused.stderr
    answer = requests.put(f"{env.depot.url}/conan/v2/conans/dptleaf/1.0/_/_/revisions/abc/files/conanfile.py",
                          data=b"x", timeout=10)
    assert answer.status_code == 401 and answer.headers["WWW-Authenticate"].startswith("Bearer")
    assert answer.headers["Content-Type"].startswith("text/plain") and "authentication required" in answer.text

    anonymous.login("reader", env.reader)
    denied = anonymous.run("upload", "dptleaf/1.0", "-r", "depot", "-c", check=False)
    assert denied.returncode != 0 and "may not write" in denied.stderr, denied.stderr
    assert revisions(f"{env.depot.url}/conan", "dptleaf/1.0", env.writer) == []

    wrong = anonymous.run("remote", "login", "depot", "admin", "-p", "not-the-password", check=False)
    assert wrong.returncode != 0 and "Wrong user or password" in wrong.stderr, wrong.stderr


def test_revisions_are_immutable_and_latest_is_tracked(env: SimpleNamespace) -> None:
    publisher = client(env, "pub")
    publisher.login("ci", env.writer)
    publisher.run("create", str(write_recipe(env.tmp, "dpttiny", "1.0", payload="one")))
    publisher.run("upload", "dpttiny/1.0", "-r", "depot", "-c")
    first = revisions(f"{env.depot.url}/conan", "dpttiny/1.0", env.writer)
    (env.tmp / "recipe-dpttiny-1.0" / "conanfile.py").write_text(
        (env.tmp / "recipe-dpttiny-1.0" / "conanfile.py").read_text().replace("one", "two"))
    publisher.run("create", str(env.tmp / "recipe-dpttiny-1.0"))
    publisher.run("upload", "dpttiny/1.0", "-r", "depot", "-c")
    both = revisions(f"{env.depot.url}/conan", "dpttiny/1.0", env.writer)
    assert len(first) == 1 and len(both) == 2 and both[1] == first[0]
    auth = {"Authorization": f"Bearer {env.writer}"}
    latest = requests.get(f"{env.depot.url}/conan/v2/conans/dpttiny/1.0/_/_/latest", headers=auth, timeout=10)
    assert latest.json()["revision"] == both[0] and latest.headers["Content-Type"] == "application/json"

    # a file of an uploaded revision never takes other bytes
    url = f"{env.depot.url}/conan/v2/conans/dpttiny/1.0/_/_/revisions/{first[0]}/files/conanfile.py"
    original = requests.get(url, headers=auth, timeout=10).content
    changed = requests.put(url, data=b"# other bytes\n", headers=auth, timeout=10)
    assert changed.status_code == 409 and changed.text.strip()
    assert requests.get(url, headers=auth, timeout=10).content == original

    consumer = client(env, "use")
    consumer.login("reader", env.reader)
    consumer.run("install", "--requires", "dpttiny/1.0", "-r", "depot")
    assert consumer.installed_header("dpttiny", "1.0") == "// dpttiny 1.0 two"

    publisher.login("ci", make_token(env.depot, "--repo", "conan-local", "--perm", "delete"))
    publisher.run("remove", f"dpttiny/1.0#{both[0]}", "-r", "depot", "-c")
    assert revisions(f"{env.depot.url}/conan", "dpttiny/1.0", env.writer) == first
    again = client(env, "again")
    again.login("reader", env.reader)
    again.run("install", "--requires", "dpttiny/1.0", "-r", "depot")
    assert again.installed_header("dpttiny", "1.0") == "// dpttiny 1.0 one"


@pytest.mark.parametrize("case", ["oversized", "package-before-recipe", "bad-revision", "bad-name"])
def test_bad_uploads_are_refused_and_store_nothing(depot_factory: Any, case: str) -> None:
    depot = depot_factory({"conan-local": {"format": "conan", "type": "hosted", "max_upload": "1KiB"}})
    base = f"{depot.url}/conan-local/v2/conans/dptbad/1.0/_/_"
    url = {"oversized": f"{base}/revisions/abc1/files/conan_export.tgz",
           "package-before-recipe": f"{base}/revisions/abc1/packages/def2/revisions/fed3/files/conaninfo.txt",
           "bad-revision": f"{base}/revisions/not-hex!/files/conanfile.py",
           "bad-name": f"{depot.url}/conan-local/v2/conans/../etc/_/_/revisions/abc1/files/conanfile.py"}[case]
    answer = requests.put(url, data=b"x" * (4096 if case == "oversized" else 10), timeout=10)
    assert answer.status_code in (400, 404, 413) and answer.headers["Content-Type"].startswith("text/plain")
    assert answer.text.strip(), answer.text
    assert requests.get(f"{base}/revisions", timeout=10).status_code == 404
    assert requests.get(f"{depot.url}/conan-local/v2/conans/search?q=*", timeout=10).json() == {"results": []}


# ------------------------------------------------------------------------------------- proxy

def test_proxy_in_front_of_conan_server_then_upstream_stopped(depot_factory: Any, tmp_path: Path) -> None:
    require_clients()
    server = ConanServer(tmp_path / "conan-server")
    try:
        publisher = ConanClient(tmp_path / "home-pub", server.url)
        publisher.login("demo", "demo")
        publisher.run("create", str(write_recipe(tmp_path, "dptleaf", "1.0", payload="up")))
        publisher.run("create", str(write_recipe(tmp_path, "dptapp", "2.0", ["dptleaf/1.0"], payload="up")))
        publisher.run("upload", "dpt*", "-r", "depot", "-c")
        depot = depot_factory({"conan-remote": {"format": "conan", "type": "proxy", "upstream": server.url},
                               "conan-local": {"format": "conan", "type": "hosted"},
                               "conan": {"format": "conan", "type": "group",
                                         "members": ["conan-local", "conan-remote"], "deploy_to": "conan-local"}})
        first = ConanClient(tmp_path / "home-first", f"{depot.url}/conan")
        first.run("install", "--requires", "dptapp/2.0", "-r", "depot")
        assert first.installed_header("dptleaf", "1.0") == "// dptleaf 1.0 up"
        search = requests.get(f"{depot.url}/conan/v2/conans/search?q=dpt*", timeout=10).json()
        assert search == {"results": ["dptapp/2.0", "dptleaf/1.0"]}
        rrev = requests.get(f"{depot.url}/conan-remote/v2/conans/dptleaf/1.0/_/_/latest", timeout=10).json()
        export = f"{depot.url}/conan-remote/v2/conans/dptleaf/1.0/_/_/revisions/{rrev['revision']}/files/conanfile.py"
        assert requests.get(export, timeout=10).headers["X-Cache"] == "HIT"
    finally:
        server.stop()
    second = ConanClient(tmp_path / "home-second", f"{depot.url}/conan")
    installed = second.run("install", "--requires", "dptapp/2.0", "-r", "depot")
    assert "Downloaded package revision" in installed.stderr
    assert second.installed_header("dptapp", "2.0") == "// dptapp 2.0 up"


def test_group_merges_revisions_first_member_wins(depot_factory: Any, tmp_path: Path) -> None:
    require_clients()
    server = ConanServer(tmp_path / "conan-server")
    try:
        up = ConanClient(tmp_path / "home-up", server.url)
        up.login("demo", "demo")
        up.run("create", str(write_recipe(tmp_path / "a", "dpttiny", "1.0", payload="upstream")))
        up.run("upload", "dpttiny/1.0", "-r", "depot", "-c")
        depot = depot_factory({"conan-remote": {"format": "conan", "type": "proxy", "upstream": server.url},
                               "conan-local": {"format": "conan", "type": "hosted"},
                               "conan": {"format": "conan", "type": "group",
                                         "members": ["conan-local", "conan-remote"], "deploy_to": "conan-local"}})
        mine = ConanClient(tmp_path / "home-mine", f"{depot.url}/conan")
        mine.run("create", str(write_recipe(tmp_path / "b", "dpttiny", "1.0", payload="hosted")))
        mine.run("upload", "dpttiny/1.0", "-r", "depot", "-c")
        merged = requests.get(f"{depot.url}/conan/v2/conans/dpttiny/1.0/_/_/revisions", timeout=10)
        listed = merged.json()
        local = requests.get(f"{depot.url}/conan-local/v2/conans/dpttiny/1.0/_/_/revisions", timeout=10).json()
        remote = requests.get(f"{depot.url}/conan-remote/v2/conans/dpttiny/1.0/_/_/revisions", timeout=10).json()
        assert {r["revision"] for r in listed["revisions"]} == \
            {r["revision"] for r in local["revisions"] + remote["revisions"]}
        assert len(listed["revisions"]) == 2 and listed["reference"] == "dpttiny/1.0"
        latest = requests.get(f"{depot.url}/conan/v2/conans/dpttiny/1.0/_/_/latest", timeout=10).json()
        assert latest["revision"] == local["revisions"][0]["revision"]       # uploaded last
        fresh = ConanClient(tmp_path / "home-fresh", f"{depot.url}/conan")
        fresh.run("install", "--requires", "dpttiny/1.0", "-r", "depot")
        assert fresh.installed_header("dpttiny", "1.0") == "// dpttiny 1.0 hosted"
    finally:
        server.stop()


def test_twenty_concurrent_clients_one_upstream_get(depot_factory: Any, upstream: Any) -> None:
    path = "v2/conans/dptbig/1.0/_/_/revisions/0123abcd/files/conan_export.tgz"
    body = bytes(range(256)) * 8000
    upstream.put("/" + path, body)
    upstream.mode("/" + path, "slow", rate=4_000_000)
    depot = depot_factory({"conan-remote": {"format": "conan", "type": "proxy", "upstream": upstream.url}})
    answers = get_many(f"{depot.url}/conan-remote/{path}", 20)
    assert all(a.status == 200 and a.body == body for a in answers)
    assert upstream.count("/" + path) == 1


def test_ping_advertises_revisions_and_login_gives_a_bearer(env: SimpleNamespace) -> None:
    ping = requests.get(f"{env.depot.url}/conan/v1/ping", timeout=10)
    assert ping.status_code == 200 and ping.headers["X-Conan-Server-Capabilities"] == "revisions"
    token = requests.get(f"{env.depot.url}/conan/v2/users/authenticate", auth=("ci", env.writer), timeout=10)
    assert token.status_code == 200 and token.headers["Content-Type"].startswith("text/plain")
    bearer = {"Authorization": f"Bearer {token.text}"}
    who = requests.get(f"{env.depot.url}/conan/v2/users/check_credentials", headers=bearer, timeout=10)
    assert who.status_code == 200
    assert requests.get(f"{env.depot.url}/conan/v2/users/check_credentials", timeout=10).status_code == 401
    wrong = requests.get(f"{env.depot.url}/conan/v2/users/authenticate", auth=("ci", "dpt_" + "x" * 32), timeout=10)
    assert wrong.status_code == 401 and wrong.headers["Content-Type"].startswith("text/plain")
    upload = f"{env.depot.url}/conan/v2/conans/dpttok/1.0/_/_/revisions/abc1/files/conanmanifest.txt"
    assert requests.put(upload, data=b"m", headers=bearer, timeout=10).status_code == 201
    assert requests.get(f"{env.depot.url}/conan/v2/conans/search?q=*", headers=bearer,
                        timeout=10).json() == {"results": ["dpttok/1.0"]}
    # the bearer stands for the token it was obtained with: revoking that token ends it
    listing = env.depot.run_cli("token", "list").stdout
    token_id = [line.split()[0] for line in listing.splitlines() if "write" in line][0]
    assert env.depot.run_cli("token", "revoke", token_id).returncode == 0
    time.sleep(5.5)                                                      # credential cache TTL
    assert requests.get(f"{env.depot.url}/conan/v2/users/check_credentials", headers=bearer,
                        timeout=10).status_code == 401


def test_policy_refuses_denied_versions(depot_factory: Any, upstream: Any) -> None:
    for version in ("1.0", "2.0"):
        upstream.put(f"/v2/conans/dptpol/{version}/_/_/revisions",
                     json.dumps({"reference": f"dptpol/{version}",
                                 "revisions": [{"revision": "ab12", "time": "2024-01-01T00:00:00+00:00"}]}).encode())
    depot = depot_factory({"conan-remote": {"format": "conan", "type": "proxy", "upstream": upstream.url}},
                          extra={"policy": {"deny": ["dptpol@<2"]}})
    refused = requests.get(f"{depot.url}/conan-remote/v2/conans/dptpol/1.0/_/_/latest", timeout=10)
    assert refused.status_code == 403 and "dptpol@<2" in refused.text
    assert refused.headers["Content-Type"].startswith("text/plain")
    allowed = requests.get(f"{depot.url}/conan-remote/v2/conans/dptpol/2.0/_/_/latest", timeout=10)
    assert allowed.status_code == 200 and allowed.json()["revision"] == "ab12"
    assert upstream.count("/v2/conans/dptpol/1.0/_/_/revisions") == 0
