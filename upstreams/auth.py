"""Credentials depot presents to an upstream (plain data; secrets already resolved)."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class UpstreamAuth:
    """Credentials for an upstream; secrets already resolved from env or files."""

    username: str | None = None
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
