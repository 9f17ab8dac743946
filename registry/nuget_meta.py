"""NuGet package metadata: versions (normalised, ordered), the nuspec inside a .nupkg, and the
per-package catalog document depot keeps for hosted packages.

The catalog document (`meta/<id-lower>.json`) is the one source the v3 registration, the flat
container's version list, search and the v2 OData feed are rendered from:
  {"id": "Acme.Hello", "versions": {"1.0.0": {entry}, …}}
where an entry is a NuGet catalog entry (id, version, listed, published, dependencyGroups, …).
"""
from __future__ import annotations

import io
import json
import re
import zipfile
from datetime import datetime, timezone
from functools import cmp_to_key
from typing import Any, Iterable

from defusedxml import ElementTree

MAX_NUSPEC = 1 << 20
ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}\Z")
VERSION = re.compile(r"(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:\.(\d+))?(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?"
                     r"(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?\Z")
UNLISTED_TIME = "1900-01-01T00:00:00+00:00"     # what nuget.org reports as `published` of unlisted versions


class NuGetError(ValueError):
    """A package, id or version depot refuses (answered 400)."""


def check_id(package_id: str) -> str:
    """A valid package id (as given: ids compare case-insensitively)."""
    if not ID.match(package_id) or ".." in package_id:
        raise NuGetError(f"'{package_id}' is not a valid package id")
    return package_id


def normalize(version: str) -> str:
    """The normalised form of a NuGet version: `1.0` → `1.0.0`, `1.0.0.0` → `1.0.0`, leading
    zeros dropped, `+metadata` stripped (the case of a release label is kept)."""
    found = VERSION.match(version.strip())
    if not found:
        raise NuGetError(f"'{version}' is not a valid version string")
    parts = [int(p or 0) for p in found.groups()[:4]]
    text = ".".join(str(p) for p in (parts if parts[3] else parts[:3]))
    return text + (f"-{found[5]}" if found[5] else "")


def _label_cmp(a: str, b: str) -> int:
    for x, y in zip(a.split("."), b.split("."), strict=False):
        if x.isdigit() and y.isdigit():
            if int(x) != int(y):
                return -1 if int(x) < int(y) else 1
        elif x.isdigit() != y.isdigit():
            return -1 if x.isdigit() else 1
        elif x.lower() != y.lower():
            return -1 if x.lower() < y.lower() else 1
    return (len(a.split(".")) > len(b.split("."))) - (len(a.split(".")) < len(b.split(".")))


def compare(a: str, b: str) -> int:
    """NuGet (SemVer 2) precedence of two versions; unparsable ones sort first."""
    fa, fb = VERSION.match(a), VERSION.match(b)
    if not fa or not fb:
        return (bool(fa) > bool(fb)) - (bool(fa) < bool(fb)) or (a > b) - (a < b)
    na, nb = [int(p or 0) for p in fa.groups()[:4]], [int(p or 0) for p in fb.groups()[:4]]
    if na != nb:
        return -1 if na < nb else 1
    la, lb = fa[5] or "", fb[5] or ""
    if not la or not lb:
        return (not la) - (not lb)
    return _label_cmp(la, lb)


def sort_versions(versions: Iterable[str]) -> list[str]:
    """Ascending NuGet order."""
    return sorted(versions, key=cmp_to_key(compare))


def is_prerelease(version: str) -> bool:
    return "-" in version


def semver2_version(version: str) -> bool:
    """A SemVer 2.0.0 version string: build metadata, or a release label with dots."""
    return "+" in version or "." in version.partition("-")[2]


def is_semver2(entry: dict[str, Any]) -> bool:
    """nuget.org's rule for a SemVer 2.0.0 package: its version (as published) is one, or a
    dependency range names one. Clients before NuGet 4.3 cannot read them."""
    if semver2_version(str(entry.get("verbatimVersion") or entry.get("version", ""))):
        return True
    return any(re.search(r"-[0-9A-Za-z-]*\.|\+", str(dep.get("range", "")))
               for group in entry.get("dependencyGroups") or [] for dep in group.get("dependencies") or [])


def iso_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+00:00"


def parse_time(value: Any) -> float | None:
    """A catalog `published` time as a timestamp (None: missing, or the unlisted 1900 date)."""
    if not isinstance(value, str) or value.startswith("1900-"):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


# ---------------------------------------------------------------------------- the nuspec
def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _child(node: Any, name: str) -> Any:
    for child in list(node):
        if _local(child.tag) == name:
            return child
    return None


def _text(node: Any, name: str) -> str:
    child = _child(node, name)
    return (child.text or "").strip() if child is not None else ""


