"""The first hour at the command line: user errors are one line and exit 2 (never a traceback),
read-only commands create nothing, and the user/token commands a new admin reaches for exist."""
from __future__ import annotations

import re

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from depot_process import DEPOT_BIN


def run(*args: str, cwd: Path, env: dict[str, str] | None = None, stdin: str | None = None,
        close_stdin: bool = False) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("DEPOT_")}
    full_env.update(env or {})
    return subprocess.run([str(DEPOT_BIN), *args], capture_output=True, text=True, timeout=60, env=full_env,
                          cwd=cwd, input=stdin, stdin=subprocess.DEVNULL if close_stdin else None)


def assert_user_error(done: subprocess.CompletedProcess[str], *expected: str) -> None:
    """Exit 2, one line on stderr that says what is wrong, no traceback."""
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    for text in expected:
        assert text in lines[0], lines[0]


# (arguments, environment, files to create first, what the message must say)
ERRORS = [
    (["gc", "--dry-run"], {}, {}, ["no depot store in", "depot-data/depot.db"]),
    (["stats"], {}, {}, ["no depot store in", "depot-data"]),
    (["user", "list"], {}, {}, ["no depot store in"]),
    (["token", "list"], {}, {}, ["no depot store in"]),
    (["export", "out"], {}, {}, ["holds no depot store"]),
    (["gc", "--data", "afile"], {}, {"afile": ""}, ["afile is a file"]),
    (["gc", "--grace", "banana"], {}, {}, ["--grace", "banana"]),
    (["init", "missing/depot.yaml"], {}, {}, ["no directory", "missing"]),
    (["check-config"], {"DEPOT_LISTNE": "127.0.0.1:1"}, {}, ["DEPOT_LISTNE", "unknown setting", "'listen'"]),
    (["check-config"], {"DEPOT_CACHE__MAX_SIZ": "1GiB"}, {}, ["DEPOT_CACHE__MAX_SIZ", "'max_size'"]),
    (["check-config"], {"DEPOT_LISTEN": "127.0.0.1:99999"}, {}, ["DEPOT_LISTEN", "port out of range"]),
    (["check-config", "--config", "empty.yaml"], {}, {"empty.yaml": ""}, ["empty.yaml", "empty"]),
    (["check-config", "--config", "bad.yaml"], {}, {"bad.yaml": "listen: 1\ncache: [\n  a: b\n"},
     ["bad.yaml:4", "invalid YAML"]),
    (["check-config", "--config", "nofile.yaml"], {}, {}, ["nofile.yaml", "cannot read"]),
    (["check-config", "--config", "c.yaml"], {}, {"c.yaml": "listen: 127.0.0.1:99999\n"}, ["c.yaml", "port out of range"]),
    (["check-config", "--config", "c.yaml"], {}, {"c.yaml": "repositories: {r: {format: generic, type: hosted, acess: {}}}\n"},
     ["repositories.r.acess", "'access'"]),
]


@pytest.mark.parametrize("args,env,files,expected", ERRORS, ids=[" ".join(case[0]) + str(list(case[1])) for case in ERRORS])
def test_user_errors_are_one_line_and_exit_2(tmp_path: Path, args, env, files, expected) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    before = sorted(p.name for p in tmp_path.iterdir())
    assert_user_error(run(*args, cwd=tmp_path, env=env), *expected)
    assert sorted(p.name for p in tmp_path.iterdir()) == before     # nothing created (no depot-data)


