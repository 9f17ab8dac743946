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
    assert run("init", str(target)).returncode == 2          # never overwrites


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


def _second_serve(depot, *args: str) -> subprocess.CompletedProcess[str]:
    """Run another `depot serve`; it must give up on its own (a bounded wait, then killed)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEPOT_")}
    env["DEPOT_ADMIN_PASSWORD"] = depot.ADMIN_PASSWORD
    proc = subprocess.Popen([str(DEPOT_BIN), "serve", "--config", str(depot.config_path), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        out, err = proc.communicate(timeout=10)
        raise AssertionError(f"the second depot kept running:\n{err}") from None
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_a_second_depot_on_a_taken_port_exits_non_zero(depot_factory, tmp_path):
    depot = depot_factory({"local": {"format": "generic", "type": "hosted"}}, workers=2)
    req = urllib.request.Request(f"{depot.url}/local/only-here.txt", data=b"first store", method="PUT")
    assert urllib.request.urlopen(req).status == 201
    second = _second_serve(depot, "--data", str(tmp_path / "other-data"), "--workers", "2")
    assert second.returncode != 0
    assert "address already in use" in second.stderr
    for _ in range(20):                                    # every request still reaches the one store
        assert get(f"{depot.url}/local/only-here.txt").body == b"first store"


def test_a_second_server_on_one_data_directory_is_refused(depot_factory):
    depot = depot_factory({"local": {"format": "generic", "type": "hosted"}}, workers=2)
    second = _second_serve(depot, "--data", str(depot.data_dir), "--listen", f"127.0.0.1:{free_port()}")
    assert second.returncode != 0
    assert "in use by another depot server" in second.stderr and str(depot.data_dir) in second.stderr
    # the admin commands that work online still do
    assert depot.run_cli("stats").returncode == 0
    assert depot.run_cli("gc", "--dry-run").returncode == 0
    assert get(f"{depot.url}/-/healthz").status == 200
    depot.restart()                                         # the lock goes with the server
    assert get(f"{depot.url}/-/healthz").status == 200


def test_two_depots_started_at_once_on_one_port_leave_one_running(tmp_path):
    import yaml
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEPOT_")}
    procs = []
    for name in ("a", "b"):
        config = tmp_path / f"{name}.yaml"
        config.write_text(yaml.safe_dump({"listen": f"127.0.0.1:{port}", "data_dir": str(tmp_path / name),
                                          "open_access": True, "repositories": {"files": {
                                              "format": "generic", "type": "hosted"}}}))
        procs.append(subprocess.Popen([str(DEPOT_BIN), "serve", "--config", str(config), "--workers", "2"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
                                      start_new_session=True))
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and all(p.poll() is None for p in procs):
            time.sleep(0.1)
        exited = [p for p in procs if p.poll() is not None]
        assert len(exited) == 1 and exited[0].returncode != 0
        assert b"address already in use" in exited[0].stderr.read()
        time.sleep(1)
        assert [p.poll() for p in procs if p not in exited] == [None]     # the other one serves on
        assert get(f"http://127.0.0.1:{port}/-/healthz").status == 200
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, 15)
                p.wait(timeout=10)
            p.stderr.close()


def test_a_second_depot_on_a_taken_forward_proxy_port_exits_non_zero(depot_factory, tmp_path):
    forward = free_port()
    depot = depot_factory({"local": {"format": "generic", "type": "hosted"}},
                          extra={"forward_proxy": {"listen": f"127.0.0.1:{forward}"}})
    deadline = time.monotonic() + 20
    while "forward proxy listening" not in depot.log() and time.monotonic() < deadline:
        time.sleep(0.1)
    second = _second_serve(depot, "--data", str(tmp_path / "other-data"), "--listen", f"127.0.0.1:{free_port()}")
    assert second.returncode != 0
    assert f"127.0.0.1:{forward}: address already in use" in second.stderr
