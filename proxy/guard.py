"""Connection deadlines aiohttp does not have: a request's headers must arrive within
`header_timeout` of their first byte (a slowloris client sending one byte every few seconds is
cut off). The keep-alive idle limit is aiohttp's own keepalive_timeout, which also covers a
connection that never sends a request."""
from __future__ import annotations

import asyncio
import socket
import ssl
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler


class GuardedRequestHandler(RequestHandler):
    """aiohttp's protocol plus a deadline on the request line and headers."""

    __slots__ = ("_header_timeout", "_header_deadline")

    def __init__(self, manager: web.Server, *, header_timeout: float, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._header_timeout = header_timeout
        self._header_deadline: asyncio.TimerHandle | None = None

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        # the protocol waits for a message and these bytes did not complete one: a header is
        # arriving. (Bodies arrive while a handler runs, when no waiter is pending.)
        waiter = self._waiter
        waiting = waiter is not None and not waiter.done()
        if waiting and self._header_deadline is None and self._header_timeout > 0:
            self._header_deadline = self._loop.call_later(self._header_timeout, self._header_expired)
        elif not waiting and self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _header_expired(self) -> None:
        self._header_deadline = None
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            self.force_close()

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None
        super().connection_lost(exc)


class GuardedSockSite(web.SockSite):
    """A SockSite whose connections use GuardedRequestHandler."""

    def __init__(self, runner: web.BaseRunner, sock: socket.socket, header_timeout: float,
                 ssl_context: ssl.SSLContext | None = None, backlog: int = 1024) -> None:
        super().__init__(runner, sock, ssl_context=ssl_context, backlog=backlog)
        self._header_timeout = header_timeout

    async def start(self) -> None:
        await web.BaseSite.start(self)
        loop = asyncio.get_running_loop()
        server = self._runner.server
        assert server is not None
        # the same keyword arguments web.Server would give its own RequestHandler
        kwargs = dict(server._kwargs)

        def factory() -> GuardedRequestHandler:
            return GuardedRequestHandler(server, loop=loop, header_timeout=self._header_timeout, **kwargs)

        self._server = await loop.create_server(factory, sock=self._sock, ssl=self._ssl_context,
                                                backlog=self._backlog)
