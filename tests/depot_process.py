"""Start and stop real depot processes for tests (loopback only, stopped by PID)."""
from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPOT_BIN = Path(sys.executable).parent / "depot"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group a test started (start_new_session=True), SIGKILL if it lingers."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


class DepotProcess:
    """A depot subprocess with its own config and data dir."""

    ADMIN_PASSWORD = "admin-password-for-tests"

    def __init__(self, workdir: Path, repositories: dict[str, Any], workers: int = 1,
                 extra: dict[str, Any] | None = None, env: dict[str, str] | None = None,
                 secure: bool = False) -> None:
        """secure=False sets open_access (tests about other things than access control)."""
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.data_dir = self.workdir / "data"
        self.port = free_port()
        self.tls = bool((extra or {}).get("tls"))
        self.url = f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"
        self.workers = workers
        self.env = {"DEPOT_ADMIN_PASSWORD": self.ADMIN_PASSWORD, **(env or {})}
        self.config_path = self.workdir / "depot.yaml"
        document = {"listen": f"127.0.0.1:{self.port}", "data_dir": str(self.data_dir),
                    "repositories": repositories, "open_access": not secure, **(extra or {})}
        self.config_path.write_text(yaml.safe_dump(document))
        self.log_path = self.workdir / "depot.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def command(self, *args: str) -> list[str]:
        """argv for a depot subcommand acting on this instance's config and data."""
        return [str(DEPOT_BIN), *args, "--config", str(self.config_path), "--data", str(self.data_dir)]

    def start(self, timeout: float = 20.0) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DEPOT_")}
        env.update(self.env)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            self.command("serve", "--workers", str(self.workers)),
            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"depot exited with {self.proc.returncode}:\n{self.log()}")
            try:
                context = ssl._create_unverified_context() if self.tls else None
                with urllib.request.urlopen(self.url + "/-/healthz", timeout=1, context=context) as resp:
                    if resp.status == 200 and self._all_workers_listening():
                        return
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"depot did not become ready:\n{self.log()}")

    def _all_workers_listening(self) -> bool:
        return self.log(settle=0).count("listening pid=") >= self._starts() * self.workers

    def _starts(self) -> int:
        return getattr(self, "_start_count", 0) + 1

    def log(self, settle: float = 0.12) -> str:
        """The depot's log so far; `settle` lets the buffered access log (written by a thread,
        at most 50 ms late) catch up with the requests a test just made."""
        if settle:
            time.sleep(settle)
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self) -> None:
        """SIGTERM the process group we started, then SIGKILL if it lingers."""
        if self.proc is None or self.proc.poll() is not None:
            self.proc = None
            return
        stop_group(self.proc)
        self.proc = None
        self._start_count = self._starts()

    def kill9(self) -> None:
        """SIGKILL every process of this depot at once (no clean-up runs)."""
        if self.proc is not None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)
            self.proc = None
            self._start_count = self._starts()

    def restart(self) -> None:
        self.stop()
        self.start()

    def run_cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.command(*args), capture_output=True, text=True, timeout=120, check=check)
