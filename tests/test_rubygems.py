"""RubyGems with the real gem and bundler (Debian's ruby) against real depot processes.

Every client run has a private HOME, GEM_HOME and BUNDLE_PATH; upstreams are a second depot
(hosted, filled by `gem push`) or a static compact index served by tests/upstream.py.
"""
from __future__ import annotations

import base64
import gzip
import hashlib
import io
import os
import sys
import tarfile
import zlib
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gem_fixtures import (build_gem, bundle_install, gem_env, gem_install, locked, push, ruby_load,  # noqa: E402
                          run, sha256)
from http_util import get, get_many  # noqa: E402

REPOS = {
    "rubygems-local": {"format": "rubygems", "type": "hosted"},
    "rubygems": {"format": "rubygems", "type": "group", "members": ["rubygems-local"], "deploy_to": "rubygems-local"},
}


def make_token(depot: Any, *args: str) -> str:
    return depot.run_cli("token", "create", *args).stdout.strip().splitlines()[-1]


def depot_log(depot: Any, needle: str) -> list[str]:
    return [line for line in depot.log().splitlines() if needle in line]


@pytest.fixture
def env(depot_factory: Any, tmp_path: Path) -> SimpleNamespace:
    depot = depot_factory(REPOS)
    key = make_token(depot, "--repo", "rubygems-local", "--perm", "write")
    return SimpleNamespace(depot=depot, tmp=tmp_path, key=key, group=f"{depot.url}/rubygems",
                           pusher=gem_env(tmp_path, "pusher", key))


def publish_pair(env: SimpleNamespace, leaf_versions: tuple[str, ...] = ("1.0.1",)) -> None:
    for version in leaf_versions:
        push(env.pusher, build_gem(env.tmp, "dpt_leaf", version), env.group)
    push(env.pusher, build_gem(env.tmp, "dpt_tiny", "1.0.0", {"dpt_leaf": ["~> 1.0", ">= 1.0.1"]}), env.group)


def test_push_then_gem_install_and_bundle_install_through_group(env: SimpleNamespace) -> None:
    leaf = build_gem(env.tmp, "dpt_leaf", "1.0.1")
    pushed = push(env.pusher, leaf, env.group)
    assert "Successfully registered gem: dpt_leaf (1.0.1)" in pushed.stdout
    push(env.pusher, build_gem(env.tmp, "dpt_tiny", "1.0.0", {"dpt_leaf": ["~> 1.0", ">= 1.0.1"]}), env.group)

    info = requests.get(f"{env.group}/info/dpt_tiny", timeout=10)
    assert info.status_code == 200 and info.text.splitlines()[0] == "---"
    assert info.headers["ETag"] == f'"{hashlib.md5(info.content).hexdigest()}"'   # what bundler 2.3 checks
    assert info.text.splitlines()[1].startswith("1.0.0 dpt_leaf:~> 1.0&>= 1.0.1|checksum:")
    assert f"checksum:{sha256(leaf.read_bytes())}" in requests.get(f"{env.group}/info/dpt_leaf", timeout=10).text

    installer = gem_env(env.tmp, "installer")
    gem_install(installer, f"{env.group}/", "dpt_tiny")
    gems = Path(installer["GEM_HOME"]) / "gems"
    assert sorted(p.name for p in gems.iterdir()) == ["dpt_leaf-1.0.1", "dpt_tiny-1.0.0"]

    app = env.tmp / "app"
    bundler = gem_env(env.tmp, "bundler")
    bundle_install(bundler, app, f"{env.group}/", {"dpt_tiny": ""})
    assert locked(app) == {"dpt_leaf": "1.0.1", "dpt_tiny": "1.0.0"}
    out = run(bundler, "bundle", "exec", "ruby", "-e", 'require "dpt_tiny"; require "dpt_leaf"; puts DptTiny.hi',
              cwd=app).stdout
    assert out.strip() == "dpt_tiny 1.0.0"
    assert depot_log(env.depot, "GET /rubygems/versions") and depot_log(env.depot, "GET /rubygems/gems/dpt_leaf")

    # the same bundler home again, after a new version: its compact index copy is brought up to date
    push(env.pusher, build_gem(env.tmp, "dpt_leaf", "1.0.2"), env.group)
    again = gem_env(env.tmp, "bundler")
    (app / "Gemfile.lock").unlink()
    bundle_install(again, app, f"{env.group}/", {"dpt_tiny": ""})
    assert locked(app)["dpt_leaf"] == "1.0.2"


