"""Brute-force protection: after too many wrong passwords for one user name, further attempts
are refused without checking the password until the lock expires. Kept in the accounts
database (SQLite, or PostgreSQL with several nodes) so every worker and node counts the same
failures. The statements are written once for both databases."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS login_failures (
    name TEXT PRIMARY KEY,
    failures INTEGER NOT NULL,
    first REAL NOT NULL,
    locked_until REAL NOT NULL DEFAULT 0
);
"""

# one statement counts a failure, so failures that arrive at once on several nodes all count
_COUNT_FAILURE = (
    "INSERT INTO login_failures AS f (name, failures, first, locked_until) VALUES (?, 1, ?, 0)"
    " ON CONFLICT (name) DO UPDATE SET"
    " failures = CASE WHEN ? - f.first < ? THEN f.failures + 1 ELSE 1 END,"
    " first = CASE WHEN ? - f.first < ? THEN f.first ELSE ? END"
    " RETURNING failures")


@dataclass(frozen=True)
class LockoutPolicy:
    max_failures: int = 10          # wrong passwords within `window` before the lock engages
    window: float = 600.0
    duration: float = 300.0         # how long a locked name stays locked


def locked_for(conn: Any, name: str, now: float) -> float:
    """Seconds the name stays locked (0: not locked)."""
    row = conn.execute("SELECT locked_until FROM login_failures WHERE name = ?", (name,)).fetchone()
    return max(0.0, row[0] - now) if row else 0.0


def record_failure(conn: Any, name: str, policy: LockoutPolicy, now: float) -> bool:
    """Count a wrong password; True when this failure engages the lock (the count starts over)."""
    row = conn.execute(_COUNT_FAILURE, (name, now, now, policy.window, now, policy.window, now)).fetchone()
    if row[0] < policy.max_failures:
        return False
    conn.execute("UPDATE login_failures SET failures = 0, first = ?, locked_until = ? WHERE name = ?",
                 (now, now + policy.duration, name))
    return True


def record_success(conn: Any, name: str) -> None:
    """Forget the name's failures (a right password, or `depot user unlock`)."""
    conn.execute("DELETE FROM login_failures WHERE name = ?", (name,))


def now() -> float:
    return time.time()
