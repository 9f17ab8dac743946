"""Reading a small JSON file (metadata.json, bower.json) out of an uploaded .tar.gz, in a worker
thread: the shared check of Puppet, Chef, Bower and CocoaPods uploads (a bad archive is a 400)."""
from __future__ import annotations

import gzip
import io
import json
import tarfile
import zipfile
import zlib
from typing import Any

MAX_MEMBER = 4 * 2**20          # a metadata file bigger than this is not one


def json_member(data: bytes, names: tuple[str, ...], depth: int = 1) -> dict[str, Any] | None:
    """The JSON object at one of `names` (at the archive root or up to `depth` directories down)
    of a gzipped tar; None when it has none. ValueError when `data` is not a .tar.gz, or the file
    is not a JSON object."""
    if data[:2] != b"\x1f\x8b":
        raise ValueError("not a gzipped tar archive")
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            for member in tar:
                parts = member.name.lstrip("./").split("/")
                if member.isfile() and parts[-1] in names and len(parts) <= depth + 1:
                    if member.size > MAX_MEMBER:
                        raise ValueError(f"{member.name} is too big")
                    handle = tar.extractfile(member)
                    return _object(member.name, handle.read() if handle else b"")
    except (tarfile.TarError, EOFError, OSError, gzip.BadGzipFile, zlib.error) as exc:
        raise ValueError(f"not a valid .tar.gz archive: {exc}") from None
    return None


def check_archive(data: bytes) -> str:
    """'tar.gz' or 'zip' when `data` is a readable archive of that kind; ValueError otherwise."""
    if data[:4] == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                bad = archive.testzip()
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise ValueError(f"not a valid zip archive: {exc}") from None
        if bad is not None:
            raise ValueError(f"corrupt zip member {bad}")
        return "zip"
    if data[:2] != b"\x1f\x8b":
        raise ValueError("not a .tar.gz or .zip archive")
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            for _ in tar:
                pass
    except (tarfile.TarError, EOFError, OSError, gzip.BadGzipFile, zlib.error) as exc:
        raise ValueError(f"not a valid .tar.gz archive: {exc}") from None
    return "tar.gz"


def _object(name: str, raw: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise ValueError(f"{name} is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ValueError(f"{name} is not a JSON object")
    return doc