def _dependency(node: Any) -> dict[str, str]:
    return {"id": node.get("id", ""), "range": node.get("version", "")}


def dependency_groups(metadata: Any) -> list[dict[str, Any]]:
    """`<dependencies>` as catalog dependencyGroups (flat lists become one group without a framework)."""
    deps = _child(metadata, "dependencies")
    if deps is None:
        return []
    groups, flat = [], []
    for child in list(deps):
        if _local(child.tag) == "group":
            group: dict[str, Any] = {"dependencies": [_dependency(d) for d in list(child)
                                                      if _local(d.tag) == "dependency"]}
            if child.get("targetFramework"):
                group["targetFramework"] = child.get("targetFramework")
            groups.append(group)
        elif _local(child.tag) == "dependency":
            flat.append(_dependency(child))
    if flat:
        groups.insert(0, {"dependencies": flat})
    return groups


def parse_nuspec(data: bytes) -> dict[str, Any]:
    """The catalog fields of a nuspec (id, version normalised, dependencyGroups, descriptions)."""
    try:
        root = ElementTree.fromstring(data)
    except Exception as exc:      # defusedxml raises its own errors for entities and DTDs
        raise NuGetError(f"the nuspec is not valid XML: {exc}") from None
    metadata = _child(root, "metadata") if _local(root.tag) == "package" else None
    if metadata is None:
        raise NuGetError("the nuspec has no <package><metadata>")
    package_id, version = _text(metadata, "id"), _text(metadata, "version")
    if not package_id or not version:
        raise NuGetError("the nuspec must name an id and a version")
    entry: dict[str, Any] = {"id": check_id(package_id), "version": normalize(version),
                             "dependencyGroups": dependency_groups(metadata)}
    if "+" in version:        # the build metadata the normalised version drops (SemVer 2.0.0)
        entry["verbatimVersion"] = version
    for field, key in (("description", "description"), ("authors", "authors"), ("title", "title"),
                       ("summary", "summary"), ("tags", "tags"), ("projectUrl", "projectUrl"),
                       ("licenseUrl", "licenseUrl")):
        value = _text(metadata, field)
        if value:
            entry[key] = value
    return entry


def read_nupkg(data: bytes) -> tuple[dict[str, Any], bytes]:
    """(catalog fields, nuspec bytes) of a .nupkg: a zip with one `<id>.nuspec` at its root."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        names = [i for i in archive.infolist() if i.filename.endswith(".nuspec") and "/" not in i.filename]
        if len(names) != 1:
            raise NuGetError("a .nupkg holds exactly one .nuspec at its root")
        if names[0].file_size > MAX_NUSPEC:
            raise NuGetError("the nuspec is too large")
        nuspec = archive.read(names[0])
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError) as exc:
        raise NuGetError(f"the package is not a valid .nupkg (zip): {exc}") from None
    return parse_nuspec(nuspec), nuspec


def multipart_package(body: bytes, content_type: str) -> bytes:
    """The .nupkg of a push: the single part of a multipart/form-data body, or the raw body."""
    found = re.search(r'boundary="?([^";]+)"?', content_type or "")
    if not content_type.lower().startswith("multipart/") or not found:
        return body
    boundary = b"--" + found[1].encode()
    for part in body.split(boundary)[1:]:
        if part.startswith(b"--"):
            break
        for separator in (b"\r\n\r\n", b"\n\n"):
            head, sep, rest = part.partition(separator)
            if sep:
                return rest[:-2] if rest.endswith(b"\r\n") else rest[:-1] if rest.endswith(b"\n") else rest
    raise NuGetError("the multipart body holds no package")


# ---------------------------------------------------------------------------- catalog document
def add_version(old: bytes | None, entry: dict[str, Any]) -> bytes:
    """The package document with `entry` added; NuGetError (409) when that version exists."""
    doc = json.loads(old) if old else {"id": entry["id"], "versions": {}}
    key = entry["version"].lower()
    if key in doc["versions"]:
        raise NuGetError(f"{entry['id']} {entry['version']} already exists")
    doc["versions"][key] = entry
    return json.dumps(doc, sort_keys=True).encode()


def set_listed(old: bytes | None, version: str, listed: bool) -> bytes | None:
    """The package document with a version (un)listed; KeyError when it is not there."""
    if old is None:
        raise KeyError(version)
    doc = json.loads(old)
    entry = doc["versions"][version.lower()]
    if entry.get("listed", True) == listed:
        return None
    entry["listed"] = listed
    return json.dumps(doc, sort_keys=True).encode()


def entries(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The catalog entries of a package document, oldest version first."""
    by_version = {e["version"]: e for e in doc.get("versions", {}).values()}
    return [by_version[v] for v in sort_versions(by_version)]
