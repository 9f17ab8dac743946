"""Parse and validate an `npm publish` body (pure; no I/O).

The body is the JSON npm's libnpmpublish sends with `PUT /<name>`:
`{_id, name, description, dist-tags, versions: {v: manifest}, access,
_attachments: {"<name>-<v>.tgz": {content_type, data: <base64>, length}}}`.
Everything in it is untrusted: the name, the version, the tag names, the attachment
names, the base64 payload and the integrity it claims are all checked here.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from .base import FormatError
from .npm_packument import bare_name, tarball_filename

MAX_TARBALL = 256 * 2**20
MAX_MANIFEST = 2 * 2**20

# validate-npm-package-name for new packages: lower case, URL-safe, at most 214 characters.
PUBLISH_NAME = re.compile(r"^(?:@[a-z0-9-~][a-z0-9-._~]*/)?[a-z0-9-~][a-z0-9-._~]*$")
BLOCKED_NAMES = frozenset({"node_modules", "favicon.ico"})
SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$")
TAG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
SRI_ALGORITHMS = {"sha512": hashlib.sha512, "sha384": hashlib.sha384,
                  "sha256": hashlib.sha256, "sha1": hashlib.sha1}


@dataclass
class Publish:
    """A validated publish: one new version with its tarball."""

    name: str
    version: str
    manifest: dict[str, Any]
    tags: dict[str, str]
    filename: str
    tarball: bytes
    integrity: str
    shasum: str
    access: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def check_name(name: Any) -> str:
    """A publishable package name, or FormatError 400."""
    if not isinstance(name, str) or not name:
        raise FormatError(400, "package name is missing")
    if len(name) > 214:
        raise FormatError(400, "package name is longer than 214 characters")
    if not PUBLISH_NAME.match(name) or bare_name(name).startswith((".", "_")):
        raise FormatError(400, f"invalid package name {name!r}: use lower case letters, digits, "
                               "'-', '.', '_', '~', optionally @scope/")
    if name in BLOCKED_NAMES:
        raise FormatError(400, f"package name {name!r} is not allowed")
    return name


def check_version(version: Any) -> str:
    """A strict semver version string, or FormatError 400."""
    if not isinstance(version, str) or len(version) > 256 or not SEMVER.match(version):
        raise FormatError(400, f"invalid version {version!r}: expected semver such as 1.2.3")
    return version


def check_tag(tag: Any) -> str:
    """A dist-tag name: not a version or range, URL-safe, at most 128 characters."""
    if not isinstance(tag, str) or not TAG.match(tag) or SEMVER.match(tag.lstrip("v")):
        raise FormatError(400, f"invalid dist-tag {tag!r}")
    return tag


def sri_digests(data: bytes) -> tuple[str, str]:
    """(`sha512-<base64>`, sha1 hex): the integrity and shasum npm records for a tarball."""
    sha512 = base64.b64encode(hashlib.sha512(data).digest()).decode()
    return f"sha512-{sha512}", hashlib.sha1(data).hexdigest()


def parse_sri(integrity: str) -> dict[str, bytes]:
    """`"sha512-AAA sha1-BBB"` -> {algorithm: digest}; unknown algorithms are skipped."""
    found: dict[str, bytes] = {}
    for token in integrity.split():
        algorithm, sep, value = token.partition("-")
        if not sep or algorithm not in SRI_ALGORITHMS:
            continue
        try:
            found[algorithm] = base64.b64decode(value.split("?", 1)[0], validate=True)
        except (binascii.Error, ValueError):
            raise FormatError(400, f"malformed integrity {token[:40]!r}") from None
    return found


def verify_digests(data: bytes, integrity: str | None, shasum: str | None) -> None:
    """Raise FormatError 400 if the data does not match the claimed integrity/shasum."""
    for algorithm, digest in parse_sri(integrity or "").items():
        if SRI_ALGORITHMS[algorithm](data).digest() != digest:
            raise FormatError(400, f"tarball does not match its {algorithm} integrity")
    if shasum and hashlib.sha1(data).hexdigest() != shasum.lower():
        raise FormatError(400, "tarball does not match its shasum")


def decode_attachment(attachment: Any, max_size: int = MAX_TARBALL) -> bytes:
    """The bytes of one `_attachments` entry, with its declared length checked."""
    if not isinstance(attachment, dict) or not isinstance(attachment.get("data"), str):
        raise FormatError(400, "attachment has no base64 data")
    encoded = attachment["data"]
    if len(encoded) > (max_size * 4) // 3 + 8:
        raise FormatError(413, f"tarball is larger than {max_size} bytes")
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise FormatError(400, "attachment data is not valid base64") from None
    length = attachment.get("length")
    if length is not None and length != len(data):
        raise FormatError(400, f"attachment length {length} does not match its {len(data)} bytes")
    if not data:
        raise FormatError(400, "attachment is empty")
    return data


def _single(mapping: Any, what: str) -> tuple[str, Any]:
    if not isinstance(mapping, dict) or len(mapping) != 1:
        raise FormatError(400, f"a publish must carry exactly one {what}")
    return next(iter(mapping.items()))


def _attachment_for(attachments: Any, name: str, version: str) -> tuple[str, Any]:
    key, attachment = _single(attachments, "attachment")
    allowed = {f"{name}-{version}.tgz", tarball_filename(name, version)}
    if key not in allowed:
        raise FormatError(400, f"attachment {key!r} does not match {name}@{version}")
    return key, attachment


def parse_publish(body: bytes | dict[str, Any], url_name: str,
                  max_size: int = MAX_TARBALL) -> Publish:
    """Validate a publish body against the package name in the URL; FormatError if bad."""
    doc = _json_object(body)
    name = check_name(doc.get("name"))
    if name != url_name:
        raise FormatError(400, f"package name {name!r} does not match the URL ({url_name!r})")
    version, manifest = _single(doc.get("versions"), "version")
    check_version(version)
    if not isinstance(manifest, dict) or manifest.get("version") != version \
            or manifest.get("name") != name:
        raise FormatError(400, "the version manifest must repeat the package name and version")
    if len(json.dumps(manifest)) > MAX_MANIFEST:
        raise FormatError(413, "the package manifest is too large")
    _, attachment = _attachment_for(doc.get("_attachments"), name, version)
    tarball = decode_attachment(attachment, max_size)
    dist: dict[str, Any] = manifest["dist"] if isinstance(manifest.get("dist"), dict) else {}
    if any(not isinstance(dist.get(key), (str, type(None))) for key in ("integrity", "shasum")):
        raise FormatError(400, "dist.integrity and dist.shasum must be strings")
    verify_digests(tarball, dist.get("integrity"), dist.get("shasum"))
    integrity, shasum = sri_digests(tarball)
    tags = doc.get("dist-tags") or {}
    if not isinstance(tags, dict) or any(v != version for v in tags.values()):
        raise FormatError(400, "dist-tags of a publish must name the published version")
    for tag in tags:
        check_tag(tag)
    manifest = {**manifest, "dist": {**dist, "integrity": _keep_sri(dist, integrity), "shasum": shasum}}
    access = doc.get("access") if isinstance(doc.get("access"), str) else None
    return Publish(name, version, manifest, {str(t): version for t in tags},
                   tarball_filename(name, version), tarball, integrity, shasum, access)


def _keep_sri(dist: dict[str, Any], computed: str) -> str:
    claimed = dist.get("integrity")
    return claimed if isinstance(claimed, str) and "sha512-" in claimed else computed


def _json_object(body: bytes | dict[str, Any]) -> dict[str, Any]:
    if isinstance(body, dict):
        return body
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        raise FormatError(400, "the request body is not valid JSON") from None
    if not isinstance(doc, dict):
        raise FormatError(400, "the request body must be a JSON object")
    return doc


def is_publish(doc: dict[str, Any]) -> bool:
    """True for a publish (carries tarballs); False for a metadata update such as deprecate."""
    return bool(doc.get("_attachments"))


def parse_json_body(body: bytes) -> dict[str, Any]:
    """A PUT body as a JSON object, or FormatError 400."""
    return _json_object(body)


def parse_tag_body(body: bytes) -> str:
    """The body of `PUT /-/package/<name>/dist-tags/<tag>`: a JSON string (the version)."""
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        value = body.decode("utf-8", "replace").strip()
    return check_version(value)
