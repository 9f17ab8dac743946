"""maven-metadata.xml, POM and ivy.xml documents: parsed with defusedxml, rendered, merged.

Artifact-level metadata lists versions (latest = highest, release = highest non-SNAPSHOT, Maven
ordering); version-level metadata describes a SNAPSHOT's newest timestamped build per
(classifier, extension); group-level metadata lists plugin prefixes.
"""
from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field, replace
from typing import Iterable

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from .base import FormatError
from .maven_version import is_snapshot, sort_versions

MAX_XML = 4 * 2**20


@dataclass(frozen=True)
class SnapshotVersion:
    """One <snapshotVersion>: the newest build of a (classifier, extension)."""

    classifier: str
    extension: str
    value: str                      # e.g. 1.0-20240101.120000-3
    updated: str                    # yyyyMMddHHmmss


@dataclass(frozen=True)
class Plugin:
    """One <plugin> of group-level metadata."""

    name: str
    prefix: str
    artifact_id: str


@dataclass
class Metadata:
    """The content of any maven-metadata.xml."""

    group_id: str = ""
    artifact_id: str = ""
    version: str = ""
    versions: list[str] = field(default_factory=list)
    latest: str = ""
    release: str = ""
    last_updated: str = ""
    snapshot: tuple[str, int] | None = None           # (timestamp yyyyMMdd.HHmmss, buildNumber)
    snapshot_versions: list[SnapshotVersion] = field(default_factory=list)
    plugins: list[Plugin] = field(default_factory=list)


def now_stamp(when: float | None = None) -> str:
    """lastUpdated format: yyyyMMddHHmmss (UTC)."""
    return time.strftime("%Y%m%d%H%M%S", time.gmtime(time.time() if when is None else when))


def parse_xml(body: bytes, what: str) -> ET.Element:
    """An XML document parsed safely; 400 when malformed, too big or using entities."""
    if len(body) > MAX_XML:
        raise FormatError(400, f"{what} is larger than {MAX_XML} bytes")
    try:
        return fromstring(body, forbid_dtd=True)
    except (ET.ParseError, DefusedXmlException, ValueError) as exc:
        raise FormatError(400, f"{what} is not well-formed XML: {exc}") from None


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def child(element: ET.Element | None, name: str) -> ET.Element | None:
    """The first child named `name`, whatever its namespace."""
    if element is None:
        return None
    return next((c for c in element if _local(c.tag) == name), None)


def text(element: ET.Element | None, name: str) -> str:
    """The stripped text of child `name` ('' when absent)."""
    found = child(element, name)
    return (found.text or "").strip() if found is not None else ""


def children(element: ET.Element | None, name: str) -> list[ET.Element]:
    return [c for c in element if _local(c.tag) == name] if element is not None else []


def parse_metadata(body: bytes) -> Metadata:
    """A maven-metadata.xml document (400 when malformed)."""
    root = parse_xml(body, "maven-metadata.xml")
    if _local(root.tag) != "metadata":
        raise FormatError(400, "maven-metadata.xml: the root element must be <metadata>")
    versioning = child(root, "versioning")
    meta = Metadata(group_id=text(root, "groupId"), artifact_id=text(root, "artifactId"),
                    version=text(root, "version"),
                    versions=[(v.text or "").strip() for v in children(child(versioning, "versions"), "version")],
                    latest=text(versioning, "latest"), release=text(versioning, "release"),
                    last_updated=text(versioning, "lastUpdated"))
    snap = child(versioning, "snapshot")
    if snap is not None and text(snap, "timestamp"):
        try:
            meta.snapshot = (text(snap, "timestamp"), int(text(snap, "buildNumber") or 0))
        except ValueError:
            raise FormatError(400, "maven-metadata.xml: buildNumber must be a number") from None
    meta.snapshot_versions = [SnapshotVersion(text(s, "classifier"), text(s, "extension"), text(s, "value"),
                                              text(s, "updated"))
                              for s in children(child(versioning, "snapshotVersions"), "snapshotVersion")]
    meta.plugins = [Plugin(text(p, "name"), text(p, "prefix"), text(p, "artifactId"))
                    for p in children(child(root, "plugins"), "plugin")]
    return meta


def _sub(parent: ET.Element, name: str, value: str | None) -> ET.Element:
    element = ET.SubElement(parent, name)
    if value is not None:
        element.text = value
    return element


