"""Shared fixtures: real depot processes and a counting upstream, all on 127.0.0.1."""
from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from depot_process import DepotProcess, free_port  # noqa: E402
from upstream import Upstream, start_upstream  # noqa: E402
import scale_services  # noqa: E402

__all__ = ["DepotProcess", "free_port"]


@pytest.fixture
def depot_factory(tmp_path: Path) -> Iterator[Callable[..., DepotProcess]]:
    """depot_factory(repositories, workers=1, extra=None) -> a running DepotProcess."""
    started: list[DepotProcess] = []

    def make(repositories: dict[str, Any], workers: int = 1, extra: dict[str, Any] | None = None,
             name: str | None = None, env: dict[str, str] | None = None,
             secure: bool = False) -> DepotProcess:
        workdir = tmp_path / (name or f"depot{len(started)}")
        process = DepotProcess(workdir, repositories, workers=workers, extra=extra, env=env, secure=secure)
        started.append(process)
        return process

    yield make
    for process in started:
        process.stop()


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[Upstream]:
    """A counting, fault-injecting static upstream serving tmp_path/'up'."""
    root = tmp_path / "up"
    root.mkdir()
    server = start_upstream(root)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[scale_services.PgCluster]:
    """One private PostgreSQL cluster per test session (per xdist worker), stopped by PID."""
    yield from scale_services.session_service(scale_services.start_postgres, scale_services.stop_postgres)


@pytest.fixture(scope="session")
def ceph_rgw() -> Iterator[scale_services.CephRgw]:
    """One single-node Ceph RGW per test session (per xdist worker), stopped by PID."""
    yield from scale_services.session_service(scale_services.start_ceph, scale_services.stop_ceph)


@pytest.fixture(scope="module")
def module_upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upstream]:
    root = tmp_path_factory.mktemp("up")
    server = start_upstream(root)
    yield server
    server.stop()


TOKEN = re.compile(r"\bdpt_[A-Za-z0-9_-]{32}(?![A-Za-z0-9_.-])")   # proxy/users.py: "dpt_" + 32 url-safe
SECRETS = (DepotProcess.ADMIN_PASSWORD, "password-123", "s3cret-upstream-pw", "pw-from-env")


@pytest.fixture(scope="session", autouse=True)
def no_secret_in_logs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """After the whole run: no password or token appears in any log depot wrote."""
    yield
    leaks = []
    for log in tmp_path_factory.getbasetemp().rglob("*.log"):
        if not log.is_file() or log.stat().st_size > 50 * 2**20:
            continue
        text = log.read_text(errors="replace")
        found = [s for s in SECRETS if s in text] + TOKEN.findall(text)
        if found and ("depot" in log.name or "audit" in log.name):
            leaks.append(f"{log}: {', '.join(found)}")
    assert not leaks, "secrets in logs:\n" + "\n".join(leaks)
