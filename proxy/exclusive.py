"""One depot per port and per data directory: the master binds the listening socket once
(no SO_REUSEPORT, so another process gets "address already in use") and holds an flock on
<data_dir>/serve.lock for its lifetime. Workers inherit both; nothing else can join."""
from __future__ import annotations

import errno
import fcntl
import os
import socket
from pathlib import Path

LOCK_NAME = "serve.lock"


class StartError(RuntimeError):
    """depot cannot start: the message says why, for the operator."""


def create_private_dir(path: Path) -> None:
    """Create the data directory 0700 (it holds password hashes, private blobs and the audit log)."""
    path = Path(path)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.stat().st_mode & 0o077:
        os.chmod(path, 0o700)


def lock_data_dir(data_dir: Path) -> int:
    """An fd holding an exclusive flock on the data directory's lock file (kept for the lifetime
    of the server; closing it, or the process ending, releases it)."""
    path = Path(data_dir) / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise StartError(f"data directory {data_dir} is in use by another depot server (pid {holder}); "
                         "only one `depot serve` may use a data directory") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def bind(host: str, port: int, backlog: int = 1024) -> socket.socket:
    """The listening socket of this depot, bound exclusively (SO_REUSEADDR only lets it reuse a
    port in TIME_WAIT; on Linux it never shares a port another socket listens on)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise StartError(f"cannot listen on {host}:{port}: address already in use "
                             "(is another depot or program serving it?)") from None
        raise StartError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.set_inheritable(True)
    sock.setblocking(False)
    return sock
