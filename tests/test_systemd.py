"""systemd/depot.service: it verifies, it is hardened (exposure <= 3.0), and depot notifies
readiness on $NOTIFY_SOCKET (Type=notify) from its workers."""
from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

from depot_process import DEPOT_BIN, ROOT

UNIT = ROOT / "systemd" / "depot.service"
ENV_EXAMPLE = ROOT / "systemd" / "depot.env.example"
INSTALLED_BIN = "/opt/depot/bin/depot"
MAX_EXPOSURE = 3.0


def analyze() -> str:
    """systemd-analyze; the tests fail (never skip) without it."""
    found = shutil.which("systemd-analyze")
    assert found, "systemd-analyze is missing: apt-get install -y systemd"
    return found


@pytest.fixture
def rendered(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at this checkout's depot (verify needs a real binary)."""
    text = UNIT.read_text()
    assert INSTALLED_BIN in text
    target = tmp_path / "depot.service"
    target.write_text(text.replace(INSTALLED_BIN, str(DEPOT_BIN)))
    return target


def settings(path: Path) -> dict[str, list[str]]:
    """KEY -> values of a unit file (every section; comments dropped)."""
    found: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def test_unit_verifies(rendered: Path) -> None:
    proc = subprocess.run([analyze(), "verify", str(rendered)], capture_output=True, text=True,
                          timeout=60, cwd=rendered.parent)
    assert proc.returncode == 0, proc.stderr
    complaints = [line for line in proc.stderr.splitlines() if "depot.service" in line]
    assert not complaints, complaints


def test_unit_exposure_is_at_most_3(rendered: Path) -> None:
    threshold = round(MAX_EXPOSURE * 10)                   # --threshold counts tenths (0-100)
    proc = subprocess.run([analyze(), "security", "--offline=true", f"--threshold={threshold}", str(rendered)],
                          capture_output=True, text=True, timeout=60, cwd=rendered.parent)
    match = re.search(r"Overall exposure level for depot\.service: ([0-9.]+)", proc.stdout)
    assert match, proc.stdout + proc.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE, proc.stdout
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_unit_declares_the_contract() -> None:
    unit = settings(UNIT)
    for key, value in {"Type": "notify", "Restart": "on-failure", "DynamicUser": "yes",
                       "StateDirectory": "depot", "ProtectSystem": "strict", "NoNewPrivileges": "yes",
                       "PrivateTmp": "yes", "CapabilityBoundingSet": "",
                       "SystemCallFilter": "@system-service"}.items():
        assert value in unit.get(key, []), (key, unit.get(key))
    assert any("/etc/depot/depot.env" in v for v in unit["EnvironmentFile"])
    assert "--data /var/lib/depot" in unit["ExecStart"][0]
    assert "AF_UNIX" in unit["RestrictAddressFamilies"][0]        # sd_notify needs it


def test_env_example_is_a_valid_configuration(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEPOT_")}
    for line in ENV_EXAMPLE.read_text().splitlines():
        line = line.strip()
        if line.startswith("#"):
            line = line.lstrip("#").strip()
            if not re.match(r"^DEPOT_[A-Z_]+=", line) or "REPOSITORIES__" in line:
                continue
        if "=" in line:
            key, _, value = line.partition("=")
            env[key] = value
    assert env["DEPOT_LISTEN"] and env["DEPOT_PUBLIC_URL"]
    config = tmp_path / "depot.yaml"
    assert subprocess.run([str(DEPOT_BIN), "init", str(config)], capture_output=True).returncode == 0
    proc = subprocess.run([str(DEPOT_BIN), "check-config", str(config)], capture_output=True, text=True,
                          env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr


@pytest.fixture
def notify_socket() -> Iterator[tuple[socket.socket, str]]:
    """A datagram socket like systemd's (short path: sun_path holds 108 bytes)."""
    folder = tempfile.mkdtemp(prefix="depot-notify-", dir="/tmp")
    path = os.path.join(folder, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(20)
    yield sock, path
    sock.close()
    shutil.rmtree(folder, ignore_errors=True)


def received(sock: socket.socket, count: int) -> list[str]:
    return [sock.recv(4096).decode() for _ in range(count)]


def test_workers_notify_ready(notify_socket: tuple[socket.socket, str], depot_factory) -> None:
    sock, path = notify_socket
    depot = depot_factory({"files": {"format": "generic", "type": "hosted"}}, workers=2,
                          env={"NOTIFY_SOCKET": path})
    messages = received(sock, 2)
    assert all(m.startswith("READY=1\n") and "STATUS=serving" in m for m in messages), messages
    pids = {re.search(r"pid (\d+)", m).group(1) for m in messages}
    assert len(pids) == 2                                            # one per worker
    assert "listening pid=" in depot.log()


def test_abstract_notify_socket() -> None:
    name = f"depot-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        code = "from proxy import sdnotify; import sys; sys.exit(0 if sdnotify.ready() else 1)"
        env = {**os.environ, "NOTIFY_SOCKET": "@" + name}
        assert subprocess.run([str(DEPOT_BIN.parent / "python"), "-c", code], env=env, cwd=ROOT).returncode == 0
        assert sock.recv(4096).startswith(b"READY=1")
    env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
    assert subprocess.run([str(DEPOT_BIN.parent / "python"), "-c", code], env=env, cwd=ROOT).returncode == 1
