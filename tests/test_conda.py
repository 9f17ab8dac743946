"""Conda with py-rattler (solve + install into a prefix) against real depot processes.

Upstreams are a second depot (a generic hosted repository holding a channel tree) or a
static channel served by tests/upstream.py, counting requests; never the internet.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import requests
import zstandard

sys.path.insert(0, str(Path(__file__).resolve().parent))

from conda_fixtures import package, write_channel  # noqa: E402
from http_util import get  # noqa: E402
from proxy_chain import assert_one_upstream_get  # noqa: E402

import rattler  # noqa: E402,F401  (a missing client fails the run loudly)

SOLVE = """
import asyncio, os, sys, rattler
async def main():
    records = await rattler.solve(sources=[sys.argv[1]], specs=sys.argv[3:], platforms=["linux-64", "noarch"])
    await rattler.install(records, target_prefix=sys.argv[2])
    print(" ".join(sorted(f"{r.name.normalized}={r.version}" for r in records)), flush=True)
asyncio.run(main())
os._exit(0)
"""

REPOS = {
    "conda-local": {"format": "conda", "type": "hosted"},
    "conda": {"format": "conda", "type": "group", "members": ["conda-local"], "deploy_to": "conda-local"},
}


def solve(tmp: Path, channel: str, *specs: str, name: str = "prefix") -> tuple[str, Path]:
    """py-rattler solves `specs` from `channel` and installs them into a fresh prefix."""
    prefix = tmp / name
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONDA", "RATTLER", "PIXI"))}
    env.update(HOME=str(tmp / f"home-{name}"), XDG_CACHE_HOME=str(tmp / f"cache-{name}"),
               RATTLER_CACHE_DIR=str(tmp / f"cache-{name}" / "rattler"))
    done = subprocess.run([sys.executable, "-c", SOLVE, channel, str(prefix), *specs], capture_output=True,
                          text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.strip(), prefix


def put(url: str, data: bytes, auth: Any = None) -> requests.Response:
    return requests.put(url, data=data, auth=auth, timeout=30)


def upstream_requests(depot: Any) -> float:
    """depot_upstream_requests_total of a depot, all repositories and statuses."""
    text = requests.get(f"{depot.url}/-/metrics", timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("depot_upstream_requests_total"))


# ------------------------------------------------------------------------------------- hosted

def test_hosted_conda_and_tar_bz2_solved_and_installed_through_the_group(depot_factory: Any, tmp_path: Path) -> None:
    depot = depot_factory(REPOS)
    leaf_path, leaf = package("dpt-leaf", "1.0", "tar.bz2")
    app_path, app = package("dpt-app", "2.0", "conda", depends=["dpt-leaf >=1"])
    for path, data in ((leaf_path, leaf), (app_path, app)):
        answer = put(f"{depot.url}/conda/{path}", data)
        assert answer.status_code == 201, answer.text
        assert answer.json()["sha256"] == hashlib.sha256(data).hexdigest()
    repodata = requests.get(f"{depot.url}/conda-local/noarch/repodata.json", timeout=10).json()
    assert repodata["packages"]["dpt-leaf-1.0-0.tar.bz2"]["sha256"] == hashlib.sha256(leaf).hexdigest()
    assert repodata["packages.conda"]["dpt-app-2.0-0.conda"]["depends"] == ["dpt-leaf >=1"]
    packed = requests.get(f"{depot.url}/conda/noarch/repodata.json.zst", timeout=10)
    assert json.loads(zstandard.ZstdDecompressor().decompress(packed.content, max_output_size=1 << 24)) \
        ["packages.conda"]["dpt-app-2.0-0.conda"]["md5"] == hashlib.md5(app).hexdigest()
    assert requests.get(f"{depot.url}/conda/linux-64/repodata.json", timeout=10).json()["packages"] == {}
    channeldata = requests.get(f"{depot.url}/conda/channeldata.json", timeout=10).json()
    assert channeldata["packages"]["dpt-app"]["subdirs"] == ["noarch"]
    for variant in ("repodata_shards.msgpack.zst", "repodata.json.bz2", "repodata.jlap"):
        assert requests.get(f"{depot.url}/conda/noarch/{variant}", timeout=10).status_code == 404

    solved, prefix = solve(tmp_path, f"{depot.url}/conda", "dpt-app")
    assert solved == "dpt-app=2.0 dpt-leaf=1.0"
    assert (prefix / "share/dpt-leaf.txt").read_text() == "dpt-leaf 1.0\n"
    assert (prefix / "share/dpt-app.txt").read_text() == "dpt-app 2.0\n"
    # a published version is immutable; the same bytes again are accepted
    assert put(f"{depot.url}/conda/{leaf_path}", package("dpt-leaf", "1.0", "tar.bz2", text="other")[1]
               ).status_code == 409
    assert put(f"{depot.url}/conda/{leaf_path}", leaf).status_code == 200


@pytest.mark.parametrize("case", ["not-an-archive", "name-mismatch", "wrong-subdir", "no-index", "bad-path"])
def test_bad_archives_are_refused_and_store_nothing(depot_factory: Any, case: str) -> None:
    depot = depot_factory(REPOS)
    path, data = package("dpt-ok", "1.0", "conda")
    if case == "not-an-archive":
        data = b"PK\x03\x04 truncated"
    elif case == "name-mismatch":
        data = package("dpt-other", "1.0", "conda")[1]
    elif case == "wrong-subdir":
        path = "linux-64/dpt-ok-1.0-0.conda"
    elif case == "no-index":
        import bz2
        data = bz2.compress(b"not a tar at all")
        path = "noarch/dpt-ok-1.0-0.tar.bz2"
    else:
        path = "noarch/repodata.json"
    answer = put(f"{depot.url}/conda/{path}", data)
    assert answer.status_code == 400 and answer.json()["error"], answer.text
    assert requests.get(f"{depot.url}/conda/{path}", timeout=10).status_code == 404 or case == "bad-path"
    assert requests.get(f"{depot.url}/conda-local/noarch/repodata.json", timeout=10).json()["packages.conda"] == {}


def test_anonymous_upload_401_and_read_token_403(depot_factory: Any) -> None:
    depot = depot_factory({**REPOS, "conda": {**REPOS["conda"], "anonymous_read": True}}, secure=True)
    path, data = package("dpt-sec", "1.0", "conda")
    anonymous = put(f"{depot.url}/conda/{path}", data)
    assert anonymous.status_code == 401 and anonymous.headers.get("WWW-Authenticate")
    assert anonymous.json()["error"]
    reader = depot.run_cli("token", "create", "--repo", "conda-local", "--perm", "read").stdout.strip().splitlines()[-1]
    assert put(f"{depot.url}/conda/{path}", data, auth=("u", reader)).status_code == 403
    writer = depot.run_cli("token", "create", "--repo", "conda-local", "--perm", "write").stdout.strip().splitlines()[-1]
    assert put(f"{depot.url}/conda/{path}", data, auth=("u", writer)).status_code == 201
    assert "dpt-sec-1.0-0.conda" in requests.get(f"{depot.url}/conda/noarch/repodata.json", auth=("u", reader),
                                                 timeout=10).json()["packages.conda"]


# ------------------------------------------------------------------------------------- proxy

def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children (depot's workers), in MB."""
    total = 0.0
    for proc in [pid, *map(int, subprocess.run(["pgrep", "-P", str(pid)], capture_output=True,
                                                  text=True).stdout.split())]:
        for line in Path(f"/proc/{proc}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                total = max(total, int(line.split()[1]) / 1024)
    return total


def test_proxy_of_a_big_channel_in_a_second_depot(depot_factory: Any, tmp_path: Path) -> None:
    """repodata.json of 50+ MB: streamed, stored once, merged in the group; peak RSS < 300 MB;
    the second solve is all HITs; with the upstream stopped it still solves."""
    leaf_path, leaf = package("dpt-leaf", "1.0", "tar.bz2")
    app_path, app = package("dpt-app", "2.0", "conda", depends=["dpt-leaf >=1"])
    channel = tmp_path / "channel"
    write_channel(channel, {leaf_path: leaf, app_path: app}, filler=140_000)
    size = (channel / "noarch/repodata.json").stat().st_size
    assert size >= 50 * 2**20, size
    upstream = depot_factory({"files": {"format": "generic", "type": "hosted"}}, name="upstream")
    for path in ("noarch/repodata.json", "linux-64/repodata.json", leaf_path, app_path):
        with open(channel / path, "rb") as body:
            assert requests.put(f"{upstream.url}/files/{path}", data=body, timeout=120).status_code == 201
    depot = depot_factory({
        "conda-remote": {"format": "conda", "type": "proxy", "upstream": f"{upstream.url}/files"},
        "conda-local": {"format": "conda", "type": "hosted"},
        "conda": {"format": "conda", "type": "group", "members": ["conda-local", "conda-remote"],
                  "deploy_to": "conda-local"}}, name="proxy")
    mine_path, mine = package("dpt-mine", "0.1", "conda", depends=["dpt-app"])
    assert put(f"{depot.url}/conda/{mine_path}", mine).status_code == 201

    solved, prefix = solve(tmp_path, f"{depot.url}/conda", "dpt-mine", name="first")
    assert solved == "dpt-app=2.0 dpt-leaf=1.0 dpt-mine=0.1"
    assert (prefix / "share/dpt-leaf.txt").read_text() == "dpt-leaf 1.0\n"
    for path in ("noarch/repodata.json", app_path, leaf_path):
        assert requests.head(f"{depot.url}/conda-remote/{path}", timeout=60).headers["X-Cache"] == "HIT"
    merged = requests.get(f"{depot.url}/conda/noarch/repodata.json", timeout=120)
    assert merged.headers["X-Cache"] == "HIT" and len(merged.content) > size - 2**20
    doc = merged.json()
    assert len(doc["packages"]) == 140_001 and set(doc["packages.conda"]) == {
        "dpt-app-2.0-0.conda", "dpt-mine-0.1-0.conda"}
    again = requests.get(f"{depot.url}/conda/noarch/repodata.json", headers={"If-None-Match": merged.headers["ETag"]},
                         timeout=60)
    assert again.status_code == 304
    asked = upstream_requests(depot)
    solve(tmp_path, f"{depot.url}/conda", "dpt-mine", name="second")
    assert upstream_requests(depot) == asked > 0          # the second solve: all from the cache
    log = depot.log()
    peak = rss_mb(depot.proc.pid)
    print(f"depot peak RSS {peak:.0f} MB with a {size / 2**20:.0f} MB repodata.json")
    assert peak < 300, peak
    upstream.stop()
    solved, prefix = solve(tmp_path, f"{depot.url}/conda", "dpt-mine", name="offline")
    assert solved == "dpt-app=2.0 dpt-leaf=1.0 dpt-mine=0.1" and (prefix / "share/dpt-app.txt").exists()
    assert log


@pytest.fixture
def static(depot_factory: Any, upstream: Any) -> SimpleNamespace:
    big_path, big = package("dpt-big", "1.0", "conda", text="x" * 3_000_000)
    evil_path, evil = package("dpt-evil", "1.0", "tar.bz2")
    write_channel(upstream.root, {big_path: big, evil_path: evil})
    # the file the upstream serves is not the one its repodata lists
    (upstream.root / evil_path).write_bytes(package("dpt-evil", "1.0", "tar.bz2", text="tampered")[1])
    depot = depot_factory({"conda-remote": {"format": "conda", "type": "proxy", "upstream": upstream.url}})
    return SimpleNamespace(depot=depot, upstream=upstream, big=(big_path, big), evil=evil_path)


def test_group_merges_repodata_and_channeldata_first_member_wins(static: SimpleNamespace,
                                                                 depot_factory: Any) -> None:
    (static.upstream.root / "channeldata.json").write_text(json.dumps(
        {"channeldata_version": 1, "subdirs": ["noarch"], "packages": {"dpt-evil": {"subdirs": ["noarch"]}}}))
    depot = depot_factory({"conda-remote": {"format": "conda", "type": "proxy", "upstream": static.upstream.url},
                           "conda-local": {"format": "conda", "type": "hosted"},
                           "conda": {"format": "conda", "type": "group", "members": ["conda-local", "conda-remote"],
                                     "deploy_to": "conda-local"}}, name="group")
    path, mine = package("dpt-big", "1.0", "conda", text="mine")
    assert path == static.big[0] and put(f"{depot.url}/conda/{path}", mine).status_code == 201
    merged = requests.get(f"{depot.url}/conda/noarch/repodata.json", timeout=10)
    records = merged.json()["packages.conda"]
    assert records["dpt-big-1.0-0.conda"]["sha256"] == hashlib.sha256(mine).hexdigest()
    assert merged.json()["packages"]["dpt-evil-1.0-0.tar.bz2"] and merged.headers["X-Cache"] == "MISS"
    assert requests.get(f"{depot.url}/conda/{path}", timeout=10).content == mine
    packed = requests.get(f"{depot.url}/conda/noarch/repodata.json.zst", timeout=10)
    assert json.loads(zstandard.ZstdDecompressor().decompress(packed.content, max_output_size=1 << 24)) \
        == merged.json()
    assert requests.get(f"{depot.url}/conda/noarch/repodata.json.zst", headers={"If-None-Match": packed.headers["ETag"]},
                        timeout=10).status_code == 304
    channeldata = requests.get(f"{depot.url}/conda/channeldata.json", timeout=10).json()
    assert set(channeldata["packages"]) == {"dpt-big", "dpt-evil"}
    # the upstream's sharded index would hide the hosted packages: the group answers 404 instead
    (static.upstream.root / "noarch/repodata_shards.msgpack.zst").write_bytes(b"shards")
    assert requests.get(f"{depot.url}/conda-remote/noarch/repodata_shards.msgpack.zst", timeout=10).content == b"shards"
    assert requests.get(f"{depot.url}/conda/noarch/repodata_shards.msgpack.zst", timeout=10).status_code == 404


def test_twenty_concurrent_clients_one_upstream_get(static: SimpleNamespace) -> None:
    path, data = static.big
    assert requests.get(f"{static.depot.url}/conda-remote/noarch/repodata.json", timeout=10).status_code == 200
    static.upstream.mode(f"/{path}", "slow", rate=4_000_000)
    assert_one_upstream_get(f"{static.depot.url}/conda-remote/{path}", data,
                            lambda: static.upstream.count(f"/{path}"))


def test_package_not_matching_the_repodata_sha256_is_never_served(static: SimpleNamespace, tmp_path: Path) -> None:
    url = f"{static.depot.url}/conda-remote/{static.evil}"
    for _ in range(2):
        answer = get(url)
        assert answer.status == 502 or not answer.complete, answer.status
    assert static.upstream.count(f"/{static.evil}") == 2
    env = {k: v for k, v in os.environ.items() if not k.startswith("RATTLER")}
    done = subprocess.run([sys.executable, "-c", SOLVE, f"{static.depot.url}/conda-remote", str(tmp_path / "p"),
                           "dpt-evil"], capture_output=True, text=True, timeout=300,
                          env={**env, "HOME": str(tmp_path), "XDG_CACHE_HOME": str(tmp_path / "c")})
    assert done.returncode != 0 and not (tmp_path / "p/share/dpt-evil.txt").exists()


def test_repodata_revalidated_and_variants_fall_back(static: SimpleNamespace, depot_factory: Any) -> None:
    depot = depot_factory({"conda-remote": {"format": "conda", "type": "proxy", "upstream": static.upstream.url,
                                            "metadata_ttl": "1s"}}, name="short-ttl")
    url = f"{depot.url}/conda-remote/noarch/repodata.json"
    assert requests.get(url, timeout=10).headers["X-Cache"] == "MISS"
    assert requests.get(url, timeout=10).headers["X-Cache"] == "HIT"
    time.sleep(1.5)
    assert requests.get(url, timeout=10).headers["X-Cache"] == "REVALIDATED"
    assert static.upstream.count("/noarch/repodata.json", conditional=True) == 1
    for variant in ("repodata.json.zst", "repodata_shards.msgpack.zst"):
        assert requests.get(f"{depot.url}/conda-remote/noarch/{variant}", timeout=10).status_code == 404


def test_warm_from_an_explicit_spec_then_serves_with_the_upstream_stopped(static: SimpleNamespace,
                                                                          tmp_path: Path) -> None:
    path, data = static.big
    spec = tmp_path / "explicit.txt"
    spec.write_text(f"# platform: linux-64\n@EXPLICIT\nhttps://conda.anaconda.org/conda-forge/{path}#0123\n")
    warmed = static.depot.run_cli("warm", "conda-remote", str(spec), "--url", static.depot.url, check=False)
    assert warmed.returncode == 0 and "2 fetched" in warmed.stdout, warmed.stdout + warmed.stderr
    static.upstream.stop()
    answer = requests.get(f"{static.depot.url}/conda-remote/{path}", timeout=10)
    assert answer.content == data and answer.headers["X-Cache"] == "HIT"


def test_twenty_parallel_uploads_all_listed_in_repodata(depot_factory: Any) -> None:
    from concurrent.futures import ThreadPoolExecutor
    depot = depot_factory(REPOS)
    built = [package(f"dpt-par{i}", "1.0", "conda" if i % 2 else "tar.bz2") for i in range(20)]
    with ThreadPoolExecutor(20) as pool:
        codes = list(pool.map(lambda item: put(f"{depot.url}/conda/{item[0]}", item[1]).status_code, built))
    assert codes == [201] * 20
    doc = requests.get(f"{depot.url}/conda/noarch/repodata.json", timeout=10).json()
    assert {*doc["packages"], *doc["packages.conda"]} == {path.split("/", 1)[1] for path, _ in built}


def test_policy_hides_denied_packages_from_repodata_and_refuses_them(static: SimpleNamespace,
                                                                     depot_factory: Any) -> None:
    depot = depot_factory({"conda-remote": {"format": "conda", "type": "proxy", "upstream": static.upstream.url},
                           "conda-local": {"format": "conda", "type": "hosted"},
                           "conda": {"format": "conda", "type": "group", "members": ["conda-local", "conda-remote"],
                                     "deploy_to": "conda-local"}},
                          name="policy", extra={"policy": {"deny": ["dpt-evil"]}})
    for repo in ("conda-remote", "conda"):
        doc = requests.get(f"{depot.url}/{repo}/noarch/repodata.json", timeout=10).json()
        assert "dpt-evil-1.0-0.tar.bz2" not in doc["packages"] and "dpt-big-1.0-0.conda" in doc["packages.conda"]
    refused = requests.get(f"{depot.url}/conda-remote/{static.evil}", timeout=10)
    assert refused.status_code == 403 and "dpt-evil" in refused.json()["error"]
