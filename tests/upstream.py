"""A controllable static HTTP upstream for depot's tests (aiohttp.web, loopback only).

Run as a process::

    python tests/upstream.py --root DIR --port 0      # first stdout line: "PORT <n>"

or from a test::

    up = start_upstream(tmp_path / "up")               # launches the process above
    up.put("a/b.txt", b"hello"); up.url                # "http://127.0.0.1:<port>"
    up.mode("/a/b.txt", "status", status=503, times=1)
    up.counts()                                        # {"GET /a/b.txt": 1, ...}
    up.stop()

Files under ``--root`` are served at ``/<relative path>`` for GET and HEAD with real
validators (``ETag`` = quoted sha256 prefix of the content, ``Last-Modified`` = mtime),
304 answers to ``If-None-Match`` / ``If-Modified-Since`` and single ``Range`` requests (206).

Counting: every non-control request is counted under ``"METHOD /path"``; a request that
carried ``If-None-Match`` or ``If-Modified-Since`` is counted under
``"METHOD /path (conditional)"`` *instead* (the two keys are disjoint, so their sum is the
number of requests for that path).

Control API (never counted):

* ``GET /_control/counts`` -> ``{"GET /a/b": 3, ...}``
* ``GET /_control/log`` -> the last 1000 requests: method, path, status, mode, request headers
* ``POST /_control/reset`` -> clears counts and log; with JSON ``{"modes": true}`` modes too
* ``POST /_control/mode`` with JSON ``{"path": "/x" | "*", "mode": M, ...}``; ``times: n``
  applies the mode to the next n matching requests only. A path's own mode wins over "*".
  Setting ``normal`` on a path clears that path's mode; ``normal`` on ``"*"`` clears all.
  Modes: ``normal``; ``slow`` (``rate`` bytes/s, or ``chunk`` bytes every ``delay`` s;
  optional ``headers_delay`` s before the status line); ``drop`` (full Content-Length,
  ``after`` bytes (default half), then close; ``reset: true`` sends a TCP RST instead of
  FIN); ``short`` (Content-Length announces ``extra`` (default 100) bytes more than the
  whole body that is then sent, then a clean close); ``status`` (``status``, optional
  ``body``, ``headers``, ``delay`` s before answering); ``hang`` (read the request, never answer; closes after
  ``seconds``, default 300).
* ``PUT /_files/<path>`` writes a file (``?mtime=<epoch seconds>`` sets its mtime);
  ``DELETE /_files/<path>`` removes it.
"""
from __future__ import annotations

import argparse
import asyncio
import email.utils
import hashlib
import json
import os
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

MODES = ("normal", "slow", "drop", "short", "status", "hang")
CHUNK = 256 * 1024
LOG_MAX = 1000
HOP_HEADERS = ("If-None-Match", "If-Modified-Since", "Range", "If-Range", "Authorization",
               "User-Agent", "Accept", "Accept-Encoding", "Host")


# --------------------------------------------------------------------------- server

@dataclass
class ModeSpec:
    """One active behaviour; ``times`` is None for "until changed"."""

    mode: str
    params: dict[str, Any] = field(default_factory=dict)
    times: int | None = None


class UpstreamState:
    """Files, counters, modes and the validator cache of one upstream server."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.counts: Counter[str] = Counter()
        self.log: deque[dict[str, Any]] = deque(maxlen=LOG_MAX)
        self.modes: dict[str, ModeSpec] = {}
        self._etags: dict[tuple[str, int, int, int], str] = {}

    def resolve(self, rel: str) -> Path | None:
        """Map a URL path onto a file under root; None if it escapes root."""
        rel = rel.lstrip("/")
        if not rel or "\x00" in rel or any(p in ("..", ".") for p in rel.split("/")):
            return None
        path = (self.root / rel).resolve()
        if path != self.root and self.root not in path.parents:
            return None
        return path

    def take_mode(self, path: str) -> ModeSpec:
        """The mode applying to `path`, consuming one use of a counted mode."""
        key = path if path in self.modes else "*"
        spec = self.modes.get(key)
        if spec is None:
            return ModeSpec("normal")
        if spec.times is not None:
            spec.times -= 1
            if spec.times <= 0:
                del self.modes[key]
        return spec

    def etag(self, path: Path, st: os.stat_result) -> str:
        """A strong ETag from the content's sha256, cached by inode, size and mtime."""
        key = (str(path), st.st_ino, st.st_size, st.st_mtime_ns)
        tag = self._etags.get(key)
        if tag is None:
            digest = hashlib.sha256()
            with path.open("rb") as f:
                while block := f.read(1 << 20):
                    digest.update(block)
            tag = f'"{digest.hexdigest()[:32]}"'
            if len(self._etags) > 10000:
                self._etags.clear()
            self._etags[key] = tag
        return tag