def test_user_add_with_stdin_closed_is_an_error_not_a_traceback(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    from depot.cache.storage import open_database
    open_database(data, create=True).close()
    assert_user_error(run("user", "add", "alice", "--data", str(data), cwd=tmp_path, close_stdin=True), "password")
    assert_user_error(run("user", "add", "alice", "--password-stdin", "--data", str(data), cwd=tmp_path,
                          close_stdin=True), "no password on stdin")


def test_check_config_takes_config_like_every_command(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text("repositories: {r: {format: generic, type: hosted}}\n")
    done = run("check-config", "--config", "c.yaml", cwd=tmp_path)
    assert done.returncode == 0 and "1 repositories" in done.stdout, done.stderr
    assert "--data" not in run("check-config", "--help", cwd=tmp_path).stdout     # options that do not apply


def test_every_option_has_help() -> None:
    from depot.proxy.cli import build_parser
    parser = build_parser()
    missing = []

    def walk(p, path):
        for action in p._actions:
            if action.choices and isinstance(action.choices, dict):
                for name, child in action.choices.items():
                    walk(child, path + [name])
            elif action.option_strings and action.help is None and action.dest != "help":
                missing.append(" ".join(path + [action.option_strings[0]]))
            elif not action.option_strings and not action.help and not isinstance(action.choices, dict):
                missing.append(" ".join(path + [action.dest]))
    walk(parser, ["depot"])
    assert missing == []


def test_version_init_and_config_show(tmp_path: Path) -> None:
    version = run("--version", cwd=tmp_path)
    assert version.returncode == 0 and version.stdout.startswith("depot ")
    assert run("init", cwd=tmp_path).returncode == 0
    text = (tmp_path / "depot.yaml").read_text()
    document = yaml.safe_load(text)
    from depot.proxy.config import default_document
    assert document["repositories"] == default_document()["repositories"]      # every format present
    assert "# " in text and "access: {alice: write}" in text                    # commented, with an access example
    shown = run("config", "show", "--config", "depot.yaml", cwd=tmp_path,
                env={"DEPOT_REPOSITORIES__PYPI_REMOTE__PASSWORD": "s3cret-upstream-pw"})
    assert shown.returncode == 0, shown.stderr
    assert "s3cret-upstream-pw" not in shown.stdout and "'***'" in shown.stdout
    assert yaml.safe_load(shown.stdout)["repositories"]["pypi"]["members"] == ["pypi-local", "pypi-remote"]


def test_users_and_tokens_commands(depot_factory) -> None:
    depot = depot_factory({"files": {"format": "generic", "type": "hosted", "access": {"alice": "write"}},
                           "other": {"format": "generic", "type": "hosted"},
                           "cache": {"format": "generic", "type": "proxy", "upstream": "http://127.0.0.1:9/"}},
                          secure=True)
    cli = lambda *a, **kw: subprocess.run(depot.command(*a), capture_output=True, text=True, timeout=60, **kw)  # noqa: E731
    assert cli("user", "add", "alice", "--password-stdin", input="alice-long-password\n").returncode == 0
    assert_user_error(cli("token", "create", "--user", "alice", "--repo", "nosuch", "--perm", "read"), "no repository 'nosuch'")
    assert_user_error(cli("token", "create", "--user", "alice", "--repo", "files", "--perm", "delete"),
                      "alice holds write on files, not delete")
    assert_user_error(cli("token", "create", "--user", "alice", "--repo", "other", "--perm", "read"),
                      "alice holds no access on other")
    assert_user_error(cli("token", "create", "--user", "nobody", "--perm", "read"), "no user 'nobody'")
    made = cli("token", "create", "--user", "alice", "--repo", "files", "--perm", "write", "--description", "laptop")
    assert made.returncode == 0, made.stderr
    secret = made.stdout.strip().splitlines()[-1]
    listed = cli("token", "list").stdout
    assert "laptop" in listed and listed.splitlines()[1].split()[5] == "-"       # never used yet
    import urllib.request
    request = urllib.request.Request(f"{depot.url}/files/a.txt", data=b"x", method="PUT",
                                     headers={"Authorization": f"Bearer {secret}"})
    with urllib.request.urlopen(request) as resp:
        assert resp.status in (200, 201)
    assert cli("token", "list").stdout.splitlines()[1].split()[5] != "-"         # last use shown
    users = cli("user", "list").stdout
    assert "alice" in users and "admin" in users
    for args in (("user", "delete", "nobody"), ("user", "unlock", "nobody"), ("user", "passwd", "nobody", "--password-stdin")):
        assert_user_error(cli(*args, input="whatever-password\n"), "no user 'nobody'")
    assert cli("user", "unlock", "alice").returncode == 0
    assert cli("user", "passwd", "alice", "--password-stdin", input="another-long-password\n").returncode == 0
    assert_user_error(cli("export", str(depot.workdir / "x"), "--repo", "nosuch"), "no repository 'nosuch'")
    assert_user_error(cli("export", str(depot.workdir / "x"), "--repo", "cache"), "proxy", "hosted content only")
    exported = cli("export", str(depot.workdir / "x"), "--repo", "files")
    assert exported.returncode == 0 and "1 files (1 distinct blobs)" in exported.stdout, exported.stderr
    assert cli("user", "delete", "alice").returncode == 0
    assert "alice" not in cli("user", "list").stdout


@pytest.mark.parametrize("password,warning", [("short", "DEPOT_ADMIN_PASSWORD was refused (passwords need at least 8"),
                                              (None, "no admin user exists: set DEPOT_ADMIN_PASSWORD"),
                                              ("a-long-admin-password", None)])
def test_startup_log_says_where_and_warns_about_admin(tmp_path: Path, password, warning) -> None:
    import time
    from depot_process import free_port, stop_group
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEPOT_")}
    if password:
        env["DEPOT_ADMIN_PASSWORD"] = password
    log_path = tmp_path / "serve.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([str(DEPOT_BIN), "serve", "--listen", f"127.0.0.1:{port}"], cwd=tmp_path, env=env,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while "listening pid=" not in log_path.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        stop_group(proc)
    text = log_path.read_text()
    assert f"depot listening on 127.0.0.1:{port}" in text
    assert f"web UI: http://127.0.0.1:{port}/-/ui/" in text
    assert f"data directory: {tmp_path / 'depot-data'}" in text
    assert re.search(rf"\bpypi +pypi +group +http://127\.0\.0\.1:{port}/pypi/", text)
    assert f"127.0.0.1:{port}/<image> as registry mirror" in text
    if warning:
        assert f"WARNING depot.server {warning}" in text
    else:
        assert "WARNING" not in text and "created admin user" in text
