"""Cargo with the real cargo against real depot processes (sparse registry protocol).

Every run has a private CARGO_HOME and target dir; upstreams are a second depot (hosted, filled
by `cargo publish`) or a static sparse index served by tests/upstream.py; never the internet.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cargo_fixtures import (cargo_env, cargo_home, crate_bytes, index_path, publish_frame,  # noqa: E402
                            run_cargo, static_registry, write_crate)
from http_util import get, get_many, sha256  # noqa: E402

REPOS = {
    "cargo-local": {"format": "cargo", "type": "hosted"},
    "cargo": {"format": "cargo", "type": "group", "members": ["cargo-local"], "deploy_to": "cargo-local"},
}


def make_token(depot: Any, *args: str) -> str:
    return depot.run_cli("token", "create", *args).stdout.strip().splitlines()[-1]


def publish(env: dict[str, str], crate: Path, registry: str = "depot", check: bool = True) -> Any:
    return run_cargo(env, crate, "publish", "--registry", registry, "--allow-dirty", "--no-verify", check=check)


def build_and_run(env: dict[str, str], app: Path) -> str:
    run_cargo(env, app, "build")
    binary = Path(env["CARGO_TARGET_DIR"]) / "debug" / app.name.rsplit("-", 1)[0]
    return subprocess.run([str(binary)], capture_output=True, text=True, timeout=60).stdout.strip()


def locked(app: Path, name: str) -> list[str]:
    text = (app / "Cargo.lock").read_text()
    return [block.split('version = "')[1].split('"')[0] for block in text.split("[[package]]")
            if f'name = "{name}"\n' in block]


@pytest.fixture
def env(depot_factory: Any, tmp_path: Path) -> SimpleNamespace:
    depot = depot_factory(REPOS)
    home = cargo_home(tmp_path, {"depot": f"{depot.url}/cargo"})
    cenv = cargo_env(home, tmp_path / "target", tokens={"depot": make_token(depot, "--repo", "cargo-local",
                                                                            "--perm", "write")})
    return SimpleNamespace(depot=depot, tmp=tmp_path, cargo=cenv)


def fresh(env: SimpleNamespace, name: str, url: str | None = None) -> dict[str, str]:
    """A cargo environment with an empty CARGO_HOME and target dir."""
    home = cargo_home(env.tmp, {"depot": url or f"{env.depot.url}/cargo"}, name=f"home-{name}")
    return cargo_env(home, env.tmp / f"target-{name}")


def test_publish_two_crates_and_build_through_group(env: SimpleNamespace) -> None:
    first = publish(env.cargo, write_crate(env.tmp, "dpt-leaf", "0.1.0", message="leaf"))
    # cargo waits until the new version is in the index: it is there before the publish answers
    assert "Published dpt-leaf v0.1.0" in first.stderr and "timed out" not in first.stderr, first.stderr
    publish(env.cargo, write_crate(env.tmp, "dpt_mid", "0.2.0", {"dpt-leaf": '{ version = "0.1", registry = "depot" }'},
                                   message="mid"))
    line = json.loads(requests.get(f"{env.depot.url}/cargo/{index_path('dpt_mid')}", timeout=10).text)
    assert line["deps"][0]["name"] == "dpt-leaf" and line["deps"][0]["req"] == "^0.1" and len(line["cksum"]) == 64
    answer = requests.get(f"{env.depot.url}/cargo/config.json", timeout=10)
    config = answer.json()
    assert answer.headers["X-Cache"] == "HIT" and config["auth-required"] is False
    assert config["dl"] == f"{env.depot.url}/cargo/api/v1/crates" and config["api"] == f"{env.depot.url}/cargo"

    app = write_crate(env.tmp, "app", "1.0.0", {"dpt_mid": '{ version = "0.2", registry = "depot" }'}, binary=True)
    assert build_and_run(fresh(env, "build"), app) == "app mid leaf"


def test_yank_hides_a_version_from_resolution(env: SimpleNamespace) -> None:
    publish(env.cargo, write_crate(env.tmp, "dpt-leaf", "0.1.0", message="old"))
    publish(env.cargo, write_crate(env.tmp, "dpt-leaf", "0.1.1", message="new"))
    app = write_crate(env.tmp, "app", "1.0.0", {"dpt-leaf": '{ version = "0.1", registry = "depot" }'}, binary=True)
    run_cargo(fresh(env, "one"), app, "generate-lockfile")
    assert locked(app, "dpt-leaf") == ["0.1.1"]

    run_cargo(env.cargo, env.tmp, "yank", "--registry", "depot", "--version", "0.1.1", "dpt-leaf")
    assert json.loads(requests.get(f"{env.depot.url}/cargo/{index_path('dpt-leaf')}",
                                   timeout=10).text.splitlines()[1])["yanked"] is True
    run_cargo(fresh(env, "two"), app, "generate-lockfile")
    assert locked(app, "dpt-leaf") == ["0.1.0"]

    run_cargo(env.cargo, env.tmp, "yank", "--registry", "depot", "--version", "0.1.1", "--undo", "dpt-leaf")
    run_cargo(fresh(env, "three"), app, "generate-lockfile")
    assert locked(app, "dpt-leaf") == ["0.1.1"]
    missing = run_cargo(env.cargo, env.tmp, "yank", "--registry", "depot", "--version", "9.9.9", "dpt-leaf",
                        check=False)
    assert missing.returncode != 0 and "version 9.9.9 does not exist" in missing.stderr


def test_owners_endpoints_answer_cargo_owner(env: SimpleNamespace) -> None:
    publish(env.cargo, write_crate(env.tmp, "dpt-leaf", "0.1.0"))
    listed = run_cargo(env.cargo, env.tmp, "owner", "--list", "--registry", "depot", "dpt-leaf")
    assert "cargo-local" in listed.stdout
    run_cargo(env.cargo, env.tmp, "owner", "--add", "someone", "--registry", "depot", "dpt-leaf")
    run_cargo(env.cargo, env.tmp, "owner", "--remove", "someone", "--registry", "depot", "dpt-leaf")
    found = run_cargo(env.cargo, env.tmp, "search", "--registry", "depot", "leaf").stdout
    assert found.startswith('dpt-leaf = "0.1.0"'), found
    unknown = run_cargo(env.cargo, env.tmp, "owner", "--list", "--registry", "depot", "dpt-nope", check=False)
    assert unknown.returncode != 0 and "does not exist" in unknown.stderr


def test_duplicate_version_and_lookalike_names_are_refused(env: SimpleNamespace) -> None:
    crate = write_crate(env.tmp, "dpt-leaf", "0.1.0")
    publish(env.cargo, crate)
    again = publish(env.cargo, crate, check=False)           # cargo sees it in the index itself
    assert again.returncode != 0 and "already exists" in again.stderr, again.stderr
    lookalike = publish(env.cargo, write_crate(env.tmp, "DPT_leaf", "0.2.0"), check=False)
    assert lookalike.returncode != 0 and "conflicts with the existing crate `dpt-leaf`" in lookalike.stderr
    lines = requests.get(f"{env.depot.url}/cargo-local/{index_path('dpt-leaf')}", timeout=10).text.splitlines()
    assert [json.loads(line)["vers"] for line in lines] == ["0.1.0"]
    answer = requests.put(f"{env.depot.url}/cargo/api/v1/crates/new",
                          data=publish_frame({"name": "dpt-leaf", "vers": "0.1.0", "deps": [], "features": {}},
                                             crate_bytes("dpt-leaf", "0.1.0")), timeout=10)
    assert answer.status_code == 400 and answer.json() == {
        "errors": [{"detail": "crate version `0.1.0` is already uploaded"}]}
    build_meta = requests.put(f"{env.depot.url}/cargo/api/v1/crates/new", timeout=10, data=publish_frame(
        {"name": "dpt-leaf", "vers": "0.1.0+b7", "deps": [], "features": {}}, crate_bytes("dpt-leaf", "0.1.0+b7")))
    assert build_meta.status_code == 400 and "already uploaded" in build_meta.text


@pytest.mark.parametrize("case", ["truncated", "lengths", "not-json", "bad-name", "bad-version", "not-gzip",
                                  "outside-root", "version-mismatch"])
def test_bad_publish_bodies_are_refused_and_store_nothing(env: SimpleNamespace, case: str) -> None:
    meta = {"name": "dpt-bad", "vers": "1.0.0", "deps": [], "features": {}}
    crate = crate_bytes("dpt-bad", "1.0.0")
    body = publish_frame(meta, crate)
    if case == "truncated":
        body = body[:3]
    elif case == "lengths":
        body = body[:-10]
    elif case == "not-json":
        body = publish_frame({}, crate).replace(b"{}", b"{]")
    elif case == "bad-name":
        body = publish_frame({**meta, "name": "../etc"}, crate)
    elif case == "bad-version":
        body = publish_frame({**meta, "vers": "1.0"}, crate)
    elif case == "not-gzip":
        body = publish_frame(meta, b"plain bytes")
    elif case == "outside-root":
        body = publish_frame(meta, crate_bytes("dpt-evil", "1.0.0"))
    elif case == "version-mismatch":
        body = publish_frame({**meta, "vers": "1.0.1"}, crate)
    answer = requests.put(f"{env.depot.url}/cargo-local/api/v1/crates/new", data=body, timeout=10)
    assert answer.status_code == 400, answer.text
    assert answer.json()["errors"][0]["detail"]
    assert requests.get(f"{env.depot.url}/cargo-local/{index_path('dpt-bad')}", timeout=10).status_code == 404
    assert requests.get(f"{env.depot.url}/cargo-local/api/v1/crates/dpt-bad/1.0.0/download",
                        timeout=10).status_code == 404


# ------------------------------------------------------------------------------------- proxy

def test_proxy_in_front_of_a_second_depot_then_upstream_stopped(depot_factory: Any, tmp_path: Path) -> None:
    upstream = depot_factory(REPOS, name="upstream")
    up_env = cargo_env(cargo_home(tmp_path, {"up": f"{upstream.url}/cargo-local"}, name="home-up"),
                       tmp_path / "target-up",
                       tokens={"up": make_token(upstream, "--repo", "cargo-local", "--perm", "write")})
    publish(up_env, write_crate(tmp_path, "dpt-leaf", "0.1.0", message="leaf"), "up")
    publish(up_env, write_crate(tmp_path, "dpt-mid", "0.1.0", {"dpt-leaf": '{ version = "0.1", registry = "up" }'},
                                message="mid"), "up")
    proxy = depot_factory({"cargo-remote": {"format": "cargo", "type": "proxy",
                                            "upstream": f"{upstream.url}/cargo-local/"}}, name="proxy")
    # crates.io dependencies (no `registry` key) resolved through the proxy by source replacement
    app = write_crate(tmp_path, "app", "1.0.0", {"dpt-mid": '"0.1"'}, binary=True)

    def build(name: str) -> str:
        home = cargo_home(tmp_path, {"mirror": f"{proxy.url}/cargo-remote"}, replace_crates_io="mirror",
                          name=f"home-{name}")
        return build_and_run(cargo_env(home, tmp_path / f"target-{name}"), app)

    assert build("first") == "app mid leaf"
    download = f"{proxy.url}/cargo-remote/api/v1/crates/dpt-leaf/0.1.0/download"
    assert requests.get(download, timeout=10).headers["X-Cache"] == "HIT"
    assert requests.get(f"{proxy.url}/cargo-remote/{index_path('dpt-mid')}", timeout=10).headers["X-Cache"] == "HIT"
    upstream.stop()
    assert build("second") == "app mid leaf"       # fresh CARGO_HOME and target, upstream gone

    # `depot warm` from the lockfile fills a new proxy; it then builds with its upstream gone too
    upstream.start()
    cold = depot_factory({"cargo-remote": {"format": "cargo", "type": "proxy",
                                           "upstream": f"{upstream.url}/cargo-local/"}}, name="cold")
    lock = tmp_path / "Cargo.lock"
    lock.write_text((app / "Cargo.lock").read_text())
    warmed = cold.run_cli("warm", "cargo-remote", str(lock), "--url", cold.url, check=False)
    assert warmed.returncode == 0 and "4 fetched" in warmed.stdout, warmed.stdout + warmed.stderr
    upstream.stop()
    proxy.stop()
    home = cargo_home(tmp_path, {"mirror": f"{cold.url}/cargo-remote"}, replace_crates_io="mirror", name="home-cold")
    assert build_and_run(cargo_env(home, tmp_path / "target-cold"), app) == "app mid leaf"


@pytest.fixture
def static(depot_factory: Any, upstream: Any) -> SimpleNamespace:
    crates = {("dpt-big", "1.0.0"): crate_bytes("dpt-big", "1.0.0", "x" * 2_000_000),
              ("dpt-big", "0.9.0"): crate_bytes("dpt-big", "0.9.0"),
              ("dpt-evil", "1.0.0"): crate_bytes("dpt-evil", "1.0.0")}
    static_registry(upstream.root, upstream.url, crates)
    # the download host serves other bytes than the index's cksum promises
    (upstream.root / "dl/dpt-evil/dpt-evil-1.0.0.crate").write_bytes(crate_bytes("dpt-evil", "1.0.0", "tampered"))
    depot = depot_factory({"cargo-remote": {"format": "cargo", "type": "proxy", "upstream": upstream.url},
                           "cargo-local": {"format": "cargo", "type": "hosted"},
                           "cargo": {"format": "cargo", "type": "group", "members": ["cargo-local", "cargo-remote"],
                                     "deploy_to": "cargo-local"}})
    return SimpleNamespace(depot=depot, upstream=upstream, crates=crates)


def test_group_index_merged_and_the_first_member_wins_per_version(static: SimpleNamespace) -> None:
    mine = crate_bytes("dpt-big", "1.0.0", "-hosted")
    frame = publish_frame({"name": "dpt-big", "vers": "1.0.0", "deps": [], "features": {}}, mine)
    assert requests.put(f"{static.depot.url}/cargo/api/v1/crates/new", data=frame, timeout=10).status_code == 200
    merged = requests.get(f"{static.depot.url}/cargo/{index_path('dpt-big')}", timeout=10)
    lines = [json.loads(line) for line in merged.text.splitlines()]
    assert [(e["vers"], e["cksum"]) for e in lines] == [
        ("1.0.0", sha256(mine)), ("0.9.0", sha256(static.crates[("dpt-big", "0.9.0")]))]
    assert merged.headers["X-Cache"] == "MISS"
    again = requests.get(f"{static.depot.url}/cargo/{index_path('dpt-big')}", timeout=10,
                         headers={"If-None-Match": merged.headers["ETag"]})
    assert again.status_code == 304
    assert requests.get(f"{static.depot.url}/cargo/api/v1/crates/dpt-big/1.0.0/download", timeout=10).content == mine
    old = requests.get(f"{static.depot.url}/cargo/api/v1/crates/dpt-big/0.9.0/download", timeout=10)
    assert old.content == static.crates[("dpt-big", "0.9.0")] and old.headers["X-Cache"] == "MISS"


def test_twenty_concurrent_clients_one_upstream_get(static: SimpleNamespace) -> None:
    static.upstream.mode("/dl/dpt-big/dpt-big-1.0.0.crate", "slow", rate=4_000_000)
    answers = get_many(f"{static.depot.url}/cargo-remote/api/v1/crates/dpt-big/1.0.0/download", 20)
    assert all(a.status == 200 and a.body == static.crates[("dpt-big", "1.0.0")] for a in answers)
    assert static.upstream.count("/dl/dpt-big/dpt-big-1.0.0.crate") == 1


def test_crate_not_matching_the_index_cksum_is_refused(static: SimpleNamespace, tmp_path: Path) -> None:
    url = f"{static.depot.url}/cargo-remote/api/v1/crates/dpt-evil/1.0.0/download"
    for _ in range(2):                          # refused (or cut off before its last bytes), not stored
        answer = get(url)
        assert answer.status == 502 or not answer.complete, answer.status
    assert static.upstream.count("/dl/dpt-evil/dpt-evil-1.0.0.crate") == 2
    home = cargo_home(tmp_path, {"mirror": f"{static.depot.url}/cargo-remote"}, replace_crates_io="mirror")
    app = write_crate(tmp_path, "app", "1.0.0", {"dpt-evil": '"1"'}, binary=True)
    assert run_cargo(cargo_env(home, tmp_path / "t"), app, "fetch", check=False).returncode != 0


def test_index_files_are_revalidated_with_the_upstream(static: SimpleNamespace, depot_factory: Any) -> None:
    depot = depot_factory({"cargo-remote": {"format": "cargo", "type": "proxy", "upstream": static.upstream.url,
                                            "metadata_ttl": "1s"}}, name="short-ttl")
    url = f"{depot.url}/cargo-remote/{index_path('dpt-big')}"
    assert requests.get(url, timeout=10).headers["X-Cache"] == "MISS"
    second = requests.get(url, timeout=10)
    assert second.headers["X-Cache"] == "HIT" and second.headers.get("ETag")
    assert requests.get(url, headers={"If-None-Match": second.headers["ETag"]}, timeout=10).status_code == 304
    import time
    time.sleep(1.5)
    assert requests.get(url, timeout=10).headers["X-Cache"] == "REVALIDATED"
    assert static.upstream.count(f"/{index_path('dpt-big')}", conditional=True) == 1


# ------------------------------------------------------------------------------------ access

def test_tokens_login_challenge_and_private_reads(depot_factory: Any, tmp_path: Path) -> None:
    depot = depot_factory(REPOS, secure=True)
    frame = publish_frame({"name": "dpt-leaf", "vers": "0.1.0", "deps": [], "features": {}},
                          crate_bytes("dpt-leaf", "0.1.0"))
    anonymous = requests.put(f"{depot.url}/cargo/api/v1/crates/new", data=frame, timeout=10)
    assert anonymous.status_code == 401 and anonymous.headers["WWW-Authenticate"].startswith("Cargo ")
    assert anonymous.json()["errors"][0]["detail"]

    reader = make_token(depot, "--repo", "cargo-local", "--perm", "read")
    writer = make_token(depot, "--repo", "cargo-local", "--perm", "write")
    home = cargo_home(tmp_path, {"depot": f"{depot.url}/cargo-local"})
    cenv = cargo_env(home, tmp_path / "target", tokens={"depot": reader})
    denied = publish(cenv, write_crate(tmp_path, "dpt-leaf", "0.1.0", message="leaf"), check=False)
    assert denied.returncode != 0 and "403" in denied.stderr, denied.stderr

    cenv = cargo_env(home, tmp_path / "target")          # `cargo login` stores the write token
    run_cargo(cenv, tmp_path, "login", "--registry", "depot", input=writer + "\n")
    assert writer in (home / "credentials.toml").read_text()
    publish(cenv, write_crate(tmp_path, "dpt-leaf", "0.1.0", message="leaf"))

    # the hosted repository is private: cargo gets a 401 on config.json, then sends its token
    assert requests.get(f"{depot.url}/cargo-local/config.json", timeout=10).status_code == 401
    app = write_crate(tmp_path, "app", "1.0.0", {"dpt-leaf": '{ version = "0.1", registry = "depot" }'}, binary=True)
    reading = cargo_env(cargo_home(tmp_path, {"depot": f"{depot.url}/cargo-local"}, name="home-read"),
                        tmp_path / "target-read", tokens={"depot": reader})
    assert build_and_run(reading, app) == "app leaf"


def test_concurrent_publishes_of_one_crate_keep_every_version(env: SimpleNamespace) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def put(minor: int) -> int:
        version = f"0.{minor}.0"
        frame = publish_frame({"name": "dpt-many", "vers": version, "deps": [], "features": {}},
                              crate_bytes("dpt-many", version))
        return requests.put(f"{env.depot.url}/cargo/api/v1/crates/new", data=frame, timeout=60).status_code

    with ThreadPoolExecutor(12) as pool:
        assert list(pool.map(put, range(12))) == [200] * 12
    lines = requests.get(f"{env.depot.url}/cargo/{index_path('dpt-many')}", timeout=10).text.splitlines()
    assert sorted(json.loads(line)["vers"] for line in lines) == sorted(f"0.{m}.0" for m in range(12))
