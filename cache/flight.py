"""Single flight across tasks and worker processes, with a streaming tee through a temp file.

The leader of a key holds an exclusive flock on tmp/flights/<id>.lock for the whole fetch,
writes the upstream body to <id>.<gen>.part and its progress to <id>.json. Clients in the
same process follow the LocalFlight (events, no polling); clients in other processes read
the same part file and poll the json. The final bytes of a body are only handed out once the
leader has verified and committed it, so a client never sees a complete-looking bad file.
"""
from __future__ import annotations

import asyncio
import fcntl
import hashlib
import json
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator

POLL_INTERVAL = 0.01
NO_LOCK = -1                     # the "lock" of single-process mode
LEADER_GRACE = 0.5               # how long a lock holder may go without publishing a state
READ_CHUNK = 256 * 1024
TERMINAL = frozenset({"done", "refreshed", "notfound", "stale", "failed"})


class Aborted(Exception):
    """The fetch a client was reading failed; its connection must be cut short."""


@dataclass
class FlightState:
    """What a leader publishes about its fetch (mirrored into the json file)."""

    state: str = "starting"          # starting | streaming | TERMINAL
    gen: str = ""
    pid: int = 0
    started: float = 0.0
    finished: float = 0.0
    part: str = ""                   # part file name, while streaming
    length: int | None = None
    content_type: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    status: int = 0                  # error status to answer for "failed"
    reason: str = ""

    def to_json(self) -> bytes:
        return json.dumps(self.__dict__).encode()


