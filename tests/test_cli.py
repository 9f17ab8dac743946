"""The depot command: init, check-config, gc, stats, and the embedded default."""
from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from pathlib import Path

from depot_process import DEPOT_BIN, free_port

from http_util import get


def run(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("DEPOT_")}
    full_env.update(env or {})
    return subprocess.run([str(DEPOT_BIN), *args], capture_output=True, text=True, timeout=60,
                          env=full_env, cwd=cwd)


def test_init_writes_a_config_that_checks(tmp_path):
    target = tmp_path / "depot.yaml"
    assert run("init", str(target)).returncode == 0
    assert "max_size" in target.read_text() and "#" in target.read_text()
    checked = run("check-config", str(target))
    assert checked.returncode == 0, checked.stderr
    assert run("init", str(target)).returncode == 1          # never overwrites


def test_check_config_names_the_offending_key(tmp_path):
    cases = {
        "cache: {max_size: lots}\n": "cache.max_size",
        "repositories: {r: {format: generic, type: proxy}}\n": "repositories.r.upstream",
        "repositories: {r: {format: nope, type: hosted}}\n": "repositories.r.format",
        "repositories: {r: {format: generic, type: hosted, metadata_ttl: soon}}\n": "repositories.r.metadata_ttl",
        "repositories: {g: {format: generic, type: group, members: [missing]}}\n": "repositories.g.members",
        "repositories: {V2: {format: generic, type: hosted}}\n": "repositories.V2",
        "listen: nowhere\n": "listen",
        "bogus: 1\n": "bogus",
    }
    for text, key in cases.items():
        path = tmp_path / "bad.yaml"
        path.write_text(text)
        result = run("check-config", str(path))
        assert result.returncode == 2, text
        assert key in result.stderr, (text, result.stderr)


def test_env_overrides_nested_keys(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("repositories: {files-remote: {format: generic, type: proxy, upstream: 'http://a/'}}\n")
    bad = run("check-config", str(path), env={"DEPOT_REPOSITORIES__FILES_REMOTE__UPSTREAM": "ftp://x"})
    assert bad.returncode == 2 and "repositories.files-remote.upstream" in bad.stderr
    bad_size = run("check-config", str(path), env={"DEPOT_CACHE__MAX_SIZE": "huge"})
    assert bad_size.returncode == 2 and "cache.max_size" in bad_size.stderr


def test_gc_removes_only_unreferenced_blobs_while_serving(depot_factory, tmp_path):
    depot = depot_factory({"local": {"format": "generic", "type": "hosted"}})
    for name in ("a", "b"):
        req = urllib.request.Request(f"{depot.url}/local/{name}.txt", data=name.encode() * 1000, method="PUT")
        assert urllib.request.urlopen(req).status == 201
    req = urllib.request.Request(f"{depot.url}/local/a.txt", method="DELETE")
    assert urllib.request.urlopen(req).status == 204
    dry = depot.run_cli("gc", "--dry-run", "--grace", "0")
    assert "would remove 1" in dry.stdout
    assert "scanning blobs" in dry.stderr                                  # progress is shown
    done = depot.run_cli("gc", "--grace", "0")
    assert "removed 1 " in done.stdout
    assert get(f"{depot.url}/local/b.txt").body == b"b" * 1000            # still served
    assert "removed 0 " in depot.run_cli("gc", "--grace", "0").stdout


def test_stats_counts_hits_and_misses(depot_factory, upstream):
    upstream.put("s.txt", b"stats")
    depot = depot_factory({"remote": {"format": "generic", "type": "proxy", "upstream": upstream.url}})
    for _ in range(3):
        get(f"{depot.url}/remote/s.txt")
    time.sleep(2.5)                                                         # counters flush every 2 s
    rows = {r["name"]: r for r in json.loads(depot.run_cli("stats", "--json").stdout)}
    assert rows["remote"]["hits"] == 2 and rows["remote"]["misses"] == 1
    assert rows["remote"]["entries"] == 1 and rows["remote"]["bytes"] == 5
    table = depot.run_cli("stats").stdout
    assert "remote" in table and "hits" in table and "hit ratio 66.7%" in table


def test_serve_embedded_default_without_config(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEPOT_")}
    proc = subprocess.Popen([str(DEPOT_BIN), "serve", "--listen", f"127.0.0.1:{port}"], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/api/repositories", timeout=1) as r:
                    listing = json.loads(r.read())
                    break
            except OSError:
                time.sleep(0.1)
        else:
            raise AssertionError("depot did not start on the embedded default")
        assert any(r["type"] == "proxy" for r in listing)
        assert all(r["name"] != "files" for r in listing)       # hosted, so hidden from anonymous callers
        assert (tmp_path / "depot-data" / "depot.db").exists()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
