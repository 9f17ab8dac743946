"""Generic files: PUT/GET/HEAD/DELETE any path (hosted), any static HTTP tree (proxy), groups.

Hosted: `PUT /<repo>/<path>` (optional `X-Checksum-Sha256`), `GET`/`HEAD` with ETag, Range and
conditional requests, `DELETE`. Proxy: `GET /<repo>/<path>` pulls `<upstream>/<path>`; paths
matching `metadata_patterns` are metadata (metadata_ttl), everything else is immutable: it is
pinned to the sha256 of its first fetch, so a refetch after eviction must bring the same bytes.
The supply-chain policy's deny/allow rules match generic paths.

Reuse rule: a generic path is a location, not a version. With `allow_overwrite` off a PUT over
an existing path with other bytes is refused (409), even when two uploads race; the same bytes
again are accepted (200). With it on, it replaces the file. Once a path is DELETEd (which needs
the `delete` permission) it is free, and may be PUT again with other bytes. Formats whose paths
name released versions (npm, PyPI) never reuse them instead.
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
