"""Plain types every layer may import: one repository as configured (validated by depot.proxy.config).

No behaviour beyond properties; proxy/, registry/ and cache/ all read these."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from depot.upstreams.auth import UpstreamAuth

from .gate import Policy
from .retention import Retention

REPO_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
RESERVED_NAMES = frozenset({"v2", "-"})
REPO_TYPES = ("hosted", "proxy", "group")


@dataclass(frozen=True)
class RepoConfig:
    """One repository as configured (validated by depot.proxy.config)."""

    name: str
    format: str
    type: str
    upstream: str | None = None
    metadata_ttl: float = 300.0
    negative_ttl: float = 60.0
    members: tuple[str, ...] = ()
    deploy_to: str | None = None
    metadata_patterns: tuple[str, ...] = ()
    allow_overwrite: bool = False
    mirror: bool = False
    auth: UpstreamAuth = UpstreamAuth()
    anonymous_read: bool | None = None      # None: proxy yes, hosted no, group if all members
    access: dict[str, str] = field(default_factory=dict, hash=False, compare=False)  # user -> perm
    max_upload: int = 5 * 2**30
    options: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    policy: Policy | None = field(default=None, hash=False, compare=False)   # this repository's own rules
    retention: Retention = field(default=Retention(), hash=False, compare=False)  # cleanup, duplicates, protection

    @property
    def is_proxy(self) -> bool:
        return self.type == "proxy"

    @property
    def is_hosted(self) -> bool:
        return self.type == "hosted"

    @property
    def is_group(self) -> bool:
        return self.type == "group"


__all__ = ["REPO_NAME", "RESERVED_NAMES", "REPO_TYPES", "UpstreamAuth", "RepoConfig"]
