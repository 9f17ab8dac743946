"""Paths of Maven (and Ivy) repositories: coordinates, file names, checksum sidecars.

Maven layout: `<group path>/<artifactId>/<version>/<artifactId>-<version>[-<classifier>].<ext>`,
SNAPSHOT builds named `<artifactId>-<base>-<yyyyMMdd.HHmmss>-<build>[-<classifier>].<ext>`.
Ivy layout (sbt's Ivy-style repositories): `<organisation>/<module>/<revision>/...` with the
organisation as one segment (dots kept).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from .base import FormatError
from .maven_version import is_snapshot

CHECKSUMS = ("md5", "sha1", "sha256", "sha512")
HEX_LENGTH = {"md5": 32, "sha1": 40, "sha256": 64, "sha512": 128}
METADATA = "maven-metadata.xml"
ROOT_FILES = frozenset({"archetype-catalog.xml"})
TAIL = re.compile(r"(?:-(?P<classifier>[^.]+))?\.(?P<ext>[A-Za-z0-9]+(?:\.[A-Za-z0-9]+)*)")
SNAPSHOT_VALUE = r"-(?P<ts>\d{8}\.\d{6})-(?P<build>\d+)"


@dataclass(frozen=True)
class MavenFile:
    """A file of a Maven version directory, parsed from its path."""

    group: str                 # dotted groupId
    artifact: str
    version: str               # the directory's version (1.0 or 1.0-SNAPSHOT)
    filename: str
    value: str                 # the version in the file name (1.0-20240101.120000-3 for builds)
    classifier: str
    extension: str
    timestamp: str = ""        # yyyyMMdd.HHmmss of a SNAPSHOT build
    build: int = 0

    @property
    def artifact_dir(self) -> str:
        return self.group.replace(".", "/") + "/" + self.artifact

    @property
    def version_dir(self) -> str:
        return f"{self.artifact_dir}/{self.version}"


def split_checksum(path: str) -> tuple[str, str] | None:
    """(file, algorithm) for a checksum sidecar path, else None."""
    base, dot, algo = path.rpartition(".")
    if dot and algo in CHECKSUMS and base:
        return base, algo
    return None


def is_metadata(path: str) -> bool:
    """A maven-metadata.xml at any level."""
    return path == METADATA or path.endswith("/" + METADATA)


def parse_filename(artifact: str, version: str, filename: str) -> dict[str, str] | None:
    """value/classifier/extension (and ts/build) of a file in version directory `version`."""
    if not filename.startswith(artifact + "-"):
        return None
    rest = filename[len(artifact) + 1:]
    fields: dict[str, str] = {}
    found = None
    if is_snapshot(version):
        found = re.match(re.escape(version[: -len("-SNAPSHOT")]) + SNAPSHOT_VALUE, rest)
    if found is not None:
        fields.update(ts=found["ts"], build=found["build"])
        value = found.group(0)
    elif rest.startswith(version):
        value = version
    else:
        return None
    tail = TAIL.fullmatch(rest[len(value):])
    if tail is None:
        return None
    return {**fields, "value": value, "classifier": tail["classifier"] or "", "extension": tail["ext"]}


def maven_file(path: str) -> MavenFile | None:
    """The coordinates of a Maven-layout artifact path, or None when it is not one."""
    parts = path.split("/")
    if len(parts) < 4:
        return None
    *group, artifact, version, filename = parts
    fields = parse_filename(artifact, version, filename)
    if fields is None:
        return None
    return MavenFile(".".join(group), artifact, version, filename, fields["value"], fields["classifier"],
                     fields["extension"], fields.get("ts", ""), int(fields.get("build", 0)))


def require_maven_file(path: str) -> MavenFile:
    """maven_file() or a 400 that says what the layout is."""
    found = maven_file(path)
    if found is None:
        raise FormatError(400, f"{path} is not a Maven repository file: expected <group path>/<artifactId>/"
                               "<version>/<artifactId>-<version>[-<classifier>].<extension>")
    return found


@dataclass(frozen=True)
class IvyFile:
    """A file under `<organisation>/<module>/<revision>/` (Ivy layout)."""

    organisation: str
    module: str
    revision: str
    rest: str


def ivy_file(path: str) -> IvyFile:
    """The coordinates of an Ivy-layout path (400 when it has fewer than four segments)."""
    parts = path.split("/")
    if len(parts) < 4:
        raise FormatError(400, f"{path} is not an Ivy repository file: expected "
                               "<organisation>/<module>/<revision>/<file>")
    return IvyFile(parts[0], parts[1], parts[2], "/".join(parts[3:]))


def package_of_path(path: str) -> tuple[str, str] | None:
    """(group:artifact, version) of an artifact path in either layout; None for metadata."""
    split = split_checksum(path)
    base = split[0] if split else path
    if is_metadata(base):
        return None
    found = maven_file(base)
    if found is not None:
        return f"{found.group}:{found.artifact}", found.version
    parts = base.split("/")
    if len(parts) >= 4:
        return f"{parts[0]}:{parts[1]}", parts[2]
    return None


def parse_checksum(body: bytes, algo: str) -> str | None:
    """The hex digest in a checksum file ('<hex>' or '<hex>  <name>'), None when malformed."""
    words = body.decode("ascii", "replace").split()
    if not words:
        return None
    value = words[0].lower()
    if len(value) != HEX_LENGTH[algo] or not re.fullmatch(r"[0-9a-f]+", value):
        return None
    return value
