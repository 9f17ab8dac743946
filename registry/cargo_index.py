"""Cargo registry mechanics (pure functions, no I/O): crate names as crates.io compares them,
sparse index paths, the publish frame and its JSON turned into an index line, `.crate`
checks, index files merged, and the `dl` template."""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import struct
import tarfile
import tomllib
from dataclasses import dataclass
from typing import Any, Iterable

NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
VERSION = re.compile(r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
                     r"(?:-[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?")
INDEX_PATH = r"1/[a-z0-9_-]+|2/[a-z0-9_-]{2}|3/[a-z0-9_-]/[a-z0-9_-]{3}|[a-z0-9_-]{2}/[a-z0-9_-]{2}/[a-z0-9_-]{4,64}"
MAX_UNPACKED = 512 << 20
TEMPLATE_MARKERS = ("{crate}", "{version}", "{prefix}", "{lowerprefix}", "{sha256-checksum}")


class CargoError(ValueError):
    """Input cargo's registry protocol refuses (the message is shown to the cargo user)."""


def check_name(name: str) -> str:
    """crates.io's rule: ASCII letters, digits, '-' and '_', starting with a letter, at most 64."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise CargoError(f"invalid crate name {name!r}: use ASCII letters, digits, '-' and '_', "
                         "start with a letter, at most 64 characters")
    return name


def check_version(version: str) -> str:
    if not isinstance(version, str) or not VERSION.fullmatch(version):
        raise CargoError(f"invalid version {version!r}: not a semantic version")
    return version


def canonical(name: str) -> str:
    """How crates.io compares names: case-insensitive, '-' and '_' equal."""
    return name.lower().replace("_", "-")


def same_version(a: str, b: str) -> bool:
    """Versions differing only in build metadata are the same version to crates.io."""
    return a.split("+", 1)[0] == b.split("+", 1)[0]


def prefix_of(name: str) -> str:
    """The directory part of a sparse index path ({prefix} in a dl template), in the name's case."""
    if len(name) <= 2:
        return str(len(name))
    if len(name) == 3:
        return f"3/{name[0]}"
    return f"{name[:2]}/{name[2:4]}"


def index_path(name: str) -> str:
    """The sparse index file of a crate: 1/a, 2/ab, 3/a/abc, ab/cd/abcd… (lower case)."""
    lower = name.lower()
    return f"{prefix_of(lower)}/{lower}"


def download_url(dl: str, name: str, version: str, cksum: str) -> str:
    """A crate's download URL from a config.json `dl` (markers, or `/{crate}/{version}/download`)."""
    if not any(marker in dl for marker in TEMPLATE_MARKERS):
        return f"{dl.rstrip('/')}/{name}/{version}/download"
    prefix = prefix_of(name)
    for marker, value in (("{crate}", name), ("{version}", version), ("{prefix}", prefix),
                          ("{lowerprefix}", prefix.lower()), ("{sha256-checksum}", cksum)):
        dl = dl.replace(marker, value)
    return dl


# ------------------------------------------------------------------------------ index files

def index_lines(body: bytes) -> list[dict[str, Any]]:
    """The entries of an index file (blank and malformed lines skipped)."""
    entries = []
    for raw in body.splitlines():
        if not raw.strip():
            continue
        try:
            entry = json.loads(raw)
        except ValueError:
            continue
        if isinstance(entry, dict) and isinstance(entry.get("vers"), str):
            entries.append(entry)
    return entries


