"""Conan test helpers: the real `conan` 2 client with a private CONAN_HOME, tiny recipes, and a
real conan_server (PyPI) started on 127.0.0.1 (its own launcher binds 0.0.0.0: not used here)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from depot_process import free_port, stop_group

VENV_BIN = Path(sys.executable).parent
CONAN = VENV_BIN / "conan"

RECIPE = '''from conan import ConanFile
from conan.tools.files import save
import os


class Pkg(ConanFile):
    name = "{name}"
    version = "{version}"
    settings = "os"
{requires}
    def package(self):
        save(self, os.path.join(self.package_folder, "include", "{name}.h"), "// {name} {version} {payload}")
'''

LAUNCHER = """import sys
from conans.server.launcher import ServerLauncher
launcher = ServerLauncher(server_dir=sys.argv[1])
launcher.server.run(host="127.0.0.1")
"""


def require_clients() -> None:
    assert CONAN.exists() and (VENV_BIN / "conan_server").exists(), \
        f"conan / conan_server missing from {VENV_BIN} (tests/clients/conan.pip)"


def write_recipe(root: Path, name: str, version: str, requires: list[str] | None = None,
                 payload: str = "") -> Path:
    folder = root / f"recipe-{name}-{version}"
    folder.mkdir(parents=True, exist_ok=True)
    lines = f"    requires = {tuple(requires)!r}\n" if requires else ""
    (folder / "conanfile.py").write_text(RECIPE.format(name=name, version=version, requires=lines, payload=payload))
    return folder


class ConanClient:
    """One CONAN_HOME with a single remote `depot` (ConanCenter removed)."""

    def __init__(self, home: Path, url: str) -> None:
        self.home = home
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CONAN") and "proxy" not in k.lower()}
        self.env.update(CONAN_HOME=str(home), CONAN_NON_INTERACTIVE="1")
        home.mkdir(parents=True, exist_ok=True)
        (home / "global.conf").write_text("core:non_interactive=True\n")
        self.run("profile", "detect")
        self.run("remote", "remove", "conancenter", check=False)
        self.run("remote", "add", "depot", url)

    def run(self, *args: str, check: bool = True, timeout: float = 180,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([str(CONAN), *args], env={**self.env, **(env or {})}, capture_output=True,
                                text=True, timeout=timeout, cwd=self.home)
        if check:
            assert result.returncode == 0, result.stdout + result.stderr
        return result

    def login(self, user: str, password: str) -> None:
        self.run("remote", "login", "depot", user, "-p", password)

    def installed_header(self, name: str, version: str) -> str:
        """The header of the installed binary, read from the client's cache."""
        listed = json.loads(self.run("list", f"{name}/{version}#latest:*", "--format=json").stdout)
        revisions = listed["Local Cache"][f"{name}/{version}"]["revisions"]
        rrev, info = next(iter(revisions.items()))
        package_id = next(iter(info["packages"]))
        out = self.run("cache", "path", f"{name}/{version}#{rrev}:{package_id}").stdout.strip()
        return (Path(out) / "include" / f"{name}.h").read_text()


class ConanServer:
    """A real conan_server on 127.0.0.1 with user demo/demo allowed to write everything."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        root.mkdir(parents=True, exist_ok=True)
        (root / "server.conf").write_text(
            "[server]\njwt_secret: test-secret-for-conan-server\njwt_expire_minutes: 120\nssl_enabled: False\n"
            f"port: {self.port}\npublic_port:\nhost_name: 127.0.0.1\nauthorize_timeout: 1800\n"
            f"disk_storage_path: {root / 'data'}\ndisk_authorize_timeout: 1800\nupdown_secret: test-updown\n"
            "[write_permissions]\n*/*@*/*: demo\n[read_permissions]\n*/*@*/*: *\n[users]\ndemo: demo\n")
        (root / "launch.py").write_text(LAUNCHER)
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self, timeout: float = 30.0) -> None:
        log = open(self.root / "server.log", "ab")
        self.proc = subprocess.Popen([sys.executable, str(self.root / "launch.py"), str(self.root)], stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, (self.root / "server.log").read_text()
            try:
                with urllib.request.urlopen(self.url + "/v1/ping", timeout=1) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("conan_server did not start: " + (self.root / "server.log").read_text())

    def stop(self) -> None:
        if self.proc is not None:
            stop_group(self.proc)
            self.proc = None
