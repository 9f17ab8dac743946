"""systemd readiness: send `READY=1` (or any state) to $NOTIFY_SOCKET, a no-op without it.

The protocol (sd_notify(3)): one datagram of newline-separated `KEY=VALUE` assignments to the
AF_UNIX socket named by $NOTIFY_SOCKET; a leading `@` means the abstract namespace.

With `--workers N` every worker notifies once it serves: the master bound the port before any
worker started, so the first worker that serves already answers it. The unit therefore sets
`NotifyAccess=all`; systemd ignores the repeated READY=1 of the other (or restarted) workers.
"""
from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger("depot.sdnotify")


def notify(state: str = "READY=1") -> bool:
    """Send `state` to systemd; True when sent, False without NOTIFY_SOCKET or on error."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    elif not address.startswith("/"):
        log.warning("ignoring NOTIFY_SOCKET=%r: not a unix socket path", address)
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(state.encode())
    except OSError as exc:
        log.warning("sd_notify to %s failed: %s", address.replace("\0", "@"), exc)
        return False
    return True


def ready() -> bool:
    """Tell systemd this process serves (READY=1 with its status line)."""
    return notify(f"READY=1\nSTATUS=serving (pid {os.getpid()})")