STATE = web.AppKey("state", UpstreamState)


def _is_conditional(request: web.Request) -> bool:
    return "If-None-Match" in request.headers or "If-Modified-Since" in request.headers


def _not_modified(request: web.Request, etag: str, mtime: float) -> bool:
    """RFC 9110: If-None-Match (weak comparison) wins over If-Modified-Since."""
    inm = request.headers.get("If-None-Match")
    if inm is not None:
        if inm.strip() == "*":
            return True
        tags = {t.strip().removeprefix("W/") for t in inm.split(",")}
        return etag in tags
    ims = request.headers.get("If-Modified-Since")
    if ims:
        try:
            since = email.utils.parsedate_to_datetime(ims).timestamp()
        except (TypeError, ValueError):
            return False
        return int(mtime) <= since
    return False


def _parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """A single `bytes=a-b` range as (start, end_exclusive); None = serve everything."""
    m = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", header or "")
    if not m or (not m.group(1) and not m.group(2)):
        return None
    if m.group(1):
        start = int(m.group(1))
        end = min(int(m.group(2)) + 1, size) if m.group(2) else size
    else:
        start, end = max(size - int(m.group(2)), 0), size
    return (start, end) if start < end else (size, size)


async def _write_file(resp: web.StreamResponse, path: Path, start: int, length: int,
                      spec: ModeSpec) -> None:
    """Send `length` bytes of `path` from `start`, paced as the mode asks."""
    rate = spec.params.get("rate")
    chunk = int(spec.params.get("chunk") or (max(1, int(rate) // 10) if rate else CHUNK))
    delay = float(spec.params.get("delay") or (chunk / float(rate) if rate else 0.0))
    sent = 0
    with path.open("rb") as f:
        f.seek(start)
        while sent < length:
            block = f.read(min(chunk, length - sent))
            if not block:
                break
            await resp.write(block)
            sent += len(block)
            if delay and sent < length:
                await asyncio.sleep(delay)


async def _flush_and_close(request: web.Request, reset: bool) -> None:
    """Close the connection once queued bytes left; with `reset`, abort with a TCP RST."""
    transport = request.transport
    if transport is None:
        return
    for _ in range(200):                       # up to ~2 s for the write buffer to drain
        if transport.get_write_buffer_size() == 0:
            break
        await asyncio.sleep(0.01)
    if reset:
        await asyncio.sleep(0.05)              # let loopback deliver before the RST
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
    else:
        transport.close()


def _file_headers(etag: str, st: os.stat_result) -> dict[str, str]:
    return {"ETag": etag, "Last-Modified": email.utils.formatdate(st.st_mtime, usegmt=True),
            "Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}


async def _serve_file(request: web.Request, path: Path, spec: ModeSpec) -> web.StreamResponse:
    """Answer GET/HEAD for an existing file according to `spec`."""
    st = path.stat()
    state = request.app[STATE]
    etag = await asyncio.get_running_loop().run_in_executor(None, state.etag, path, st)
    headers = _file_headers(etag, st)
    if _not_modified(request, etag, st.st_mtime):
        return web.Response(status=304, headers=headers)
    start, end = 0, st.st_size
    status = 200
    rng = _parse_range(request.headers.get("Range"), st.st_size)
    if rng is not None and request.headers.get("If-Range", etag) == etag:
        start, end = rng
        if start >= st.st_size:
            return web.Response(status=416, headers={"Content-Range": f"bytes */{st.st_size}"})
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{st.st_size}"
    length = end - start
    declared = length + int(spec.params.get("extra", 100)) if spec.mode == "short" else length
    if spec.params.get("headers_delay"):
        await asyncio.sleep(float(spec.params["headers_delay"]))
    resp = web.StreamResponse(status=status, headers=headers)
    resp.content_length = declared
    await resp.prepare(request)
    if request.method == "HEAD":
        return resp
    if spec.mode == "drop":
        after = min(int(spec.params.get("after", length // 2)), max(length - 1, 0))
        await _write_file(resp, path, start, after, spec)
        await _flush_and_close(request, bool(spec.params.get("reset")))
        return resp
    await _write_file(resp, path, start, length, spec)
    if spec.mode == "short":
        await _flush_and_close(request, False)
    return resp


async def handle_files(request: web.Request) -> web.StreamResponse:
    """Serve the static tree, counting the request and applying the active mode."""
    state = request.app[STATE]
    conditional = _is_conditional(request)
    key = f"{request.method} {request.path}" + (" (conditional)" if conditional else "")
    state.counts[key] += 1
    spec = state.take_mode(request.path)
    entry = {"method": request.method, "path": request.path, "mode": spec.mode,
             "time": time.time(),
             "headers": {h: request.headers[h] for h in HOP_HEADERS if h in request.headers}}
    state.log.append(entry)
    resp = await _answer(request, state, spec)
    entry["status"] = resp.status
    return resp


async def _answer(request: web.Request, state: UpstreamState, spec: ModeSpec) -> web.StreamResponse:
    if spec.mode == "hang":
        await asyncio.sleep(float(spec.params.get("seconds", 300)))
        await _flush_and_close(request, False)
        return web.Response(status=504)
    if spec.mode == "status":
        await asyncio.sleep(float(spec.params.get("delay", 0)))
        return web.Response(status=int(spec.params.get("status", 500)),
                            text=str(spec.params.get("body", "")),
                            headers=spec.params.get("headers") or {})
    if request.method not in ("GET", "HEAD"):
        return web.Response(status=405, headers={"Allow": "GET, HEAD"})
    path = state.resolve(request.path)
    if path is not None and path.is_dir() and (path / "index.html").is_file():
        path = path / "index.html"
    if path is None or not path.is_file():
        return web.Response(status=404, text="not found\n")
    return await _serve_file(request, path, spec)


async def control_counts(request: web.Request) -> web.Response:
    """GET /_control/counts."""
    return web.json_response(dict(request.app[STATE].counts))


async def control_log(request: web.Request) -> web.Response:
    """GET /_control/log."""
    return web.json_response(list(request.app[STATE].log))


async def control_reset(request: web.Request) -> web.Response:
    """POST /_control/reset; JSON {"modes": true} also clears modes."""
    state = request.app[STATE]
    body = await request.json() if request.can_read_body else {}
    state.counts.clear()
    state.log.clear()
    if isinstance(body, dict) and body.get("modes"):
        state.modes.clear()
    return web.json_response({"ok": True})


async def control_mode(request: web.Request) -> web.Response:
    """POST /_control/mode {"path": ..., "mode": ..., **params}."""
    state = request.app[STATE]
    try:
        body = await request.json()
        path, mode = str(body.pop("path")), str(body.pop("mode"))
    except (ValueError, KeyError, AttributeError) as exc:
        raise web.HTTPBadRequest(text=f"need JSON with path and mode: {exc}\n") from None
    if mode not in MODES or not (path == "*" or path.startswith("/")):
        raise web.HTTPBadRequest(text=f"mode must be one of {MODES}, path '*' or '/...'\n")
    times = body.pop("times", None)
    if mode == "normal":
        if path == "*":
            state.modes.clear()
        else:
            state.modes.pop(path, None)
    else:
        state.modes[path] = ModeSpec(mode, body, int(times) if times is not None else None)
    return web.json_response({p: {"mode": s.mode, "times": s.times, **s.params}
                              for p, s in state.modes.items()})


async def control_files(request: web.Request) -> web.Response:
    """PUT/DELETE /_files/<path>: publish or remove a file under root."""
    state = request.app[STATE]
    path = state.resolve(request.match_info["tail"])
    if path is None or path == state.root:
        raise web.HTTPBadRequest(text="bad path\n")
    if request.method == "DELETE":
        if not path.is_file():
            raise web.HTTPNotFound()
        path.unlink()
        return web.Response(status=204)
    data = await request.read()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    if "mtime" in request.query:
        mtime = float(request.query["mtime"])
        os.utime(path, (mtime, mtime))
    return web.Response(status=201)


def make_app(root: Path) -> web.Application:
    """The upstream application serving `root`."""
    app = web.Application(client_max_size=1 << 30)
    app[STATE] = UpstreamState(root)
    app.router.add_get("/_control/counts", control_counts)
    app.router.add_get("/_control/log", control_log)
    app.router.add_post("/_control/reset", control_reset)
    app.router.add_post("/_control/mode", control_mode)
    app.router.add_route("PUT", "/_files/{tail:.+}", control_files)
    app.router.add_route("DELETE", "/_files/{tail:.+}", control_files)
    app.router.add_route("*", "/{tail:.*}", handle_files)
    return app


async def serve(root: Path, host: str, port: int) -> None:
    """Bind, print "PORT <n>", serve until SIGTERM/SIGINT."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    runner = web.AppRunner(make_app(root), access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    print(f"PORT {sock.getsockname()[1]}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    """Command line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, required=True)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--host", default="127.0.0.1")
    args = ap.parse_args(argv)
    args.root.mkdir(parents=True, exist_ok=True)
    asyncio.run(serve(args.root, args.host, args.port))


# --------------------------------------------------------------------------- client helper

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class Upstream:
    """A running upstream subprocess and its control API."""

    def __init__(self, proc: subprocess.Popen[bytes], port: int, root: Path) -> None:
        self.proc = proc
        self.port = port
        self.root = root
        self.url = f"http://127.0.0.1:{port}"

    def _call(self, method: str, path: str, body: bytes | None = None,
              ctype: str = "application/json") -> bytes:
        req = urllib.request.Request(self.url + path, data=body, method=method,
                                     headers={"Content-Type": ctype} if body is not None else {})
        with _OPENER.open(req, timeout=30) as resp:
            return resp.read()

    def counts(self) -> dict[str, int]:
        """Request counts by "METHOD /path" (and "METHOD /path (conditional)")."""
        return json.loads(self._call("GET", "/_control/counts"))

    def count(self, path: str, method: str = "GET", conditional: bool | None = None) -> int:
        """Requests for `path`: plain only, conditional only, or (None) both."""
        c = self.counts()
        plain, cond = c.get(f"{method} {path}", 0), c.get(f"{method} {path} (conditional)", 0)
        return plain if conditional is False else cond if conditional else plain + cond

    def log(self) -> list[dict[str, Any]]:
        """The last requests seen (method, path, status, mode, selected headers)."""
        return json.loads(self._call("GET", "/_control/log"))

    def reset(self, modes: bool = False) -> None:
        """Clear counts and log (and all modes with `modes=True`)."""
        self._call("POST", "/_control/reset", json.dumps({"modes": modes}).encode())

    def mode(self, path: str, mode: str, **params: Any) -> dict[str, Any]:
        """Set the behaviour for `path` ("/x" or "*"); see the module docstring."""
        body = json.dumps({"path": path, "mode": mode, **params}).encode()
        return json.loads(self._call("POST", "/_control/mode", body))

    def put(self, path: str, data: bytes, mtime: float | None = None) -> None:
        """Write or replace a file (path relative to root, with or without leading '/')."""
        query = f"?mtime={mtime}" if mtime is not None else ""
        self._call("PUT", "/_files/" + path.lstrip("/") + query, data,
                   "application/octet-stream")

    def delete(self, path: str) -> None:
        """Remove a file."""
        self._call("DELETE", "/_files/" + path.lstrip("/"))

    def stop(self) -> None:
        """Stop the subprocess by its PID (TERM, then KILL after 5 s)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def __enter__(self) -> "Upstream":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_upstream(root: Path, port: int = 0, timeout: float = 15.0) -> Upstream:
    """Launch ``tests/upstream.py`` serving `root` and wait until it listens."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--root", str(root),
                             "--port", str(port)], stdout=subprocess.PIPE,
                            stdin=subprocess.DEVNULL)
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    line = b""
    while time.monotonic() < deadline and proc.poll() is None:
        ready, _, _ = select.select([proc.stdout], [], [], 0.2)
        if ready:
            line = proc.stdout.readline()
            break
    m = re.fullmatch(rb"PORT (\d+)\s*", line)
    if not m:
        rc = proc.poll()
        if rc is None:
            proc.kill()
            proc.wait(timeout=5)
        raise RuntimeError(f"upstream did not start (rc={rc}, first line {line!r})")
    return Upstream(proc, int(m.group(1)), root)


if __name__ == "__main__":
    main()
