"""Re-export of the plain repository types (they live in depot.cache.types)."""
from __future__ import annotations

from depot.cache.types import REPO_NAME, REPO_TYPES, RESERVED_NAMES, RepoConfig, UpstreamAuth

__all__ = ["REPO_NAME", "RESERVED_NAMES", "REPO_TYPES", "UpstreamAuth", "RepoConfig"]