def test_yank_hides_the_version_from_bundler(env: SimpleNamespace) -> None:
    publish_pair(env, ("1.0.1", "1.0.2"))
    app, bundler = env.tmp / "app", gem_env(env.tmp, "bundler")
    bundle_install(bundler, app, f"{env.group}/", {"dpt_tiny": ""})
    assert locked(app)["dpt_leaf"] == "1.0.2"

    yanked = run(env.pusher, "gem", "yank", "dpt_leaf", "-v", "1.0.2", "--host", env.group)
    assert "Successfully deleted gem: dpt_leaf (1.0.2)" in yanked.stdout
    assert "1.0.2" not in requests.get(f"{env.group}/info/dpt_leaf", timeout=10).text
    assert requests.get(f"{env.group}/gems/dpt_leaf-1.0.2.gem", timeout=10).status_code == 404
    (app / "Gemfile.lock").unlink()
    bundler["BUNDLE_PATH"] += "-2"          # its compact index copy is updated (Range, ETag), no gem installed
    bundle_install(bundler, app, f"{env.group}/", {"dpt_tiny": ""})
    assert locked(app)["dpt_leaf"] == "1.0.1"
    # a yanked version can never be pushed again
    again = push(env.pusher, build_gem(env.tmp, "dpt_leaf", "1.0.2", body=" again"), env.group, check=False)
    assert again.returncode != 0 and "Repushing of gem versions is not allowed" in again.stdout + again.stderr
    missing = run(env.pusher, "gem", "yank", "dpt_leaf", "-v", "9.9.9", "--host", env.group, check=False)
    assert "does not exist" in missing.stdout + missing.stderr


def test_duplicate_push_is_refused(env: SimpleNamespace) -> None:
    gem = build_gem(env.tmp, "dpt_leaf", "1.0.1")
    push(env.pusher, gem, env.group)
    same = push(env.pusher, gem, env.group, check=False)
    assert same.returncode != 0 and "Repushing of gem versions is not allowed" in same.stdout + same.stderr
    other = push(env.pusher, build_gem(env.tmp, "dpt_leaf", "1.0.1", body=" other"), env.group, check=False)
    assert other.returncode != 0
    lines = requests.get(f"{env.group}/info/dpt_leaf", timeout=10).text.splitlines()
    assert lines == ["---", f"1.0.1 |checksum:{sha256(gem.read_bytes())}"]
    assert requests.get(f"{env.group}/gems/dpt_leaf-1.0.1.gem", timeout=10).content == gem.read_bytes()


def gem_with_metadata(yaml_text: str, compress: bool = True) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        data = gzip.compress(yaml_text.encode()) if compress else yaml_text.encode()
        info = tarfile.TarInfo("metadata.gz")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


GOOD_YAML = "--- !ruby/object:Gem::Specification\nname: dpt_bad\nversion: !ruby/object:Gem::Version\n  version: 1.0.0\n"


@pytest.mark.parametrize("case", ["not-a-tar", "no-metadata", "not-gzip", "bad-yaml", "python-tag", "bad-name",
                                  "bad-version", "bad-requirement", "oversized"])