def render_lines(entries: Iterable[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(e, separators=(",", ":")).encode() + b"\n" for e in entries)


def find_version(body: bytes, version: str) -> dict[str, Any] | None:
    return next((e for e in index_lines(body) if e["vers"] == version), None)


def merge_index(bodies: Iterable[bytes]) -> bytes:
    """Index files of several members line by line: the first member wins for a version.
    Lines are kept byte for byte."""
    seen: set[str] = set()
    out: list[bytes] = []
    for body in bodies:
        for raw in body.splitlines():
            try:
                entry = json.loads(raw) if raw.strip() else None
            except ValueError:
                continue
            if not isinstance(entry, dict) or not isinstance(entry.get("vers"), str):
                continue
            key = entry["vers"].split("+", 1)[0]
            if key not in seen:
                seen.add(key)
                out.append(raw.rstrip(b"\r") + b"\n")
    return b"".join(out)


def set_yanked(body: bytes | None, version: str, yanked: bool) -> bytes:
    """The index file with `version` (un)yanked; CargoError when it has no such version."""
    entries = index_lines(body or b"")
    found = [e for e in entries if e["vers"] == version]
    if not found:
        raise CargoError(f"version {version} does not exist")
    for entry in found:
        entry["yanked"] = yanked
    return render_lines(entries)


def add_line(body: bytes | None, line: dict[str, Any]) -> bytes:
    """The index file with a new version appended; CargoError for a version already there."""
    entries = index_lines(body or b"")
    for entry in entries:
        if same_version(entry["vers"], line["vers"]):
            raise CargoError(f"crate version `{line['vers']}` is already uploaded")
    return render_lines([*entries, line])


# ----------------------------------------------------------------------------------- publish

@dataclass(frozen=True)
class Upload:
    """A parsed `cargo publish` body."""

    name: str
    version: str
    metadata: dict[str, Any]
    crate: bytes

    @property
    def cksum(self) -> str:
        return hashlib.sha256(self.crate).hexdigest()


def parse_frame(body: bytes) -> Upload:
    """u32 LE JSON length, JSON, u32 LE crate length, crate (the body of PUT /api/v1/crates/new)."""
    try:
        (json_len,) = struct.unpack_from("<I", body, 0)
        raw_json = body[4:4 + json_len]
        (crate_len,) = struct.unpack_from("<I", body, 4 + json_len)
    except struct.error:
        raise CargoError("malformed publish body: truncated length field") from None
    crate = body[8 + json_len:]
    if len(raw_json) != json_len or len(crate) != crate_len:
        raise CargoError("malformed publish body: lengths do not match the body")
    try:
        metadata = json.loads(raw_json)
    except ValueError as exc:
        raise CargoError(f"malformed publish metadata: {exc}") from None
    if not isinstance(metadata, dict):
        raise CargoError("malformed publish metadata: not a JSON object")
    return Upload(check_name(str(metadata.get("name") or "")), check_version(str(metadata.get("vers") or "")),
                  metadata, crate)


def _index_dep(dep: Any) -> dict[str, Any]:
    """A publish dependency (`version_req`, `explicit_name_in_toml`) as an index dependency."""
    if not isinstance(dep, dict) or not isinstance(dep.get("name"), str) or not isinstance(dep.get("version_req"), str):
        raise CargoError("malformed dependency in publish metadata")
    check_name(dep["name"])
    renamed = dep.get("explicit_name_in_toml")
    out = {"name": renamed or dep["name"], "req": dep["version_req"], "features": list(dep.get("features") or []),
           "optional": bool(dep.get("optional", False)), "default_features": bool(dep.get("default_features", True)),
           "target": dep.get("target"), "kind": dep.get("kind") or "normal", "registry": dep.get("registry")}
    if renamed:
        out["package"] = dep["name"]
    return out


def index_line(upload: Upload) -> dict[str, Any]:
    """The index entry depot writes for a publish (features using `dep:`/`?/` go to features2)."""
    meta = upload.metadata
    features = meta.get("features") or {}
    if not isinstance(features, dict):
        raise CargoError("malformed features in publish metadata")
    new_syntax = {k: v for k, v in features.items()
                  if any(isinstance(f, str) and (f.startswith("dep:") or "?/" in f) for f in v or [])}
    line: dict[str, Any] = {
        "name": upload.name, "vers": upload.version,
        "deps": [_index_dep(d) for d in meta.get("deps") or []],
        "cksum": upload.cksum,
        "features": {k: v for k, v in features.items() if k not in new_syntax},
        "yanked": False, "links": meta.get("links")}
    if new_syntax:
        line["features2"] = new_syntax
        line["v"] = 2
    if meta.get("rust_version"):
        line["rust_version"] = meta["rust_version"]
    return line


def check_crate(upload: Upload) -> None:
    """The .crate is a gzip tarball of `<name>-<version>/…` whose Cargo.toml names this crate."""
    root = f"{upload.name}-{upload.version}/"
    unpacked = 0
    manifest: bytes | None = None
    try:
        with tarfile.open(fileobj=io.BytesIO(upload.crate), mode="r:gz") as archive:
            for member in archive:
                name = member.name
                if not name.startswith(root) or ".." in name.split("/") or name.startswith("/"):
                    raise CargoError(f"{name}: file outside {root} in the .crate")
                if member.issym() or member.islnk() or member.isdev():
                    raise CargoError(f"{name}: links and devices are not allowed in a .crate")
                unpacked += member.size
                if unpacked > MAX_UNPACKED:
                    raise CargoError(f".crate unpacks to more than {MAX_UNPACKED} bytes")
                if name == root + "Cargo.toml":
                    extracted = archive.extractfile(member)
                    manifest = extracted.read() if extracted else None
    except (tarfile.TarError, gzip.BadGzipFile, EOFError, OSError, ValueError) as exc:
        if isinstance(exc, CargoError):
            raise
        raise CargoError(f"the .crate is not a gzip tarball: {exc}") from None
    if manifest is None:
        raise CargoError(f"the .crate has no {root}Cargo.toml")
    try:
        package = tomllib.loads(manifest.decode("utf-8")).get("package") or {}
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise CargoError(f"Cargo.toml in the .crate cannot be parsed: {exc}") from None
    if package.get("name") != upload.name or package.get("version") != upload.version:
        raise CargoError(f"Cargo.toml in the .crate names {package.get('name')} {package.get('version')}, "
                         f"not {upload.name} {upload.version}")
