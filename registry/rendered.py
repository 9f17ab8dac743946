"""Generated repository files (a signed suite, a repodata set) kept per (repository, state).

A state is a digest of what the files are rendered from (the stored packages, or the members'
states). Each state is rendered once per process even when many clients ask at the same moment
(a burst of uploads followed by a burst of reads costs one render, one signature), and the last
few states stay answerable, so a client that read the previous index can still fetch the
checksum-named files it lists while a new state is being published.
"""
from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from typing import Awaitable, Callable

log = logging.getLogger("depot.rendered")

Files = dict[str, bytes]


class Rendered:
    """Rendered file sets by (repository, state), bounded to `keep` sets."""

    def __init__(self, keep: int = 16) -> None:
        self.keep = keep
        self._done: OrderedDict[tuple[str, str], Files] = OrderedDict()
        self._pending: dict[tuple[str, str], asyncio.Future[Files]] = {}

    async def get(self, repo: str, state: str, render: Callable[[], Awaitable[Files]]) -> Files:
        """The files of `state`, rendering them (once, even for concurrent callers) if needed.
        The render runs as a task of its own: a client that goes away cancels nothing."""
        key = (repo, state)
        found = self._done.get(key)
        if found is not None:
            self._done.move_to_end(key)
            return found
        task = self._pending.get(key)
        if task is None:
            task = self._pending[key] = asyncio.ensure_future(self._render(key, render))
        return await asyncio.shield(task)

    async def _render(self, key: tuple[str, str], render: Callable[[], Awaitable[Files]]) -> Files:
        try:
            files = await render()
        finally:
            self._pending.pop(key, None)
        log.info("rendered repository=%s state=%s files=%d", key[0], key[1][-12:], len(files))
        self._done[key] = files
        while len(self._done) > self.keep:
            self._done.popitem(last=False)
        return files

    def has(self, repo: str, state: str) -> bool:
        """Whether `state` is rendered already (a group answers X-Cache HIT then, MISS otherwise)."""
        return (repo, state) in self._done

    def earlier(self, repo: str, current: Files, names: Callable[[str], bool]) -> Files:
        """Files (selected by `names`) of the repository's other remembered states."""
        return {name: body for (owner, _), files in self._done.items() if owner == repo and files is not current
                for name, body in files.items() if names(name)}