def test_bad_gems_are_refused_and_store_nothing(depot_factory: Any, tmp_path: Path, case: str) -> None:
    depot = depot_factory({**REPOS, "rubygems-local": {**REPOS["rubygems-local"], "max_upload": "64KiB"}})
    bodies = {
        "not-a-tar": b"plain bytes, not a gem",
        "no-metadata": b"",
        "not-gzip": gem_with_metadata(GOOD_YAML, compress=False),
        "bad-yaml": gem_with_metadata("--- [unclosed"),
        "python-tag": gem_with_metadata("--- !!python/object/apply:os.system ['touch /tmp/pwned']\n"),
        "bad-name": gem_with_metadata(GOOD_YAML.replace("dpt_bad", "../dpt_bad")),
        "bad-version": gem_with_metadata(GOOD_YAML.replace("1.0.0", "1.0.0; rm")),
        "bad-requirement": gem_with_metadata(GOOD_YAML + "dependencies:\n- !ruby/object:Gem::Dependency\n"
                                             "  name: x\n  requirement: !ruby/object:Gem::Requirement\n"
                                             "    requirements:\n    - - '=~'\n      - '1'\n"),
        "oversized": gem_with_metadata(GOOD_YAML) + b"\0" * 100_000,
    }
    if case == "no-metadata":
        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode="w") as tar:
            info = tarfile.TarInfo("data.tar.gz")
            tar.addfile(info, io.BytesIO(b""))
        bodies[case] = out.getvalue()
    key = make_token(depot, "--repo", "rubygems-local", "--perm", "write")
    answer = requests.post(f"{depot.url}/rubygems/api/v1/gems", data=bodies[case], timeout=10,
                           headers={"Authorization": key, "Content-Type": "application/octet-stream"})
    assert answer.status_code == (413 if case == "oversized" else 422), answer.text
    assert answer.headers["Content-Type"].startswith("text/plain") and answer.text.strip()
    if case != "oversized":
        assert answer.text.startswith("Invalid gem:")
    assert requests.get(f"{depot.url}/rubygems/info/dpt_bad", timeout=10).status_code == 404
    assert requests.get(f"{depot.url}/rubygems/versions", timeout=10).text.endswith("---\n")
    assert not Path("/tmp/pwned").exists() or case != "python-tag"


def test_full_index_and_dependency_api_load_in_ruby(env: SimpleNamespace) -> None:
    publish_pair(env, ("1.0.1", "2.0.0.beta1"))
    push(env.pusher, build_gem(env.tmp, "dpt_leaf", "1.0.2", platform="x86_64-linux"), env.group)
    specs = gzip.decompress(requests.get(f"{env.group}/specs.4.8.gz", timeout=10).content)
    assert ruby_load(specs, "p d.map { |n, v, pl| [n, v.to_s, pl] }", env.tmp) == \
        '[["dpt_leaf", "1.0.1", "ruby"], ["dpt_leaf", "1.0.2", "x86_64-linux"], ["dpt_tiny", "1.0.0", "ruby"]]'
    latest = gzip.decompress(requests.get(f"{env.group}/latest_specs.4.8.gz", timeout=10).content)
    assert "dpt_tiny" in ruby_load(latest, "p d.map(&:first)", env.tmp)
    pre = gzip.decompress(requests.get(f"{env.group}/prerelease_specs.4.8.gz", timeout=10).content)
    assert ruby_load(pre, "p d.map { |n, v, pl| [n, v.to_s, v.prerelease?] }", env.tmp) == \
        '[["dpt_leaf", "2.0.0.beta1", true]]'
    quick = requests.get(f"{env.group}/quick/Marshal.4.8/dpt_tiny-1.0.0.gemspec.rz", timeout=10).content
    described = ruby_load(zlib.decompress(quick), "puts d.full_name, d.dependencies.map(&:to_s).inspect, d.summary",
                          env.tmp)
    assert described.splitlines() == ["dpt_tiny-1.0.0", '["dpt_leaf (~> 1.0, >= 1.0.1)"]', "test gem"]
    deps = requests.get(f"{env.group}/api/v1/dependencies?gems=dpt_tiny", timeout=10).content
    assert ruby_load(deps, "p d", env.tmp) == \
        '[{:name=>"dpt_tiny", :number=>"1.0.0", :platform=>"ruby", :dependencies=>[["dpt_leaf", "~> 1.0, >= 1.0.1"]]}]'
    assert requests.get(f"{env.group}/api/v1/dependencies", timeout=10).status_code == 200
    names = requests.get(f"{env.group}/names", timeout=10).text
    assert names == "---\ndpt_leaf\ndpt_tiny\n"


