"""Shared helpers of the admin API tests: HTTP calls, clients (twine, npm, skopeo, curl)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests

BIN = Path(sys.executable).parent
CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_", "TWINE_", "DEPOT_"))}


def api(depot: Any, method: str, path: str, auth: tuple[str, str] | None = None, **params: Any) -> requests.Response:
    """Call /-/api/v1/<path> (names in `path` already percent-encoded)."""
    return requests.request(method, f"{depot.url}/-/api/v1/{path}", auth=auth, params=params, timeout=60)


def seg(value: str) -> str:
    """A name as one percent-encoded path segment."""
    return quote(value, safe="")


def run(argv: list[str], check: bool = True, timeout: float = 180, env: dict[str, str] | None = None,
        input_text: str | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, capture_output=True, text=True, env=env or CLEAN_ENV, timeout=timeout,
                          input=input_text, stdin=None if input_text is not None else subprocess.DEVNULL)
    if check and proc.returncode != 0:
        raise AssertionError(f"{argv} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def twine(url: str, user: str, password: str, *files: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    assert (BIN / "twine").exists(), "twine is missing: pip install -e '.[test]'"
    return run([str(BIN / "twine"), "upload", "--repository-url", url, "-u", user, "-p", password,
                "--non-interactive", "--disable-progress-bar", *map(str, files)], check=check)


def pip_download(index: str, dest: Path, req: str) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, "-m", "pip", "--isolated", "--no-cache-dir", "--disable-pip-version-check",
                "download", "--no-deps", "--index-url", index, "-d", str(dest), req], check=False)


def skopeo(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("skopeo")
    assert exe, "skopeo is required (apt-get install -y skopeo)"
    return run([exe, *args], check=check, timeout=120)


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("curl")
    assert exe, "curl is required (apt-get install curl)"
    return run([exe, "-sS", "-o", os.devnull, "-w", "%{http_code}", *args], check=False)


def make_user(depot: Any, name: str, password: str = "password-123") -> None:
    result = subprocess.run(depot.command("user", "add", name, "--password-stdin"), input=password + "\n",
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def admin_token(depot: Any) -> str:
    out = depot.run_cli("token", "create", "--user", "admin", "--perm", "admin")
    return out.stdout.strip().splitlines()[-1]


def cli_json(depot: Any, *args: str) -> Any:
    done = depot.run_cli(*args, "--json")
    return json.loads(done.stdout)


def cli_json_env(depot: Any, env: dict[str, str], *args: str) -> Any:
    """`depot <args> --json` on the depot's config and data, with extra environment variables."""
    done = subprocess.run(depot.command(*args, "--json"), capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def eventually(check: Any, timeout: float = 8.0) -> Any:
    """Poll check() until it returns a truthy value (a server flushes some state every 2 s)."""
    import time
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.2)
