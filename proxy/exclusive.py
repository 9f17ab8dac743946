"""One depot per port and per data directory: the master binds the listening sockets (see
bind()) and holds an flock on <data_dir>/serve.lock for its lifetime; workers inherit them.
A second depot gets "address already in use" or "data directory in use" and exits."""
from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
import time
from pathlib import Path
from typing import Iterator

LOCK_NAME = "serve.lock"


class StartError(RuntimeError):
    """depot cannot start: the message says why, for the operator."""


def create_private_dir(path: Path) -> None:
    """Create the data directory 0700 (it holds password hashes, private blobs and the audit log)."""
    path = Path(path)
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        if path.stat().st_mode & 0o077:
            os.chmod(path, 0o700)
    except OSError as exc:
        raise StartError(f"cannot prepare data directory {path}: {exc.strerror}") from None


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


def bind(host: str, port: int, count: int = 1, backlog: int = 1024) -> list[socket.socket]:
    """`count` listening sockets on host:port, one per worker, that no other process shares.

    One socket is bound exclusively. Several share SO_REUSEPORT (so the kernel spreads new
    connections evenly over the workers, which one shared socket does not do), but only after an
    exclusive bind proved the address free, with every depot's check-and-bind for this port
    serialised by an abstract unix socket: a second depot always sees the first one's sockets
    and exits with "address already in use"."""
    with _port_mutex(port):
        probe = _socket(host, port, backlog, reuse_port=False)
        if count == 1:
            return [probe]
        probe.close()
        sockets: list[socket.socket] = []
        try:
            for _ in range(count):
                sockets.append(_socket(host, port, backlog, reuse_port=True))
        except BaseException:
            for sock in sockets:
                sock.close()
            raise
        return sockets


def check_free(listen: str) -> None:
    """Raise StartError if HOST:PORT is already taken (for a port another library binds)."""
    host, _, port = listen.rpartition(":")
    bind(host.strip("[]") or "127.0.0.1", int(port))[0].close()


@contextlib.contextmanager
def _port_mutex(port: int, wait: float = 10.0) -> Iterator[None]:
    """Held while a depot checks and binds `port` (released when the process ends, at the latest)."""
    mutex = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    deadline = time.monotonic() + wait
    try:
        while True:
            try:
                mutex.bind(f"\0depot-bind-{port}")
                break
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE or time.monotonic() > deadline:
                    raise StartError(f"cannot claim port {port}: another depot is binding it") from None
                time.sleep(0.05)
        yield
    finally:
        mutex.close()


def _socket(host: str, port: int, backlog: int, reuse_port: bool) -> socket.socket:
    """A listening socket (SO_REUSEADDR only lets it reuse a port in TIME_WAIT; on Linux it never
    shares a port another socket listens on)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
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
