"""The twine "legacy" upload API as plain data: validate the form, check digests, read METADATA.

twine (and `uv publish`) POST `multipart/form-data` with `:action=file_upload`,
`protocol_version=1`, the core-metadata fields (`name`, `version`, `requires_python`, ...),
`filetype` (`sdist` | `bdist_wheel`), digests (`sha256_digest`, `md5_digest`,
`blake2_256_digest`) and the file in the `content` part. Nothing here does network I/O; the
wheel reader opens a local file with size and member-count limits.
"""
from __future__ import annotations

import email.parser
import email.policy
import hashlib
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import (InvalidSdistFilename, InvalidWheelFilename, canonicalize_name,
                             parse_sdist_filename, parse_wheel_filename)
from packaging.version import InvalidVersion, Version

from .base import FormatError
from .pypi_index import normalize_project, safe_filename

FILETYPES = {"sdist", "bdist_wheel"}
MAX_FIELD_SIZE = 4 * 2**20          # one form field (a long description is the big one)
MAX_FIELDS_TOTAL = 16 * 2**20       # all form fields together
MAX_FIELD_COUNT = 500
MAX_ZIP_MEMBERS = 100_000
MAX_METADATA_SIZE = 4 * 2**20
_HEX = {"sha256_digest": 64, "md5_digest": 32, "blake2_256_digest": 64}


def bad(message: str, status: int = 400) -> FormatError:
    """The error twine shows to its user: status plus a one-line reason."""
    return FormatError(status, message)


@dataclass(frozen=True)
class Upload:
    """A validated upload request (everything but the file bytes)."""

    name: str                 # as the uploader spelt it
    project: str              # PEP 503 normalised
    version: str              # as given (valid PEP 440)
    filename: str
    filetype: str
    requires_python: str | None = None
    digests: dict[str, str] = field(default_factory=dict)   # sha256 / md5 / blake2_256, lower-case hex


def validate_form(fields: Mapping[str, str], filename: str | None) -> Upload:
    """Check the non-file part of an upload; raise FormatError(400) with a clear reason."""
    action = fields.get(":action", "")
    if action != "file_upload":
        raise bad(f"unsupported :action {action!r}; only file_upload is supported")
    if fields.get("protocol_version", "1") != "1":
        raise bad("unsupported protocol_version; expected 1")
    name = fields.get("name", "").strip()
    project = normalize_project(name)
    if project is None:
        raise bad(f"invalid project name {name!r} (see PEP 508 names)")
    version = fields.get("version", "").strip()
    try:
        parsed_version = Version(version)
    except InvalidVersion:
        raise bad(f"invalid version {version!r} (not PEP 440)") from None
    filetype = fields.get("filetype", "")
    if filetype not in FILETYPES:
        raise bad(f"unsupported filetype {filetype!r}; expected sdist or bdist_wheel")
    if not filename:
        raise bad("missing file in the 'content' part")
    check_filename(filename, filetype, project, parsed_version)
    requires_python = fields.get("requires_python", "").strip() or None
    if requires_python is not None:
        try:
            SpecifierSet(requires_python)
        except InvalidSpecifier:
            raise bad(f"invalid requires_python {requires_python!r}") from None
    return Upload(name=name, project=project, version=version, filename=filename, filetype=filetype,
                  requires_python=requires_python, digests=_digests(fields))


def check_filename(filename: str, filetype: str, project: str, version: Version) -> None:
    """The filename must be a wheel/sdist name for exactly this project and version."""
    if not safe_filename(filename) or filename != filename.strip():
        raise bad(f"invalid filename {filename!r}")
    try:
        if filetype == "bdist_wheel":
            if not filename.endswith(".whl"):
                raise bad(f"{filename!r} is not a wheel filename")
            file_name, file_version, _, _ = parse_wheel_filename(filename)
        else:
            if not filename.endswith((".tar.gz", ".zip")):
                raise bad(f"{filename!r} is not an sdist filename (.tar.gz or .zip)")
            file_name, file_version = parse_sdist_filename(filename)
    except (InvalidWheelFilename, InvalidSdistFilename, InvalidVersion) as exc:
        raise bad(f"invalid filename {filename!r}: {exc}") from None
    if canonicalize_name(file_name) != project:
        raise bad(f"filename {filename!r} does not match project {project!r}")
    if file_version != version:
        raise bad(f"filename {filename!r} does not match version {version}")