def test_versions_file_is_append_only_for_bundler_range_updates(env: SimpleNamespace) -> None:
    push(env.pusher, build_gem(env.tmp, "dpt_leaf", "1.0.1"), env.group)
    push(env.pusher, build_gem(env.tmp, "dpt_tiny", "1.0.0"), env.group)
    first = requests.get(f"{env.group}/versions", timeout=10).content
    for step in ("push", "yank"):             # a new version of an existing gem, then a yank: appended lines
        if step == "push":
            push(env.pusher, build_gem(env.tmp, "dpt_leaf", "1.0.2"), env.group)
        else:
            run(env.pusher, "gem", "yank", "dpt_leaf", "-v", "1.0.1", "--host", env.group)
        whole = requests.get(f"{env.group}/versions", timeout=10)
        assert whole.content.startswith(first)
        part = requests.get(f"{env.group}/versions", timeout=10, headers={
            "Range": f"bytes={len(first) - 1}-", "If-None-Match": f'"{hashlib.md5(first).hexdigest()}"'})
        assert part.status_code == 206 and first[:-1] + part.content == whole.content
        assert part.headers["ETag"] == f'"{hashlib.md5(whole.content).hexdigest()}"'
        digest = base64.b64encode(hashlib.sha256(whole.content).digest()).decode()
        assert whole.headers["Repr-Digest"] == f"sha-256=:{digest}:"
        first = whole.content
    info = requests.get(f"{env.group}/info/dpt_leaf", timeout=10).content
    assert first.decode().splitlines()[-1] == f"dpt_leaf -1.0.1 {hashlib.md5(info).hexdigest()}"
    same = requests.get(f"{env.group}/versions", timeout=10, headers={"If-None-Match": f'"{hashlib.md5(first).hexdigest()}"'})
    assert same.status_code == 304


# ------------------------------------------------------------------------------------- proxy

def test_proxy_in_front_of_a_second_depot_then_upstream_stopped(depot_factory: Any, tmp_path: Path) -> None:
    upstream = depot_factory(REPOS, name="upstream")
    pusher = gem_env(tmp_path, "pusher", make_token(upstream, "--repo", "rubygems-local", "--perm", "write"))
    push(pusher, build_gem(tmp_path, "dpt_leaf", "1.0.1"), f"{upstream.url}/rubygems-local")
    push(pusher, build_gem(tmp_path, "dpt_tiny", "1.0.0", {"dpt_leaf": ["~> 1.0"]}), f"{upstream.url}/rubygems-local")
    proxy = depot_factory({"rubygems-remote": {"format": "rubygems", "type": "proxy",
                                               "upstream": f"{upstream.url}/rubygems-local"}}, name="proxy")
    source = f"{proxy.url}/rubygems-remote/"

    app = tmp_path / "app"
    bundle_install(gem_env(tmp_path, "first"), app, source, {"dpt_tiny": ""})
    assert locked(app) == {"dpt_leaf": "1.0.1", "dpt_tiny": "1.0.0"}
    for path in ("versions", "info/dpt_tiny", "gems/dpt_leaf-1.0.1.gem"):
        assert requests.get(source + path, timeout=10).headers["X-Cache"] == "HIT", path
    gem_install(gem_env(tmp_path, "gem-first"), source, "dpt_tiny")

    upstream.stop()
    (app / "Gemfile.lock").unlink()
    bundle_install(gem_env(tmp_path, "second"), app, source, {"dpt_tiny": ""})   # fresh home, upstream gone
    assert locked(app) == {"dpt_leaf": "1.0.1", "dpt_tiny": "1.0.0"}
    gem_install(gem_env(tmp_path, "gem-second"), source, "dpt_tiny")

    # `depot warm` from the Gemfile.lock fills a new proxy
    upstream.start()
    cold = depot_factory({"rubygems-remote": {"format": "rubygems", "type": "proxy",
                                              "upstream": f"{upstream.url}/rubygems-local"}}, name="cold")
    warmed = cold.run_cli("warm", "rubygems-remote", str(app / "Gemfile.lock"), "--url", cold.url, check=False)
    assert warmed.returncode == 0 and "4 fetched" in warmed.stdout, warmed.stdout + warmed.stderr


