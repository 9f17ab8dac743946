"""Generic files: PUT/GET/HEAD/DELETE any path (hosted), any static HTTP tree (proxy), groups.

Hosted: `PUT /<repo>/<path>` (optional `X-Checksum-Sha256`), `GET`/`HEAD` with ETag, Range and
conditional requests, `DELETE`. Proxy: `GET /<repo>/<path>` pulls `<upstream>/<path>`; paths
matching `metadata_patterns` are metadata (metadata_ttl), everything else is immutable.
The supply-chain policy's deny/allow rules match generic paths.
A path holds one content unless the repository sets `allow_overwrite`; re-sending the same
bytes is accepted (200), other bytes are refused (409), even when two uploads race.
"""
from __future__ import annotations

import fnmatch
import re

from depot.cache.api import Kind

from .repo import RepoConfig
from .tree import TreeFormat, TreeRule, content_type_for, validate_path

__all__ = ["Generic", "FORMAT", "validate_path", "content_type_for"]

_ANY = re.compile(".*")


class Generic(TreeFormat):
    """Any tree of files; a thin declaration over TreeFormat."""

    name = "generic"
    unmatched = "immutable"

    def package_of(self, path: str) -> tuple[str, str]:
        """A generic file is its own package (rules match paths: `deny: ["tools/*/beta/*"]`);
        generic files carry no version or publish time, so only deny/allow apply to them."""
        return path, ""

    def classify(self, repo: RepoConfig, path: str) -> TreeRule:
        metadata = any(fnmatch.fnmatchcase(path, pattern) for pattern in repo.metadata_patterns)
        return TreeRule(_ANY, Kind.METADATA if metadata else Kind.IMMUTABLE)


FORMAT = Generic
