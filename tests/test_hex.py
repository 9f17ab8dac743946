"""Hex end to end: the real rebar3 3.19 (Debian) with HEX_CDN pointed at depot, verifying the signed
registry documents with the repository's public key (repo_public_key of `hexpm`), against real depot
processes (hosted, group, and a proxy in front of a second depot); the herd test uses the counting
static upstream."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from depot.registry import hex_proto as hp
from depot_process import DepotProcess
from hex_fixtures import make_package
from http_util import get_many

REBAR3 = shutil.which("rebar3")
ADMIN = ("admin", DepotProcess.ADMIN_PASSWORD)


def rebar3_get_deps(tmp: Path, cdn: str, public_key: str, dep: str, version: str) -> dict[str, str]:
    """`rebar3 get-deps` of a project depending on `dep` == `version`: {app: its .erl source}."""
    assert REBAR3, "rebar3 is missing: apt-get install rebar3 (tests/clients/hex.apt)"
    work = tmp / f"r3-{time.monotonic_ns()}"
    (work / "home" / ".config" / "rebar3").mkdir(parents=True)
    (work / "proj" / "src").mkdir(parents=True)
    (work / "home" / ".config" / "rebar3" / "rebar.config").write_text(
        '{hex, [{repos, [#{name => <<"hexpm">>, repo_public_key => <<"' + public_key + '">>}]}]}.\n')
    (work / "proj" / "rebar.config").write_text(f'{{deps, [{{{dep}, "{version}"}}]}}.\n')
    (work / "proj" / "src" / "myapp.app.src").write_text(
        f'{{application,myapp,[{{vsn,"0.1.0"}},{{applications,[kernel,stdlib,{dep}]}},{{env,[]}},{{modules,[]}}]}}.\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HEX_", "REBAR", "DEPOT_"))}
    env.update({"HOME": str(work / "home"), "HEX_CDN": cdn, "REBAR_CACHE_DIR": str(work / "cache")})
    proc = subprocess.run([REBAR3, "get-deps"], cwd=work / "proj", env=env, capture_output=True, text=True,
                          timeout=180, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, f"rebar3 get-deps failed:\n{proc.stdout}\n{proc.stderr}"
    lib = work / "proj" / "_build" / "default" / "lib"
    return {app: (lib / app / "src" / f"{app}.erl").read_text() for app in sorted(os.listdir(lib))}


def publish(url: str, body: bytes, **kw: Any) -> requests.Response:
    return requests.post(f"{url}/api/publish", data=body, headers={"Content-Type": "application/octet-stream",
                                                                   **kw.pop("headers", {})}, timeout=60, **kw)


@pytest.fixture
def depot(depot_factory: Any) -> DepotProcess:
    return depot_factory({"hex-local": {"format": "hex", "type": "hosted"},
                          "hex": {"format": "hex", "type": "group", "members": ["hex-local"], "deploy_to": "hex-local"}})


def test_publish_then_rebar3_fetches_with_a_dependency_from_hosted_and_group(depot: DepotProcess,
                                                                             tmp_path: Path) -> None:
    assert publish(f"{depot.url}/hex", make_package("depot_base", "1.0.0")).status_code == 201    # group
    assert publish(f"{depot.url}/hex-local", make_package("depot_base", "1.1.0")).status_code == 201
    assert publish(f"{depot.url}/hex-local", make_package("depot_app", "2.0.0", ("depot_base",))).status_code == 201
    key = requests.get(f"{depot.url}/hex-local/public_key", timeout=10).text
    assert key.startswith("-----BEGIN PUBLIC KEY-----")
    versions = hp.verify_document(requests.get(f"{depot.url}/hex-local/versions", timeout=10).content,
                                  key.encode())
    assert b"depot_base" in versions and b"1.1.0" in versions
    tarball = requests.get(f"{depot.url}/hex-local/tarballs/depot_app-2.0.0.tar", timeout=10)
    assert tarball.headers["ETag"]
    for repo in ("hex-local", "hex"):
        got = rebar3_get_deps(tmp_path, f"{depot.url}/{repo}", key, "depot_app", "2.0.0")
        assert set(got) == {"depot_app", "depot_base"} and "depot_base_1_1_0" in got["depot_base"]


def test_a_foreign_key_is_refused_by_rebar3(depot: DepotProcess, tmp_path: Path) -> None:
    """The documents really are signed: rebar3 with another key refuses them."""
    assert publish(f"{depot.url}/hex-local", make_package("signed_only", "1.0.0")).status_code == 201
    _, other = hp.generate_key()
    with pytest.raises(AssertionError, match="get-deps failed"):
        rebar3_get_deps(tmp_path, f"{depot.url}/hex-local", other.decode(), "signed_only", "1.0.0")


def test_bad_tarballs_are_refused_and_nothing_stored(depot: DepotProcess) -> None:
    for body, why in [(b"garbage", "not a Hex package"), (make_package("bad", "1.0.0", checksum=b"00" * 32), "CHECKSUM"),
                      (make_package("bad", "one"), "semantic version")]:
        bad = publish(f"{depot.url}/hex-local", body)
        assert bad.status_code == 422 and why in bad.json()["message"], bad.text
    assert requests.get(f"{depot.url}/hex-local/packages/bad", timeout=10).status_code == 404
    assert publish(f"{depot.url}/hex-local", make_package("fixed", "1.0.0")).status_code == 201
    assert publish(f"{depot.url}/hex-local", make_package("fixed", "1.0.0", payload="x")).status_code == 409


def test_proxy_in_front_of_a_second_depot_then_upstream_stopped(depot_factory: Any, tmp_path: Path) -> None:
    upstream = depot_factory({"hex": {"format": "hex", "type": "hosted"}}, name="up")
    assert publish(f"{upstream.url}/hex", make_package("relay_base", "1.0.0", payload="y" * 20_000)).status_code == 201
    assert publish(f"{upstream.url}/hex", make_package("relay_app", "1.0.0", ("relay_base",))).status_code == 201
    key = requests.get(f"{upstream.url}/hex/public_key", timeout=10).text
    front = depot_factory({"remote": {"format": "hex", "type": "proxy", "upstream": f"{upstream.url}/hex",
                                      "options": {"public_key": key}},
                           "grp": {"format": "hex", "type": "group", "members": ["remote"]}}, name="front")
    for round_ in range(2):
        since = len(front.log())
        got = rebar3_get_deps(tmp_path, f"{front.url}/remote", key, "relay_app", "1.0.0")
        assert set(got) == {"relay_app", "relay_base"}
        if round_ == 1:
            lines = [line for line in front.log()[since:].splitlines() if "depot.access" in line]
            assert len(lines) >= 4 and all(line.endswith('"HIT"') for line in lines), lines
    upstream.stop()
    assert set(rebar3_get_deps(tmp_path, f"{front.url}/remote", key, "relay_app", "1.0.0")) == {"relay_app",
                                                                                               "relay_base"}
    assert set(rebar3_get_deps(tmp_path, f"{front.url}/grp", key, "relay_app", "1.0.0")) == {"relay_app", "relay_base"}


def test_twenty_concurrent_clients_on_one_uncached_tarball_and_signatures_checked(upstream: Any,
                                                                                   depot_factory: Any) -> None:
    body = make_package("herd", "1.0.0", payload=os.urandom(150_000).hex())
    private, public = hp.generate_key()
    release = hp.Release("1.0.0", b"\0" * 32, hashlib.sha256(body).digest())
    upstream.put("packages/herd", hp.sign_document(hp.encode_package("herd", "hexpm", [release]), private))
    upstream.put("tarballs/herd-1.0.0.tar", body)
    _, stranger = hp.generate_key()
    depot = depot_factory({"remote": {"format": "hex", "type": "proxy", "upstream": upstream.url,
                                      "options": {"public_key": public.decode()}},
                           "wrongkey": {"format": "hex", "type": "proxy", "upstream": upstream.url,
                                        "options": {"public_key": stranger.decode()}}})
    url = f"{depot.url}/remote/tarballs/herd-1.0.0.tar"
    assert requests.get(f"{depot.url}/remote/packages/herd", timeout=10).status_code == 200
    upstream.mode("/tarballs/herd-1.0.0.tar", "slow", headers_delay=1.5, chunk=8192, delay=0.01)
    try:
        results = get_many(url, 20)
    finally:
        upstream.mode("/tarballs/herd-1.0.0.tar", "normal")
    assert {r.status for r in results} == {200} and {r.body for r in results} == {body}
    assert upstream.count("/tarballs/herd-1.0.0.tar") == 1
    # a document that does not verify with the proxy's configured key is neither stored nor served
    refused = requests.get(f"{depot.url}/wrongkey/packages/herd", timeout=10)
    assert refused.status_code >= 500
    assert requests.get(f"{depot.url}/wrongkey/tarballs/herd-1.0.0.tar", timeout=10).status_code >= 500


def test_anonymous_publish_gets_a_challenge_and_a_read_token_cannot_publish(depot_factory: Any) -> None:
    secure = depot_factory({"hex": {"format": "hex", "type": "hosted"}}, secure=True)
    anonymous = publish(f"{secure.url}/hex", make_package("sec", "1.0.0"))
    assert anonymous.status_code == 401 and anonymous.headers["WWW-Authenticate"].startswith("Basic")
    read = secure.run_cli("token", "create", "--repo", "hex", "--perm", "read").stdout.strip().splitlines()[-1]
    denied = publish(f"{secure.url}/hex", make_package("sec", "1.0.0"), headers={"Authorization": f"Bearer {read}"})
    assert denied.status_code == 403 and denied.json()["message"]
    assert publish(f"{secure.url}/hex", make_package("sec", "1.0.0"), auth=ADMIN).status_code == 201


def test_group_of_hosted_and_proxy_merges_and_re_signs_with_one_key(depot_factory: Any, tmp_path: Path) -> None:
    upstream = depot_factory({"hex": {"format": "hex", "type": "hosted"}}, name="up")
    assert publish(f"{upstream.url}/hex", make_package("mixed_base", "1.0.0")).status_code == 201
    upstream_key = requests.get(f"{upstream.url}/hex/public_key", timeout=10).text
    front = depot_factory({"hex-local": {"format": "hex", "type": "hosted"},
                           "hex-remote": {"format": "hex", "type": "proxy", "upstream": f"{upstream.url}/hex",
                                          "options": {"public_key": upstream_key}},
                           "hex": {"format": "hex", "type": "group", "members": ["hex-local", "hex-remote"],
                                   "deploy_to": "hex-local"}}, name="front")
    assert publish(f"{front.url}/hex", make_package("mixed_base", "1.1.0")).status_code == 201
    assert publish(f"{front.url}/hex", make_package("mixed_app", "1.0.0", ("mixed_base",))).status_code == 201
    key = requests.get(f"{front.url}/hex/public_key", timeout=10).text
    assert key == requests.get(f"{front.url}/hex-local/public_key", timeout=10).text != upstream_key
    merged = hp.verify_document(requests.get(f"{front.url}/hex/packages/mixed_base", timeout=10).content, key.encode())
    assert set(hp.package_checksums(merged)[1]) == {"1.0.0", "1.1.0"}          # both members' releases
    names = hp.decode_names(hp.verify_document(requests.get(f"{front.url}/hex/names", timeout=10).content,
                                               key.encode()))
    assert names == ["mixed_app", "mixed_base"]
    got = rebar3_get_deps(tmp_path, f"{front.url}/hex", key, "mixed_app", "1.0.0")
    assert set(got) == {"mixed_app", "mixed_base"}
    (tmp_path / "pin").mkdir()
    old = rebar3_get_deps(tmp_path / "pin", f"{front.url}/hex", key, "mixed_base", "1.0.0")   # from the proxy
    assert "mixed_base_1_0_0" in old["mixed_base"]


def test_policy_deny_hides_releases_and_rebar3_resolves_the_allowed_one(depot_factory: Any, tmp_path: Path) -> None:
    """A proxy under a policy filters the signed documents, so it re-signs them with its own key (its
    /public_key, which clients pin instead of the upstream's); the hidden tarball is a 403."""
    upstream = depot_factory({"hex": {"format": "hex", "type": "hosted"}}, name="up")
    for version in ("1.0.0", "1.1.0"):
        assert publish(f"{upstream.url}/hex", make_package("pol_base", version)).status_code == 201
    upstream_key = requests.get(f"{upstream.url}/hex/public_key", timeout=10).text
    front = depot_factory({"remote": {"format": "hex", "type": "proxy", "upstream": f"{upstream.url}/hex",
                                      "options": {"public_key": upstream_key}},
                           "grp": {"format": "hex", "type": "group", "members": ["remote"]}},
                          extra={"policy": {"deny": ["pol_base@>=1.1"]}}, name="front")
    key = requests.get(f"{front.url}/remote/public_key", timeout=10).text
    assert key.startswith("-----BEGIN PUBLIC KEY-----") and key != upstream_key
    assert requests.get(f"{front.url}/grp/public_key", timeout=10).text == key
    package = hp.verify_document(requests.get(f"{front.url}/remote/packages/pol_base", timeout=10).content,
                                 key.encode())
    assert set(hp.package_checksums(package)[1]) == {"1.0.0"}
    versions = hp.verify_document(requests.get(f"{front.url}/remote/versions", timeout=10).content, key.encode())
    assert hp.decode_versions(versions) == {"pol_base": ["1.0.0"]}
    for repo in ("remote", "grp"):
        got = rebar3_get_deps(tmp_path / repo, f"{front.url}/{repo}", key, "pol_base", "~> 1.0")
        assert "pol_base_1_0_0" in got["pol_base"], repo
    refused = requests.get(f"{front.url}/remote/tarballs/pol_base-1.1.0.tar", timeout=10)
    assert refused.status_code == 403 and "pol_base@>=1.1" in refused.json()["message"]


def test_policy_cooldown_reads_release_times_from_the_hex_api(upstream: Any, depot_factory: Any) -> None:
    """The repository documents carry no times: the cooldown takes `inserted_at` from the Hex API
    (`<upstream>/api/packages/<name>`, as hex.pm's API sits beside repo.hex.pm)."""
    private, _ = hp.generate_key()
    bodies = {v: make_package("cool", v) for v in ("1.0.0", "1.1.0")}
    releases = [hp.Release(v, b"\0" * 32, hashlib.sha256(b).digest()) for v, b in bodies.items()]
    upstream.put("packages/cool", hp.sign_document(hp.encode_package("cool", "hexpm", releases), private))
    for version, body in bodies.items():
        upstream.put(f"tarballs/cool-{version}.tar", body)
    api = {"name": "cool", "releases": [{"version": "1.1.0", "inserted_at": "2099-01-01T00:00:00.000000Z"},
                                        {"version": "1.0.0", "inserted_at": "2020-01-01T00:00:00.000000Z"}]}
    upstream.put("api/packages/cool", json.dumps(api).encode())
    front = depot_factory({"remote": {"format": "hex", "type": "proxy", "upstream": upstream.url}},
                          extra={"policy": {"cooldown": "3d"}})
    key = requests.get(f"{front.url}/remote/public_key", timeout=10).text.encode()
    package = hp.verify_document(requests.get(f"{front.url}/remote/packages/cool", timeout=10).content, key)
    assert set(hp.package_checksums(package)[1]) == {"1.0.0"}
    assert requests.get(f"{front.url}/remote/tarballs/cool-1.0.0.tar", timeout=10).content == bodies["1.0.0"]
    refused = requests.get(f"{front.url}/remote/tarballs/cool-1.1.0.tar", timeout=10)
    assert refused.status_code == 403 and "cooldown" in refused.json()["message"]
    assert refused.headers["X-Depot-Policy"].startswith("cooldown until 2099-01-04")
    assert upstream.count("/tarballs/cool-1.1.0.tar") == 0


def test_hosted_api_package_lists_releases_with_their_times(depot: DepotProcess) -> None:
    assert publish(f"{depot.url}/hex-local", make_package("timed", "1.0.0")).status_code == 201
    doc = requests.get(f"{depot.url}/hex/api/packages/timed", timeout=10).json()
    assert [r["version"] for r in doc["releases"]] == ["1.0.0"] and doc["releases"][0]["inserted_at"].startswith("20")
    assert requests.get(f"{depot.url}/hex/api/packages/missing", timeout=10).status_code == 404