@pytest.fixture
def static(depot_factory: Any, upstream: Any, tmp_path: Path) -> SimpleNamespace:
    """A static compact index upstream: dpt_big (a 2 MB gem), dpt_evil (bytes not matching the index)."""
    big_bytes = os.urandom(2_000_000)           # the proxy checks the bytes against the index only
    evil = build_gem(tmp_path, "dpt_evil", "1.0.0").read_bytes()
    tampered = build_gem(tmp_path / "t", "dpt_evil", "1.0.0", body=" tampered").read_bytes()
    shared = build_gem(tmp_path / "s", "dpt_leaf", "0.9.0").read_bytes()
    infos = {"dpt_big": f"---\n1.0.0 |checksum:{sha256(big_bytes)}\n",
             "dpt_evil": f"---\n1.0.0 |checksum:{sha256(evil)}\n",
             "dpt_leaf": f"---\n0.9.0 |checksum:{sha256(shared)}\n1.0.1 |checksum:{'0' * 64}\n"}
    for name, text in infos.items():
        upstream.put(f"info/{name}", text.encode())
    versions = "created_at: 2024-01-01T00:00:00Z\n---\n" + "".join(
        f"{n} {','.join(line.split(' ')[0] for line in t.splitlines()[1:])} {hashlib.md5(t.encode()).hexdigest()}\n"
        for n, t in sorted(infos.items()))
    upstream.put("versions", versions.encode())
    upstream.put("gems/dpt_big-1.0.0.gem", big_bytes)
    upstream.put("gems/dpt_evil-1.0.0.gem", tampered)
    upstream.put("gems/dpt_leaf-0.9.0.gem", shared)
    depot = depot_factory({"rubygems-remote": {"format": "rubygems", "type": "proxy", "upstream": upstream.url},
                           **REPOS, "rubygems": {**REPOS["rubygems"], "members": ["rubygems-local", "rubygems-remote"]}})
    return SimpleNamespace(depot=depot, upstream=upstream, big=big_bytes, infos=infos, shared=shared)


def test_twenty_concurrent_clients_one_upstream_get(static: SimpleNamespace) -> None:
    static.upstream.mode("/gems/dpt_big-1.0.0.gem", "slow", rate=4_000_000)
    answers = get_many(f"{static.depot.url}/rubygems-remote/gems/dpt_big-1.0.0.gem", 20)
    assert all(a.status == 200 and a.body == static.big for a in answers)
    assert static.upstream.count("/gems/dpt_big-1.0.0.gem") == 1


def test_gem_not_matching_the_compact_index_is_refused(static: SimpleNamespace, tmp_path: Path) -> None:
    url = f"{static.depot.url}/rubygems-remote/gems/dpt_evil-1.0.0.gem"
    for _ in range(2):                          # refused (or cut off before its last bytes), never stored
        answer = get(url)
        assert answer.status == 502 or not answer.complete, answer.status
    assert static.upstream.count("/gems/dpt_evil-1.0.0.gem") == 2
    failed = gem_install(gem_env(tmp_path, "evil"), f"{static.depot.url}/rubygems-remote/", "dpt_evil", check=False)
    assert failed.returncode != 0
    assert requests.get(f"{static.depot.url}/rubygems-remote/gems/dpt_nope-1.0.0.gem", timeout=10).status_code == 404


def test_group_merges_info_and_versions_first_member_wins(static: SimpleNamespace, tmp_path: Path) -> None:
    key = make_token(static.depot, "--repo", "rubygems-local", "--perm", "write")
    mine = build_gem(tmp_path / "mine", "dpt_leaf", "1.0.1")
    push(gem_env(tmp_path, "pusher", key), mine, f"{static.depot.url}/rubygems")
    group = f"{static.depot.url}/rubygems"
    info = requests.get(f"{group}/info/dpt_leaf", timeout=10)
    assert info.text.splitlines() == ["---", f"1.0.1 |checksum:{sha256(mine.read_bytes())}",
                                      f"0.9.0 |checksum:{sha256(static.shared)}"]
    versions = {line.split(" ")[0]: line.split(" ")[1:] for line in
                requests.get(f"{group}/versions", timeout=10).text.splitlines()[2:]}
    assert versions["dpt_leaf"] == ["1.0.1,0.9.0", hashlib.md5(info.content).hexdigest()]
    assert versions["dpt_big"][1] == hashlib.md5(static.infos["dpt_big"].encode()).hexdigest()
    assert requests.get(f"{group}/info/dpt_big", timeout=10).text == static.infos["dpt_big"]
    assert requests.get(f"{group}/gems/dpt_leaf-1.0.1.gem", timeout=10).content == mine.read_bytes()
    assert requests.get(f"{group}/gems/dpt_leaf-0.9.0.gem", timeout=10).content == static.shared
    app = tmp_path / "app"
    bundle_install(gem_env(tmp_path, "b"), app, f"{group}/", {"dpt_leaf": "< 1.0"})
    assert locked(app) == {"dpt_leaf": "0.9.0"}


# ------------------------------------------------------------------------------------ access

