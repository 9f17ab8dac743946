"""The two ends of a cross-node flight (cache/cluster.py).

`serve_flight` is the leader node's internal endpoint: it streams a fetch in progress from the
node's part file (flight.follow, which holds the last bytes back until the body is verified and
committed) or tells how the flight ended. `run_relay` is a follower node's task: it streams that
endpoint into its own part file, so the node's clients follow it like a local fetch, then
settles the local flight from the entry (or negative entry) the leader wrote.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web

from . import flight as fl
from .cluster import STATE_HEADER, TOKEN_HEADER, Leader
from .serve import StreamingResponse

if TYPE_CHECKING:
    from .pull import FetchSpec, PullThrough

log = logging.getLogger("depot.relay")

START_WAIT = 30.0            # how long the endpoint waits for a flight to leave "starting"


async def serve_flight(pull: "PullThrough", request: web.Request, fid: str) -> web.StreamResponse:
    """GET /-/internal/flight/<fid>: the body of this node's fetch of fid as it downloads."""
    token = pull.cluster.node_token
    if not token or request.headers.get(TOKEN_HEADER) != token:
        return web.Response(status=403, text="not a depot node of this cluster\n")
    deadline = time.monotonic() + START_WAIT
    while time.monotonic() < deadline:
        local = pull.flights.local.get(fid)
        state = local.state if local is not None else pull.flights.read_remote(fid)
        if state is None or state.state in fl.TERMINAL:
            ended = {"state": state.state if state else "none", "status": state.status if state else 0,
                     "reason": state.reason if state else ""}
            return web.Response(status=409, headers={STATE_HEADER: json.dumps(ended)})
        if state.state == "streaming":
            fd = fl.open_part(pull.flights, state)
            if fd is not None:
                info = json.dumps({"content_type": state.content_type, "headers": state.headers})
                chunks = fl.follow(pull.flights, fid, state, local, fd)
                return StreamingResponse(chunks, state.length, {STATE_HEADER: info,
                                                                "Content-Type": "application/octet-stream"})
        await asyncio.sleep(fl.POLL_INTERVAL)
    return web.Response(status=503, text="flight did not start\n")


async def run_relay(pull: "PullThrough", spec: "FetchSpec", flight: fl.LocalFlight, lock: int,
                    leader: Leader) -> None:
    """Follow another node's fetch into this node's flight; never commits anything itself."""
    part = pull.flights.part_path(flight)
    ended: dict[str, Any] = {"state": "failed", "status": 502, "reason": "leader node lost"}
    streamed = False
    try:
        session = pull.relay_session()
        url = f"{leader.node}/-/internal/flight/{flight.fid}"
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=pull.upstream.timeouts.connect,
                                        sock_read=pull.upstream.timeouts.read)
        async with session.get(url, headers={TOKEN_HEADER: pull.cluster.node_token}, timeout=timeout) as resp:
            if resp.status == 200:
                await _stream(pull, flight, resp, part)
                streamed = True
            elif STATE_HEADER in resp.headers:
                ended = json.loads(resp.headers[STATE_HEADER])
    except Exception as exc:  # the leader died or cut us off: this flight fails, clients are cut
        log.warning("relay from %s failed key=%s: %s: %s", leader.node, spec.key, type(exc).__name__, exc)
        streamed = False
    finally:
        await _settle(pull, spec, flight, lock, streamed, ended)
        part.unlink(missing_ok=True)         # followers keep their open descriptors


async def _stream(pull: "PullThrough", flight: fl.LocalFlight, resp: aiohttp.ClientResponse, part: Any) -> None:
    info = json.loads(resp.headers.get(STATE_HEADER, "{}"))
    state = flight.state
    state.length = resp.content_length
    state.content_type = info.get("content_type")
    state.headers = info.get("headers") or {}
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        state.state, state.part = "streaming", part.name
        pull.flights.publish(flight)
        written = 0
        async for chunk in resp.content.iter_any():
            view = memoryview(chunk)
            while view:                      # page-cache writes: cheap enough on the loop
                view = view[os.write(fd, view):]
            written += len(chunk)
            flight.pulse()
        if state.length is not None and written != state.length:
            raise ConnectionResetError(f"got {written} of {state.length} bytes")
    finally:
        os.close(fd)


async def _settle(pull: "PullThrough", spec: "FetchSpec", flight: fl.LocalFlight, lock: int,
                  streamed: bool, ended: dict[str, Any]) -> None:
    """Finish the local flight from what the leader stored."""
    repo, key = spec.repo.name, spec.key
    outcome = "done" if streamed else str(ended.get("state", "failed"))
    if outcome in ("done", "refreshed", "none"):
        entry = await pull.entries.get(repo, key)
        if entry is not None:
            pull.flights.finish(flight, lock, "refreshed" if outcome == "refreshed" else "done")
            return
        if outcome == "none" and await asyncio.to_thread(pull.entries.is_negative, repo, key):
            pull.flights.finish(flight, lock, "notfound")
            return
        outcome, ended = "failed", {"status": 502, "reason": "the leading node stored nothing"}
    if outcome in ("notfound", "stale"):
        pull.flights.finish(flight, lock, outcome, status=int(ended.get("status") or 502),
                            reason=str(ended.get("reason") or ""))
        return
    pull.flights.finish(flight, lock, "failed", status=int(ended.get("status") or 502),
                        reason=str(ended.get("reason") or "leader failed"))
