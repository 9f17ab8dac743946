"""The policy decisions of every worker process, kept in the node's database: each process
appends its decisions (PolicyService.record) and saves them in the background; /-/api/policy and
the UI's policy page read them back, newest first, merged with this process's not yet saved ones.
The newest KEEP rows are kept."""
from __future__ import annotations

import asyncio
import logging
import sqlite3
from dataclasses import astuple, fields
from typing import Any, Iterable

log = logging.getLogger("depot.policy")

SCHEMA = """
CREATE TABLE IF NOT EXISTS policy_decisions (
    at REAL NOT NULL, repository TEXT NOT NULL, format TEXT NOT NULL, package TEXT NOT NULL,
    version TEXT, rule TEXT NOT NULL, message TEXT NOT NULL, mode TEXT NOT NULL, action TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS policy_decisions_at ON policy_decisions (at);
"""
KEEP = 5000


class DecisionJournal:
    """Unsaved decisions of this process, and the shared table they go to."""

    def __init__(self, db: Any, decision_type: type) -> None:
        self.db = db
        self.type = decision_type
        self.columns = [f.name for f in fields(decision_type)]
        self.unsaved: list[Any] = []
        self._saving: asyncio.Task[None] | None = None
        self._ready = False

    def add(self, decision: Any) -> None:
        """Queue a decision; saved soon by a task on the running loop (or by the refresh loop
        when recorded off the loop, e.g. by a filter running in a thread)."""
        self.unsaved.append(decision)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        if self._saving is None or self._saving.done():
            self._saving = loop.create_task(self.save())

    def _schema(self, conn: sqlite3.Connection) -> None:
        if not self._ready:
            conn.executescript(SCHEMA)
            self._ready = True

    async def save(self) -> None:
        """Write the queued decisions (and keep the table bounded)."""
        batch, self.unsaved = self.unsaved, []
        if not batch:
            return
        marks = ", ".join("?" * len(self.columns))

        def work(conn: sqlite3.Connection) -> None:
            self._schema(conn)
            conn.executemany(f"INSERT INTO policy_decisions ({', '.join(self.columns)}) VALUES ({marks})",
                             [astuple(d) for d in batch])
            conn.execute("DELETE FROM policy_decisions WHERE at < (SELECT at FROM policy_decisions"
                         " ORDER BY at DESC LIMIT 1 OFFSET ?)", (KEEP - 1,))
        try:
            await self.db.run(work)
        except Exception:  # decisions are still in this process's memory; never fail an answer
            log.exception("saving policy decisions failed")

    async def newest(self, repositories: Iterable[str], limit: int, mine: Iterable[Any]) -> list[Any]:
        """The newest `limit` decisions on `repositories`, every process's, with `mine` (this
        process's recent ones, saved or not) merged in."""
        names = sorted(set(repositories))
        if not names:
            return []
        marks = ",".join("?" * len(names))

        def work(conn: sqlite3.Connection) -> list[Any]:
            self._schema(conn)
            rows = conn.execute(f"SELECT {', '.join(self.columns)} FROM policy_decisions WHERE repository IN"
                                f" ({marks}) ORDER BY at DESC LIMIT ?", (*names, limit)).fetchall()
            return [self.type(*row) for row in rows]
        found = set(await self.db.run(work))
        found.update(d for d in mine if d.repository in names)
        return sorted(found, key=lambda d: d.at, reverse=True)[:limit]