def _digests(fields: Mapping[str, str]) -> dict[str, str]:
    digests = {}
    for key, length in _HEX.items():
        value = fields.get(key, "").strip().lower()
        if not value:
            continue
        if len(value) != length or not re.fullmatch(r"[0-9a-f]+", value):
            raise bad(f"invalid {key}: expected {length} hex digits")
        digests[key.removesuffix("_digest")] = value
    return digests


class Hasher:
    """md5 and blake2b-256 of a stream (sha256 comes from the blob store)."""

    def __init__(self) -> None:
        self.md5 = hashlib.md5(usedforsecurity=False)
        self.blake2_256 = hashlib.blake2b(digest_size=32)

    def update(self, chunk: bytes) -> None:
        self.md5.update(chunk)
        self.blake2_256.update(chunk)


def check_digests(upload: Upload, sha256: str, hasher: Hasher | None = None) -> None:
    """Compare the digests the client sent with those of the bytes received."""
    actual = {"sha256": sha256}
    if hasher is not None:
        actual["md5"] = hasher.md5.hexdigest()
        actual["blake2_256"] = hasher.blake2_256.hexdigest()
    for key, expected in upload.digests.items():
        if key in actual and actual[key] != expected:
            raise bad(f"{key}_digest does not match the uploaded file "
                      f"(sent {expected}, received {actual[key]})")


def wheel_metadata(path: Path, upload: Upload) -> bytes:
    """The wheel's `<name>-<version>.dist-info/METADATA`, checked against the upload's name/version."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
            if len(members) > MAX_ZIP_MEMBERS:
                raise bad(f"wheel has too many members (more than {MAX_ZIP_MEMBERS})")
            info = _metadata_member(members, upload)
            if info.file_size > MAX_METADATA_SIZE:
                raise bad("wheel METADATA is too large")
            with archive.open(info) as handle:
                data = handle.read(MAX_METADATA_SIZE + 1)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError) as exc:
        if isinstance(exc, FormatError):
            raise
        raise bad(f"invalid wheel: {exc}") from None
    if len(data) > MAX_METADATA_SIZE:
        raise bad("wheel METADATA is too large")
    _check_metadata(data, upload)
    return data


def _metadata_member(members: list[zipfile.ZipInfo], upload: Upload) -> zipfile.ZipInfo:
    candidates = []
    for info in members:
        parts = info.filename.split("/")
        if len(parts) == 2 and parts[0].endswith(".dist-info") and parts[1] == "METADATA":
            candidates.append((parts[0][: -len(".dist-info")], info))
    for stem, info in candidates:
        name, _, version = stem.rpartition("-")
        if canonicalize_name(name) == upload.project and _same_version(version, upload.version):
            return info
    raise bad("wheel has no .dist-info/METADATA for this project and version")


def _same_version(left: str, right: str) -> bool:
    try:
        return Version(left) == Version(right)
    except InvalidVersion:
        return False


def _check_metadata(data: bytes, upload: Upload) -> None:
    message = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(data, headersonly=True)
    name, version = message.get("Name"), message.get("Version")
    if not name or canonicalize_name(str(name)) != upload.project:
        raise bad(f"wheel METADATA Name {name!r} does not match project {upload.project!r}")
    if not version or not _same_version(str(version), upload.version):
        raise bad(f"wheel METADATA Version {version!r} does not match {upload.version!r}")