def render_metadata(meta: Metadata) -> bytes:
    """The document clients read (stable output for stable input: checksums match)."""
    root = ET.Element("metadata", {"modelVersion": "1.1.0"} if meta.snapshot_versions else {})
    for name, value in (("groupId", meta.group_id), ("artifactId", meta.artifact_id), ("version", meta.version)):
        if value:
            _sub(root, name, value)
    if meta.plugins:
        plugins = _sub(root, "plugins", None)
        for plugin in meta.plugins:
            entry = _sub(plugins, "plugin", None)
            _sub(entry, "name", plugin.name)
            _sub(entry, "prefix", plugin.prefix)
            _sub(entry, "artifactId", plugin.artifact_id)
    if meta.artifact_id:
        versioning = _sub(root, "versioning", None)
        if meta.latest:
            _sub(versioning, "latest", meta.latest)
        if meta.release:
            _sub(versioning, "release", meta.release)
        if meta.snapshot is not None:
            snap = _sub(versioning, "snapshot", None)
            _sub(snap, "timestamp", meta.snapshot[0])
            _sub(snap, "buildNumber", str(meta.snapshot[1]))
        if meta.versions:
            versions = _sub(versioning, "versions", None)
            for version in meta.versions:
                _sub(versions, "version", version)
        _sub(versioning, "lastUpdated", meta.last_updated or now_stamp())
        if meta.snapshot_versions:
            listed = _sub(versioning, "snapshotVersions", None)
            for sv in meta.snapshot_versions:
                entry = _sub(listed, "snapshotVersion", None)
                if sv.classifier:
                    _sub(entry, "classifier", sv.classifier)
                _sub(entry, "extension", sv.extension)
                _sub(entry, "value", sv.value)
                _sub(entry, "updated", sv.updated)
    ET.indent(root)
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="utf-8") + b"\n"


def with_versions(meta: Metadata, versions: Iterable[str]) -> Metadata:
    """`meta` listing exactly `versions` (sorted), latest/release recomputed."""
    ordered = sort_versions(list(versions))
    releases = [v for v in ordered if not is_snapshot(v)]
    return replace(meta, versions=ordered, latest=ordered[-1] if ordered else "",
                   release=releases[-1] if releases else "")


def merge_metadata(docs: list[Metadata]) -> Metadata:
    """A group's view: versions and plugins unioned, the newest snapshot build of each
    (classifier, extension), latest/release recomputed, lastUpdated the newest."""
    first = docs[0]
    merged = with_versions(replace(first), (v for d in docs for v in d.versions))
    merged.last_updated = max((d.last_updated for d in docs), default="")
    plugins: dict[str, Plugin] = {}
    for doc in docs:
        for plugin in doc.plugins:
            plugins.setdefault(plugin.prefix, plugin)
    merged.plugins = list(plugins.values())
    snaps = [d.snapshot for d in docs if d.snapshot is not None]
    merged.snapshot = max(snaps) if snaps else None
    newest: dict[tuple[str, str], SnapshotVersion] = {}
    for doc in docs:
        for sv in doc.snapshot_versions:
            key = (sv.classifier, sv.extension)
            if key not in newest or sv.updated > newest[key].updated:
                newest[key] = sv
    merged.snapshot_versions = [newest[k] for k in sorted(newest)]
    return merged


def pom_coordinates(body: bytes) -> tuple[str, str, str]:
    """(groupId, artifactId, version) a POM declares (groupId/version inherited from <parent>)."""
    root = parse_xml(body, "pom")
    if _local(root.tag) != "project":
        raise FormatError(400, "pom: the root element must be <project>")
    parent = child(root, "parent")
    group = text(root, "groupId") or text(parent, "groupId")
    version = text(root, "version") or text(parent, "version")
    return group, text(root, "artifactId"), version


def ivy_coordinates(body: bytes) -> tuple[str, str, str]:
    """(organisation, module, revision) of an ivy.xml's <info>."""
    root = parse_xml(body, "ivy file")
    info = child(root, "info")
    if _local(root.tag) != "ivy-module" or info is None:
        raise FormatError(400, "ivy file: expected <ivy-module> with <info>")
    return info.get("organisation", ""), info.get("module", ""), info.get("revision", "")
