"""Real scale-out components for the tests: a private PostgreSQL cluster and a single-node Ceph
RGW (mon + memstore OSD + radosgw), each started once per test session (per xdist worker) on
free loopback ports and stopped by PID. Recipes measured in shared/SCALE.md; the Ceph start and
stop scripts are tests/scale/ceph_start.sh / ceph_stop.sh.
"""
from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

HERE = Path(__file__).parent / "scale"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _port_range_free(base: int, count: int) -> bool:
    for port in range(base, base + count):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def _wait_gone(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


# PostgreSQL ------------------------------------------------------------------------------
def _pg_bin() -> Path:
    root = Path("/usr/lib/postgresql")
    versions = sorted((p for p in root.glob("*/bin/pg_ctl")), key=lambda p: int(p.parts[-3]))
    if not versions:
        raise RuntimeError("PostgreSQL is not installed (tests/clients/scale.apt: postgresql)")
    return versions[-1].parent


def _as_postgres(*args: str) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else list(args)


@dataclass
class PgCluster:
    folder: Path
    port: int
    pid: int

    @property
    def url(self) -> str:
        return f"postgresql://depot@127.0.0.1:{self.port}/postgres"

    def new_database(self) -> str:
        """A fresh, empty database on the cluster; its URL."""
        import psycopg
        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql://depot@127.0.0.1:{self.port}/{name}"


def start_postgres() -> PgCluster:
    """initdb + pg_ctl start as the postgres user in a private folder on a free port."""
    folder = Path(tempfile.mkdtemp(prefix="depot-pg-"))
    shutil.chown(folder, "postgres") if os.geteuid() == 0 else None
    bin_dir, port = _pg_bin(), free_port()
    subprocess.run(_as_postgres(str(bin_dir / "initdb"), "-D", f"{folder}/data", "-A", "trust", "-U", "depot"),
                   check=True, stdout=subprocess.DEVNULL)
    subprocess.run(_as_postgres(str(bin_dir / "pg_ctl"), "-D", f"{folder}/data", "-o",
                                f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c max_connections=300",
                                "-l", f"{folder}/log", "-w", "start"), check=True, stdout=subprocess.DEVNULL)
    pid = int((folder / "data" / "postmaster.pid").read_text().split()[0])
    return PgCluster(folder, port, pid)


def stop_postgres(cluster: PgCluster) -> None:
    """Fast shutdown by PID (SIGINT), then the folder is removed."""
    try:
        os.kill(cluster.pid, signal.SIGINT)
    except ProcessLookupError:
        pass
    if not _wait_gone(cluster.pid, 20):
        os.kill(cluster.pid, signal.SIGKILL)
        _wait_gone(cluster.pid, 5)
    shutil.rmtree(cluster.folder, ignore_errors=True)


# Ceph RGW --------------------------------------------------------------------------------
@dataclass
class CephRgw:
    folder: Path
    port: int

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    access_key = "testkey"
    secret_key = "testsecret"


def start_ceph() -> CephRgw:
    """The measured start script under setsid on free ports (about 12 s to ready)."""
    for tool in ("ceph-mon", "ceph-osd", "radosgw", "radosgw-admin"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} is not installed (tests/clients/scale.apt)")
    folder = Path(tempfile.mkdtemp(prefix="depot-ceph-"))
    for _ in range(50):
        base = random.randrange(20000, 60000, 200)
        if _port_range_free(base, 200):
            break
    env = dict(os.environ, D=str(folder / "c"), RGW_PORT=str(base), MON_PORT=str(base + 1),
               MS_MIN=str(base + 10), MS_MAX=str(base + 199))
    log = open(folder / "start.log", "wb")
    try:
        subprocess.run(["bash", str(HERE / "ceph_start.sh")], env=env, stdout=log, stderr=subprocess.STDOUT,
                       check=True, timeout=180, start_new_session=True)
    except BaseException as exc:
        output = (folder / "start.log").read_text()[-2000:]
        stop_ceph(CephRgw(folder, base))
        raise RuntimeError("Ceph RGW did not start: " + output) from exc
    finally:
        log.close()
    return CephRgw(folder, base)


def stop_ceph(ceph: CephRgw) -> None:
    """The daemons by PID (rgw first), then the folder."""
    subprocess.run(["bash", str(HERE / "ceph_stop.sh")], env=dict(os.environ, D=str(ceph.folder / "c")),
                   check=False, timeout=60)
    shutil.rmtree(ceph.folder, ignore_errors=True)


def session_service(start, stop) -> Iterator:  # type: ignore[no-untyped-def]
    """Start once, yield, always stop."""
    service = start()
    try:
        yield service
    finally:
        stop(service)