class LocalFlight:
    """The in-process view of a fetch this process leads."""

    def __init__(self, fid: str, state: FlightState) -> None:
        self.fid = fid
        self.state = state
        self.written = 0
        self.decided = asyncio.Event()     # state left "starting"
        self.changed = asyncio.Event()     # pulsed on every progress or state change
        self.joiners = 0

    def pulse(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()


class Flights:
    """Leader election and the files of fetches in progress."""

    def __init__(self, tmp_dir: Path, cross_process: bool = True) -> None:
        self.dir = Path(tmp_dir) / "flights"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.local: dict[str, LocalFlight] = {}
        # with one worker process, in-process state is all there is: no lock or state files
        self.cross_process = cross_process

    @staticmethod
    def flight_id(repo: str, key: str) -> str:
        return hashlib.sha256(f"{repo}\0{key}".encode()).hexdigest()

    def try_lead(self, fid: str) -> int | None:
        """An fd holding the exclusive lock of this key, or None if another leader has it.

        Single-process mode returns -1 (no lock file): the caller has already checked self.local.
        """
        if not self.cross_process:
            return NO_LOCK
        fd = os.open(self.dir / f"{fid}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return fd

    def start(self, fid: str) -> LocalFlight:
        """Register this process as leader (call right after try_lead succeeded)."""
        # the pid in gen (and so in the part file's name) lets the master clean up after a killed worker
        state = FlightState(gen=f"{os.getpid()}-{secrets.token_hex(6)}", pid=os.getpid(), started=time.time())
        flight = LocalFlight(fid, state)
        self.local[fid] = flight
        self.publish(flight)
        return flight

    def part_path(self, flight: LocalFlight) -> Path:
        return self.dir / f"{flight.fid}.{flight.state.gen}.part"

    def publish(self, flight: LocalFlight) -> None:
        """Write the state for other processes (atomically) and wake local followers."""
        if not self.cross_process:
            if flight.state.state != "starting":
                flight.decided.set()
            flight.pulse()
            return
        meta = self.dir / f"{flight.fid}.json"
        temp = self.dir / f"{flight.fid}.{flight.state.gen}.json.tmp"
        temp.write_bytes(flight.state.to_json())
        os.replace(temp, meta)
        if flight.state.state != "starting":
            flight.decided.set()
        flight.pulse()

    def finish(self, flight: LocalFlight, lock_fd: int, state: str, **fields: Any) -> None:
        """Publish a terminal state and release the lock."""
        flight.state.state = state
        flight.state.finished = time.time()
        for name, value in fields.items():
            setattr(flight.state, name, value)
        try:
            self.publish(flight)
        finally:
            self.local.pop(flight.fid, None)
            release(lock_fd)

    def read_remote(self, fid: str) -> FlightState | None:
        try:
            return FlightState(**json.loads((self.dir / f"{fid}.json").read_bytes()))
        except (FileNotFoundError, ValueError, TypeError):
            return None

    def clean_process(self, pid: int) -> int:
        """Remove the part and temp files of a dead process's fetches; returns how many."""
        removed = 0
        for path in self.dir.glob(f"*.{int(pid)}-*"):
            path.unlink(missing_ok=True)
            removed += 1
        return removed

    def clean(self) -> int:
        """Remove leftovers of fetches whose leader is gone (start-up, before workers run)."""
        removed = 0
        for path in self.dir.iterdir():
            if path.suffix in (".part", ".tmp", ".json"):
                path.unlink(missing_ok=True)
                removed += 1
        return removed


def release(lock_fd: int) -> None:
    """Let go of a leader's lock (closing its file releases the flock)."""
    if lock_fd != NO_LOCK:
        os.close(lock_fd)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


async def wait_remote(flights: Flights, fid: str, since: float, timeout: float) -> FlightState | None:
    """Wait for another process's flight (started before `since` or after) to decide.

    Returns its state once streaming or terminal, or None if there is no live leader (retry).
    A lock holder that publishes nothing (no state, or only an older flight's) for LEADER_GRACE
    may have found the entry stored and let go without a flight: None, so the caller looks again.
    """
    now = time.monotonic()
    deadline, unpublished_since = now + timeout, now
    while time.monotonic() < deadline:
        state = flights.read_remote(fid)
        if state is not None:
            if state.state == "streaming" and _alive(state.pid):
                return state
            if state.state in TERMINAL and state.finished >= since - 0.001:
                return state
            if state.state in ("starting", "streaming") and not _alive(state.pid):
                return None
        if state is None or state.state in TERMINAL:
            if time.monotonic() - unpublished_since > LEADER_GRACE:
                return None
        else:
            unpublished_since = time.monotonic()
        await asyncio.sleep(POLL_INTERVAL)
    return None


def open_part(flights: Flights, state: FlightState) -> int | None:
    """An fd on the flight's part file, or None if it is already committed or gone."""
    try:
        return os.open(flights.dir / state.part, os.O_RDONLY)
    except FileNotFoundError:
        return None


async def follow(flights: Flights, fid: str, state: FlightState, local: LocalFlight | None,
                 fd: int) -> AsyncIterator[bytes]:
    """Yield the body of a streaming flight as it grows; raise Aborted if the fetch fails.

    Takes ownership of fd (from open_part). Reads are from a just-written file in the page
    cache: cheap enough to do on the loop.
    """
    try:
        pos = 0
        while True:
            chunk = os.read(fd, READ_CHUNK)
            if chunk:
                if state.length is not None and pos + len(chunk) >= state.length:
                    # hold the last bytes back until the leader has verified the whole body
                    final = await _final_state(flights, fid, state.gen, local)
                    if final != "done":
                        raise Aborted(f"fetch ended as {final}")
                pos += len(chunk)
                yield chunk
                if state.length is not None and pos >= state.length:
                    return
                continue
            current = local.state if local is not None else flights.read_remote(fid)
            if current is None or current.gen != state.gen:
                raise Aborted("fetch vanished")
            if current.state == "done":
                if os.fstat(fd).st_size <= pos:
                    return
                continue
            if current.state in TERMINAL:
                raise Aborted(f"fetch ended as {current.state}: {current.reason}")
            if local is None and not _alive(current.pid):
                raise Aborted("leader process died")
            await _wait_progress(local)
    finally:
        os.close(fd)


async def _wait_progress(local: LocalFlight | None) -> None:
    if local is None:
        await asyncio.sleep(POLL_INTERVAL)
        return
    try:
        await asyncio.wait_for(local.changed.wait(), timeout=1.0)
    except asyncio.TimeoutError:
        pass


async def _final_state(flights: Flights, fid: str, gen: str, local: LocalFlight | None) -> str:
    while True:
        current = local.state if local is not None else flights.read_remote(fid)
        if current is None or current.gen != gen:
            return "vanished"
        if current.state in TERMINAL:
            return current.state
        if local is None and not _alive(current.pid):
            return "leader died"
        await _wait_progress(local)