def test_anonymous_push_gets_401_and_a_read_token_cannot_push(depot_factory: Any, tmp_path: Path) -> None:
    depot = depot_factory(REPOS, secure=True)
    gem = build_gem(tmp_path, "dpt_leaf", "1.0.1")
    anonymous = requests.post(f"{depot.url}/rubygems/api/v1/gems", data=gem.read_bytes(), timeout=10)
    assert anonymous.status_code == 401 and anonymous.headers.get("WWW-Authenticate")
    assert anonymous.headers["Content-Type"].startswith("text/plain") and anonymous.text.strip()

    reader = make_token(depot, "--repo", "rubygems-local", "--perm", "read")
    denied = push(gem_env(tmp_path, "reader", reader), gem, f"{depot.url}/rubygems", check=False)
    assert denied.returncode != 0 and "may not write" in denied.stdout + denied.stderr
    yank = requests.delete(f"{depot.url}/rubygems/api/v1/gems/yank", data={"gem_name": "dpt_leaf", "version": "1.0.1"},
                           headers={"Authorization": reader}, timeout=10)
    assert yank.status_code == 403

    writer = make_token(depot, "--repo", "rubygems-local", "--perm", "write")
    assert "Successfully registered" in push(gem_env(tmp_path, "writer", writer), gem, f"{depot.url}/rubygems").stdout
    installer = gem_env(tmp_path, "installer")      # a private repository: credentials in the source URL
    host = depot.url.replace("http://", f"http://reader:{reader}@")
    gem_install(installer, f"{host}/rubygems-local/", "dpt_leaf")

    # yank removes a version: it needs the delete permission
    cannot = run(gem_env(tmp_path, "writer", writer), "gem", "yank", "dpt_leaf", "-v", "1.0.1", "--host",
                 f"{depot.url}/rubygems", check=False)
    assert "may not delete" in cannot.stdout + cannot.stderr
    deleter = make_token(depot, "--repo", "rubygems-local", "--perm", "delete")
    done = run(gem_env(tmp_path, "deleter", deleter), "gem", "yank", "dpt_leaf", "-v", "1.0.1", "--host",
               f"{depot.url}/rubygems")
    assert "Successfully deleted gem: dpt_leaf (1.0.1)" in done.stdout


def test_policy_hides_versions_from_info_and_refuses_their_gems(static: SimpleNamespace, depot_factory: Any) -> None:
    depot = depot_factory({"rubygems-remote": {"format": "rubygems", "type": "proxy", "upstream": static.upstream.url}},
                          extra={"policy": {"deny": ["dpt_leaf@<1"]}}, name="policy")
    info = requests.get(f"{depot.url}/rubygems-remote/info/dpt_leaf", timeout=10)
    assert info.text == f"---\n1.0.1 |checksum:{'0' * 64}\n"
    assert info.headers["ETag"] == f'"{hashlib.md5(info.content).hexdigest()}"'
    refused = requests.get(f"{depot.url}/rubygems-remote/gems/dpt_leaf-0.9.0.gem", timeout=10)
    assert refused.status_code == 403 and "dpt_leaf@<1" in refused.text
    assert static.upstream.count("/gems/dpt_leaf-0.9.0.gem") == 0


# -------------------------------------------------------------------------------------- units

def test_marshal_writer_is_read_back_by_ruby(tmp_path: Path) -> None:
    from depot.registry import rubygems_marshal as rm
    numbers = [0, 1, 122, 123, 255, 256, 65535, 65536, -1, -123, -124, -256, -257, -65537, 2**30 - 1, -2**30]
    value = [numbers, "héllo", b"raw", None, True, False, rm.Symbol("sym"), {rm.Symbol("k"): ["v"]},
             rm.version("1.2.a"), rm.requirement([("~>", "1.0"), (">=", "1.0.1")]), rm.dependency("rack", [])]
    shown = ruby_load(rm.dumps(value), "p d[0]; p d[1], d[1].encoding, d[2].encoding; p d[3..7]; "
                                       "p d[8].prerelease?, d[9].to_s, d[10].to_s", tmp_path)
    assert shown.splitlines() == [str(numbers), '"héllo"', "#<Encoding:UTF-8>",
                                  "#<Encoding:ASCII-8BIT>", '[nil, true, false, :sym, {:k=>["v"]}]',
                                  "true", '"~> 1.0, >= 1.0.1"', '"rack (>= 0)"']
    with pytest.raises(ValueError):
        rm.dumps(2**31)


