"""Brute-force protection: after too many wrong passwords for one user name, further attempts
are refused without checking the password until the lock expires. Kept in the shared database
so every worker counts the same failures."""
from __future__ import annotations

import sqlite3
import time
from typing import Any
from dataclasses import dataclass

SCHEMA = """
CREATE TABLE IF NOT EXISTS login_failures (
    name TEXT PRIMARY KEY,
    failures INTEGER NOT NULL,
    first REAL NOT NULL,
    locked_until REAL NOT NULL DEFAULT 0
);
"""


@dataclass(frozen=True)
class LockoutPolicy:
    max_failures: int = 10          # wrong passwords within `window` before the lock engages
    window: float = 600.0
    duration: float = 300.0         # how long a locked name stays locked


def locked_for(conn: sqlite3.Connection, name: str, now: float) -> float:
    """Seconds the name stays locked (0: not locked)."""
    row = conn.execute("SELECT locked_until FROM login_failures WHERE name = ?", (name,)).fetchone()
    return max(0.0, row[0] - now) if row else 0.0


def record_failure(conn: sqlite3.Connection, name: str, policy: LockoutPolicy, now: float) -> bool:
    """Count a wrong password; True when this failure engages the lock."""
    row = conn.execute("SELECT failures, first FROM login_failures WHERE name = ?", (name,)).fetchone()
    failures, first = (row[0], row[1]) if row and now - row[1] < policy.window else (0, now)
    failures += 1
    locked = failures >= policy.max_failures
    conn.execute("INSERT OR REPLACE INTO login_failures (name, failures, first, locked_until) VALUES (?, ?, ?, ?)",
                 (name, 0 if locked else failures, now if locked else first,
                  now + policy.duration if locked else 0))
    return locked


def record_success(conn: sqlite3.Connection, name: str) -> None:
    conn.execute("DELETE FROM login_failures WHERE name = ?", (name,))


def now() -> float:
    return time.time()


def ensure_schema(db: Any) -> None:
    """Create the login-failure table (idempotent; run once per process at start)."""
    db.run_sync(lambda conn: conn.executescript(SCHEMA))
