"""Repository retention rules (plain data + pure decisions): cleanup, duplicates, protection.

Config (per repository, validated by depot.proxy.config):

    cleanup: {keep_n: 5, older_than: 30d, name_regex: ".*", name_regex_keep: "^release-",
              keep_recently_used: 7d}      # hosted: which versions/tags a cleanup run deletes
    cleanup: {unused_for: 90d}             # proxy: cached entries not used for that long expire
    duplicates: deny                       # allow | deny: a taken path is never written again
                                           # (unset: the format's rule, allow_overwrite)
    duplicates_exception_regex: "-SNAPSHOT$"
    protected: ["^release-", {pattern: "^stable$", perm: admin}]   # min permission to push/overwrite/delete
    immutable_tags: ["^v[0-9]"]           # OCI: a matching tag never moves once pushed

Patterns are regular expressions searched (re.search) in the version (tag), the package (image)
name, and `<package>:<version>`; a match on any of them applies.
"""
from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from typing import Iterable

PERMS = ("read", "write", "delete", "admin")
CLOCK_FILE_ENV = "DEPOT_CLOCK_FILE"


def now() -> float:
    """Wall clock for retention decisions and hosted record times.

    Tests only: when DEPOT_CLOCK_FILE names a file holding a number of seconds, that offset is
    added (re-read on every call), so a live depot can be moved forward in time."""
    path = os.environ.get(CLOCK_FILE_ENV)
    offset = 0.0
    if path:
        try:
            with open(path) as fh:
                offset = float(fh.read().strip() or 0)
        except (OSError, ValueError):
            offset = 0.0
    return time.time() + offset


@dataclass(frozen=True)
class Protection:
    """One protected pattern and the minimum permission to push, overwrite or delete a match."""

    pattern: str
    perm: str = "admin"


@dataclass(frozen=True)
class Cleanup:
    """Which versions a cleanup run may delete (hosted) and when cached entries expire (proxy)."""

    keep_n: int | None = None
    older_than: float | None = None
    name_regex: str | None = None
    name_regex_keep: str | None = None
    keep_recently_used: float | None = None
    unused_for: float | None = None
    schedule: float | None = None          # seconds between scheduled runs (None: on demand only)

    @property
    def active(self) -> bool:
        return any(v is not None for v in (self.keep_n, self.older_than, self.name_regex, self.unused_for))


@dataclass(frozen=True)
class Retention:
    """All retention settings of one repository."""

    cleanup: Cleanup = Cleanup()
    duplicates: str | None = None          # None: the format's own overwrite rule (allow_overwrite)
    duplicates_exception_regex: str | None = None
    protected: tuple[Protection, ...] = ()
    immutable_tags: tuple[str, ...] = ()

    def duplicates_denied(self, package: str, version: str) -> bool:
        """Whether a version's files may not be replaced (duplicates: deny, no exception)."""
        if self.duplicates != "deny":
            return False
        regex = self.duplicates_exception_regex
        return not (regex and matches([regex], package, version))

    def protection(self, package: str, version: str) -> str | None:
        """The minimum permission to change this (package, version); None when unprotected."""
        needed = [p.perm for p in self.protected if matches([p.pattern], package, version)]
        return max(needed, key=PERMS.index) if needed else None

    def immutable(self, package: str, version: str) -> bool:
        return matches(self.immutable_tags, package, version)


def matches(patterns: Iterable[str], package: str, version: str) -> bool:
    """Whether any pattern is found in the version, the package or `package:version`."""
    subjects = (version, package, f"{package}:{version}")
    return any(re.search(p, s) for p in patterns for s in subjects if s)


@dataclass(frozen=True)
class VersionFacts:
    """What a cleanup decision needs to know about one version (or tag)."""

    package: str
    version: str
    created: float
    last_download: float | None = None
    files: tuple[str, ...] = field(default=(), compare=False)


def to_delete(cleanup: Cleanup, versions: list[VersionFacts], at: float) -> list[VersionFacts]:
    """The versions of ONE package a cleanup run deletes, newest kept first (GitLab's rules):
    the keep_n most recent are kept, name_regex_keep always kept, only name_regex matches and
    only those older than older_than deleted, nothing downloaded within keep_recently_used."""
    ordered = sorted(versions, key=lambda v: (v.created, v.version), reverse=True)
    doomed = []
    for index, facts in enumerate(ordered):
        if cleanup.keep_n is not None and index < cleanup.keep_n:
            continue
        if cleanup.name_regex_keep and re.search(cleanup.name_regex_keep, facts.version):
            continue
        if cleanup.name_regex and not re.search(cleanup.name_regex, facts.version):
            continue
        if cleanup.older_than is not None and facts.created > at - cleanup.older_than:
            continue
        if cleanup.keep_recently_used is not None and facts.last_download is not None \
                and facts.last_download > at - cleanup.keep_recently_used:
            continue
        doomed.append(facts)
    return doomed