def test_gemspec_yaml_is_read_without_instantiating_anything() -> None:
    from depot.registry import rubygems_spec as rs
    spec = rs.parse_spec(GOOD_YAML.replace("version: 1.0.0", "version: 1.10").encode() +
                         b"platform: !ruby/object:Gem::Platform\n  cpu: x86_64\n  os: linux\n  version:\n"
                         b"dependencies:\n- !ruby/object:Gem::Dependency\n  name: rack\n  requirement: "
                         b"!ruby/object:Gem::Requirement\n    requirements:\n    - - \"~>\"\n      - "
                         b"!ruby/object:Gem::Version\n        version: 2.2\n  type: :runtime\n")
    assert (spec.version, spec.platform, spec.dependencies) == ("1.10", "x86_64-linux", [("rack", [("~>", "2.2")])])
    assert spec.full_name == "dpt_bad-1.10-x86_64-linux"
    for hostile in ("--- !!python/object/new:os.system ['id']\n", "--- !ruby/object:Gem::Specification\nname: [a\n"):
        with pytest.raises(rs.GemError):
            rs.parse_spec(hostile.encode())


def test_embedded_default_has_the_rubygems_trio() -> None:
    from depot.proxy import config
    repos = config.load(None, env={}).repositories
    assert repos["rubygems-remote"].upstream == "https://rubygems.org"
    assert list(repos["rubygems"].members) == ["rubygems-local", "rubygems-remote"]


def test_group_full_index_merges_the_upstream_specs(static: SimpleNamespace, tmp_path: Path) -> None:
    import subprocess
    made = subprocess.run(["ruby", "-e", 'require "rubygems"; require "zlib"; v = Gem::Version.new("0.9.0"); '
                           'print Zlib.gzip(Marshal.dump([["dpt_big", Gem::Version.new("1.0.0"), "ruby"], '
                           '["dpt_leaf", v, "ruby"], ["dpt_leaf", Gem::Version.new("0.8.0"), "ruby"]]))'],
                          capture_output=True, timeout=60, check=True).stdout
    static.upstream.put("specs.4.8.gz", made)
    static.upstream.put("latest_specs.4.8.gz", made)
    key = make_token(static.depot, "--repo", "rubygems-local", "--perm", "write")
    push(gem_env(tmp_path, "pusher", key), build_gem(tmp_path, "dpt_leaf", "1.0.1"), f"{static.depot.url}/rubygems")
    group = f"{static.depot.url}/rubygems"
    specs = gzip.decompress(requests.get(f"{group}/specs.4.8.gz", timeout=10).content)
    assert ruby_load(specs, "p d.map { |n, v, pl| [n, v.to_s, pl] }", tmp_path) == (
        '[["dpt_big", "1.0.0", "ruby"], ["dpt_leaf", "0.8.0", "ruby"], ["dpt_leaf", "0.9.0", "ruby"], '
        '["dpt_leaf", "1.0.1", "ruby"]]')
    latest = gzip.decompress(requests.get(f"{group}/latest_specs.4.8.gz", timeout=10).content)
    assert ruby_load(latest, "p d.map { |n, v, pl| [n, v.to_s] }", tmp_path) == \
        '[["dpt_big", "1.0.0"], ["dpt_leaf", "1.0.1"]]'
    static.upstream.put("prerelease_specs.4.8.gz", b"not gzip")
    broken = requests.get(f"{group}/prerelease_specs.4.8.gz", timeout=10)   # the hosted member still answers
    assert broken.status_code == 200


def test_marshal_reader_reads_what_ruby_writes() -> None:
    import subprocess
    from depot.registry import rubygems_marshal as rm
    made = subprocess.run(["ruby", "-e", 'require "rubygems"; v = Gem::Version.new("1.0"); '
                           'print Marshal.dump([["a", v, "ruby"], ["b", Gem::Version.new("2.0.pre1"), "ruby"], '
                           '["c", v, "x86_64-linux"], ["d" * 300, Gem::Version.new("1300"), "ruby"]])'],
                          capture_output=True, timeout=60, check=True).stdout
    assert rm.spec_tuples(made) == [("a", "1.0", "ruby"), ("b", "2.0.pre1", "ruby"), ("c", "1.0", "x86_64-linux"),
                                    ("d" * 300, "1300", "ruby")]
    for bad in (b"\x04\x08o:\x0bObject\x00", b"\x04\x08[\x06", b"\x04\x07[\x00", made[:-5]):
        with pytest.raises(rm.MarshalError):
            rm.spec_tuples(bad)
