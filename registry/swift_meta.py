"""Swift Package Registry documents (pure functions, run in worker threads): source archives,
manifests, release records, identifier lookups (SE-0292, SE-0391)."""
from __future__ import annotations

import hashlib
import io
import json
import re
import zipfile
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterable

SCOPE = r"[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38}"
NAME = r"[A-Za-z0-9](?:[A-Za-z0-9]|[-_](?=[A-Za-z0-9])){0,99}"
SEMVER = re.compile(r"^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$")
MANIFEST = re.compile(r"^Package(?:@swift-(\d+)(?:\.(\d+))?(?:\.(\d+))?)?\.swift$")
TOOLS = re.compile(rb"^//\s*swift-tools-version\s*:\s*([0-9][0-9.]*)")
MAX_MANIFEST = 1 * 2**20
MAX_METADATA = 256 * 1024


class BadRelease(ValueError):
    """A release that cannot be published (a 422 problem) or an unusable upstream document."""


@dataclass
class Release:
    """What a source archive holds: manifests (file name -> bytes)."""

    manifests: dict[str, bytes]


def now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"


def package_key(scope: str, name: str) -> str:
    """Identifiers are case-insensitive: stored paths use the lower-case spelling."""
    return f"{scope.lower()}/{name.lower()}"


def read_archive(data: bytes) -> Release:
    """The manifests of a source archive (Package.swift at the top or under one directory)."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        names = [i for i in archive.infolist() if not i.is_dir()]
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise BadRelease(f"the source archive is not a zip file: {exc}") from None
    tops = {i.filename.split("/", 1)[0] for i in names if "/" in i.filename}
    prefix = ""
    if not any(i.filename == "Package.swift" for i in names) and len(tops) == 1:
        prefix = tops.pop() + "/"
    manifests: dict[str, bytes] = {}
    for info in names:
        if not info.filename.startswith(prefix) or "/" in info.filename[len(prefix):]:
            continue
        base = info.filename[len(prefix):]
        if MANIFEST.match(base):
            if info.file_size > MAX_MANIFEST:
                raise BadRelease(f"{base} is larger than {MAX_MANIFEST} bytes")
            try:
                manifests[base] = archive.read(info)
            except (zipfile.BadZipFile, OSError, ValueError) as exc:
                raise BadRelease(f"{base} cannot be read: {exc}") from None
    if "Package.swift" not in manifests:
        raise BadRelease("package doesn't contain a valid manifest (Package.swift) file")
    return Release(manifests)


def tools_version(manifest: bytes) -> str | None:
    found = TOOLS.match(manifest.lstrip())
    return found.group(1).decode() if found else None


def parse_metadata(raw: bytes | None) -> dict[str, Any]:
    if not raw:
        return {}
    if len(raw) > MAX_METADATA:
        raise BadRelease("release metadata is too large")
    try:
        meta = json.loads(raw)
    except ValueError:
        raise BadRelease("invalid JSON provided for release metadata") from None
    if not isinstance(meta, dict):
        raise BadRelease("release metadata must be a JSON object")
    urls = meta.get("repositoryURLs", [])
    if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
        raise BadRelease("repositoryURLs must be a list of strings")
    return meta


def release_entry(checksum: str, metadata: dict[str, Any], manifests: dict[str, bytes],
                  signature: tuple[str, str] | None) -> dict[str, Any]:
    """The record of one published release."""
    resource: dict[str, Any] = {"name": "source-archive", "type": "application/zip", "checksum": checksum}
    if signature:
        resource["signing"] = {"signatureBase64Encoded": signature[0], "signatureFormat": signature[1]}
    return {"resources": [resource], "metadata": metadata, "publishedAt": now_iso(),
            "manifests": {name: tools_version(body) for name, body in manifests.items()}}


def add_release(old: bytes | None, package_id: str, version: str, entry: dict[str, Any]) -> bytes:
    record: dict[str, Any] = json.loads(old) if old else {"id": package_id, "releases": {}}
    if version in record["releases"]:
        raise BadRelease(f"a release with version {version} already exists")
    record["releases"][version] = entry
    return json.dumps(record).encode()


def version_key(version: str) -> tuple[Any, ...]:
    core, _, pre = version.split("+")[0].partition("-")
    nums = tuple(int(p) if p.isdigit() else 0 for p in core.split("."))
    return nums, pre == "", tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre.split("."))


def releases_doc(versions: Iterable[str], base: str, scope: str, name: str) -> dict[str, Any]:
    """`GET /{scope}/{name}`: every release with its URL under `base`, newest first."""
    ordered = sorted(set(versions), key=version_key, reverse=True)
    return {"releases": {v: {"url": f"{base}/{scope}/{name}/{v}"} for v in ordered}}


def release_doc(record: dict[str, Any], version: str) -> dict[str, Any]:
    """`GET /{scope}/{name}/{version}`."""
    entry = record["releases"][version]
    return {"id": record["id"], "version": version, "resources": entry["resources"],
            "metadata": entry.get("metadata", {}), "publishedAt": entry.get("publishedAt")}


def parse_releases(body: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(body)
    except ValueError as exc:
        raise BadRelease(f"releases document is not JSON: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("releases"), dict):
        raise BadRelease("releases document has no releases object")
    return doc


def rewrite_releases(body: bytes, base: str, scope: str, name: str) -> bytes:
    """An upstream's release list with every URL under depot (`base`), problems kept."""
    doc = parse_releases(body)
    out = releases_doc((v for v in doc["releases"] if SEMVER.match(v)), base, scope, name)
    for version, item in doc["releases"].items():
        if version in out["releases"] and isinstance(item, dict) and "problem" in item:
            out["releases"][version]["problem"] = item["problem"]
    return json.dumps(out).encode()


def archive_checksum(body: bytes) -> str | None:
    """The source-archive checksum of a release document."""
    try:
        doc = json.loads(body)
        for resource in doc.get("resources", []):
            if resource.get("name") == "source-archive" and re.fullmatch(r"[0-9a-f]{64}", resource.get("checksum", "")):
                return str(resource["checksum"])
    except (ValueError, AttributeError, TypeError):
        return None
    return None


def normalize_url(url: str) -> str:
    """Repository URLs compared as SwiftPM does, loosely: scheme, user, `.git`, case ignored."""
    url = url.strip().lower()
    url = re.sub(r"^[a-z+]+://", "", url)
    url = re.sub(r"^[^@/]+@", "", url)
    url = re.sub(r"^([^/:]+):(?!\d)", r"\1/", url)
    return re.sub(r"(\.git)?/*$", "", url)


def url_key(url: str) -> str:
    return "identifiers/" + hashlib.sha256(normalize_url(url).encode()).hexdigest() + ".json"


def add_identifier(old: bytes | None, package_id: str) -> bytes | None:
    ids = json.loads(old)["identifiers"] if old else []
    if package_id in ids:
        return None
    return json.dumps({"identifiers": [*ids, package_id]}).encode()
