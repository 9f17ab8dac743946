"""Conda package archives and repodata documents (pure functions, run in worker threads).

* `read_index(name, data)`: `info/index.json` of a `.conda` (zip with `info-*.tar.zst`) or a
  `.tar.bz2` package, checked against the file name (`<name>-<version>-<build>.<ext>`).
* `render_repodata(subdir, records)`: repodata.json of a hosted subdir (conda-index semantics:
  the index.json fields plus sha256, md5, size).
* `splice_repodata(subdir, parts)`: a group's merged repodata without parsing big members: the
  package objects of every member are spliced byte-wise, the first member winning per file
  name. A 200 MB upstream repodata costs a few substring searches, not a JSON tree.
* `find_record(body, fn)`: one package record of a repodata document, found by its key.
"""
from __future__ import annotations

import io
import json
import re
import tarfile
import zipfile
from typing import Any, Iterable, Iterator

import zstandard

SUBDIRS = ("noarch", "linux-64", "linux-aarch64", "linux-ppc64le", "linux-s390x", "linux-armv7l", "linux-32",
           "osx-64", "osx-arm64", "win-64", "win-32", "win-arm64", "emscripten-wasm32", "wasi-wasm32")
PACKAGE = re.compile(r"(?P<subdir>[a-z0-9_-]+)/(?P<fn>(?P<name>[a-z0-9_.+-]+?)-(?P<version>[^-/]+)-"
                     r"(?P<build>[^-/]+)\.(?P<ext>conda|tar\.bz2))\Z")
SECTIONS = {"conda": "packages.conda", "tar.bz2": "packages"}
MAX_INDEX_JSON = 1 << 20
REQUIRED = ("name", "version", "build")


class PackageError(ValueError):
    """The uploaded file is not a valid conda package for its path."""


def _index_from_tar(tar: tarfile.TarFile) -> bytes:
    for member in tar:
        if member.name.lstrip("./") == "info/index.json":
            if not member.isfile() or member.size > MAX_INDEX_JSON:
                raise PackageError("info/index.json is not a small regular file")
            handle = tar.extractfile(member)
            assert handle is not None
            return handle.read()
    raise PackageError("the archive has no info/index.json")


def _index_bytes(ext: str, data: bytes) -> bytes:
    try:
        if ext == "tar.bz2":
            with tarfile.open(fileobj=io.BytesIO(data), mode="r:bz2") as tar:
                return _index_from_tar(tar)
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            inner = [n for n in archive.namelist() if n.startswith("info-") and n.endswith(".tar.zst")]
            if len(inner) != 1:
                raise PackageError("a .conda package holds exactly one info-*.tar.zst")
            with archive.open(inner[0]) as raw:
                reader = zstandard.ZstdDecompressor().stream_reader(raw)
                with tarfile.open(fileobj=reader, mode="r|") as tar:
                    return _index_from_tar(tar)
    except (tarfile.TarError, zipfile.BadZipFile, zstandard.ZstdError, OSError, EOFError, ValueError) as exc:
        if isinstance(exc, PackageError):
            raise
        raise PackageError(f"not a readable .{ext} archive: {exc}") from None


def read_index(path: str, data: bytes) -> dict[str, Any]:
    """The package's index.json, checked against its path `<subdir>/<name>-<version>-<build>.<ext>`."""
    found = PACKAGE.match(path)
    if found is None:
        raise PackageError("upload packages as <subdir>/<name>-<version>-<build>.conda or .tar.bz2")
    try:
        index = json.loads(_index_bytes(found["ext"], data))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PackageError(f"info/index.json is not JSON: {exc}") from None
    if not isinstance(index, dict) or not all(isinstance(index.get(k), str) for k in REQUIRED):
        raise PackageError("info/index.json must name the package's name, version and build")
    expected = f"{index['name']}-{index['version']}-{index['build']}.{found['ext']}"
    if expected != found["fn"]:
        raise PackageError(f"the file name {found['fn']!r} does not match info/index.json ({expected!r})")
    subdir = index.get("subdir", found["subdir"])
    if subdir != found["subdir"]:
        raise PackageError(f"the package is built for {subdir!r}, not {found['subdir']!r}")
    if not isinstance(index.get("build_number", 0), int):
        raise PackageError("build_number must be an integer")
    return index


def package_record(index: dict[str, Any], sha256: str, md5: str, size: int) -> dict[str, Any]:
    """The repodata record of a stored package."""
    record = {k: v for k, v in index.items() if k not in ("sha256", "md5", "size")}
    record.setdefault("depends", [])
    record.setdefault("build_number", 0)
    record.update(sha256=sha256, md5=md5, size=size)
    return record


def empty_repodata(subdir: str) -> dict[str, Any]:
    return {"info": {"subdir": subdir}, "packages": {}, "packages.conda": {}, "removed": [], "repodata_version": 1}


def render_repodata(subdir: str, records: Iterable[tuple[str, dict[str, Any]]]) -> bytes:
    """repodata.json of a subdir from (file name, record) pairs."""
    doc = empty_repodata(subdir)
    for fn, record in sorted(records, key=lambda item: item[0]):
        doc[SECTIONS["conda" if fn.endswith(".conda") else "tar.bz2"]][fn] = record
    return json.dumps(doc, indent=1, sort_keys=True).encode()


def render_channeldata(records: Iterable[tuple[str, dict[str, Any]]]) -> bytes:
    """channeldata.json: each package's subdirs and the version of its newest upload."""
    packages: dict[str, dict[str, Any]] = {}
    subdirs: set[str] = set()
    for subdir, record in records:
        subdirs.add(subdir)
        entry = packages.setdefault(record["name"], {"subdirs": [], "version": record["version"], "timestamp": 0})
        if subdir not in entry["subdirs"]:
            entry["subdirs"] = sorted([*entry["subdirs"], subdir])
        stamp = int(record.get("timestamp") or 0)
        if stamp >= entry["timestamp"]:
            entry.update(version=record["version"], timestamp=stamp)
        for key in ("license", "summary", "home"):
            if key in record:
                entry.setdefault(key, record[key])
    return json.dumps({"channeldata_version": 1, "packages": packages, "subdirs": sorted(subdirs)},
                      indent=1, sort_keys=True).encode()


def merge_channeldata(documents: list[bytes]) -> bytes:
    """channeldata.json of a group: packages of every member (first member wins per name),
    subdirs united. Members' documents are small next to repodata (a few MB for conda-forge)."""
    packages: dict[str, Any] = {}
    subdirs: set[str] = set()
    for body in documents:
        try:
            doc = json.loads(body)
        except ValueError:
            continue
        for name, entry in (doc.get("packages") or {}).items():
            packages.setdefault(name, entry)
        subdirs.update(doc.get("subdirs") or [])
    return json.dumps({"channeldata_version": 1, "packages": packages, "subdirs": sorted(subdirs)},
                      sort_keys=True).encode()


def compress(body: bytes) -> bytes:
    """repodata.json.zst."""
    return zstandard.ZstdCompressor(level=10).compress(body)


# --------------------------------------------------------------------------- byte-level access

_STRING_OR_BRACE = re.compile(rb'"(?:[^"\\]|\\.)*"|[{}\[\]]')


def _object_end(body: bytes, start: int) -> int:
    """Index just past the JSON object or array opening at `start` (strings skipped)."""
    depth = 0
    for token in _STRING_OR_BRACE.finditer(body, start):
        first = token.group()[:1]
        if first in (b"{", b"["):
            depth += 1
        elif first in (b"}", b"]"):
            depth -= 1
            if depth == 0:
                return token.end()
    raise ValueError("unterminated JSON object")


_TOP_LEVEL = re.compile(rb'"(?:info|packages|packages\.conda|removed|repodata_version|signatures)"\s*:\s*[\[{0-9]')
_FILE_KEY = re.compile(rb'"[^"\\]+\.(?:tar\.bz2|conda)"(?=\s*:\s*\{)')


def _section(body: bytes, name: str) -> tuple[int, int] | None:
    """(start, end) of the inside of the top-level object `name` ("packages", "packages.conda").

    The end is found at the next top-level key (repodata records never use those names as
    keys), in C-speed searches; a scan of every token is the fallback when that looks wrong."""
    found = re.search(rb'"' + re.escape(name.encode()) + rb'"\s*:\s*\{', body)
    if found is None:
        return None
    following = _TOP_LEVEL.search(body, found.end())
    stop = following.start() if following is not None else body.rstrip().rfind(b"}")
    close = stop - 1
    while close > found.end() and body[close] in b" \t\r\n,":
        close -= 1
    if body[close:close + 1] != b"}":
        close = _object_end(body, found.end() - 1) - 1
    return found.end(), close


def find_record(body: bytes, fn: str) -> dict[str, Any] | None:
    """The record of file `fn` in a repodata document, without parsing the rest of it."""
    key = json.dumps(fn).encode()
    at = 0
    while True:
        at = body.find(key, at)
        if at < 0:
            return None
        after = re.compile(rb"\s*:\s*\{").match(body, at + len(key))
        if after is not None:
            start = after.end() - 1
            try:
                record = json.loads(body[start:_object_end(body, start)])
            except ValueError:
                return None
            return record if isinstance(record, dict) else None
        at += len(key)


def _entries(body: bytes, start: int, end: int) -> Iterator[tuple[bytes, int, int, int]]:
    """(key, key start, value start, value end) of each `"key": {...}` entry inside an object's body."""
    at = start
    key_at = re.compile(rb'\s*,?\s*("(?:[^"\\]|\\.)*")\s*:\s*')
    while at < end:
        found = key_at.match(body, at)
        if found is None or found.end() >= end:
            return
        value_start = found.end()
        value_end = _object_end(body, value_start) if body[value_start:value_start + 1] in (b"{", b"[") else \
            re.compile(rb'"(?:[^"\\]|\\.)*"|[^,}\]]*').match(body, value_start).end()   # type: ignore[union-attr]
        yield found.group(1), found.start(1), value_start, value_end
        at = value_end


def splice_repodata(subdir: str, parts: list[bytes], small: int = 8 << 20) -> list[bytes | memoryview]:
    """The pieces of a merged repodata.json (first part wins per file name). Parts up to
    `small` bytes are parsed; bigger ones are copied in runs between the entries an earlier
    member already gave, found by their keys (`"<file>.conda": {`)."""
    out: list[bytes | memoryview] = [b'{"info":' + json.dumps({"subdir": subdir}).encode()]
    for section in ("packages", "packages.conda"):
        taken: set[bytes] = set()
        out.append(b',' + json.dumps(section).encode() + b':{')
        chosen = (p for n, body in enumerate(parts)
                  for p in _section_pieces(body, section, taken, small, n == len(parts) - 1))
        for i, piece in enumerate(chosen):
            out.extend((b",", piece) if i else (piece,))
        out.append(b"}")
    out.append(b',"removed":[],"repodata_version":1}')
    return out


def _trimmed(body: bytes, start: int, end: int) -> memoryview:
    """body[start:end] without surrounding whitespace and commas, as a view (no copy)."""
    while start < end and body[start] in b" \t\r\n,":
        start += 1
    while end > start and body[end - 1] in b" \t\r\n,":
        end -= 1
    return memoryview(body)[start:end]


def _file_keys(body: bytes, start: int, end: int) -> list[tuple[bytes, int]]:
    """(key, start) of each `"<file>.conda": {` / `"<file>.tar.bz2": {` entry, in order
    (substring searches: a regex over 200 MB is several times slower)."""
    found = []
    for suffix in (b'.tar.bz2"', b'.conda"'):
        at = body.find(suffix, start, end)
        while at >= 0:
            close = at + len(suffix)
            if _VALUE_OBJECT.match(body, close):
                open_quote = body.rfind(b'"', start, at)
                if open_quote >= 0:
                    found.append((body[open_quote:close], open_quote))
            at = body.find(suffix, close, end)
    found.sort(key=lambda item: item[1])
    return found


def _section_pieces(body: bytes, section: str, taken: set[bytes], small: int,
                    last: bool) -> list[bytes | memoryview]:
    bounds = _section(body, section)
    if bounds is None:
        return []
    start, end = bounds
    if len(body) <= small:
        pieces: list[bytes | memoryview] = []
        for key, _ks, vs, ve in _entries(body, start, end):
            if key not in taken:
                taken.add(key)
                pieces.append(key + b":" + body[vs:ve])
        return pieces
    keys = _file_keys(body, start, end) if len(taken) > 32 or not last else None
    if keys is None:       # the last member and few names taken: cut them where they are
        cuts = sorted(filter(None, (_key_at(body, key, start, end) for key in taken)))
    else:
        cuts = [(ks, keys[i + 1][1] if i + 1 < len(keys) else end)
                for i, (key, ks) in enumerate(keys) if key in taken]
        taken.update(key for key, _ks in keys)
    pieces, at = [], start
    for cut_start, cut_end in cuts:
        pieces.append(_trimmed(body, at, cut_start))
        at = cut_end
    pieces.append(_trimmed(body, at, end))
    return [p for p in pieces if len(p)]


def _key_at(body: bytes, key: bytes, start: int, end: int) -> tuple[int, int] | None:
    """(start, end) of the entry `key: {...}` inside body[start:end], found by substring search."""
    at = body.find(key, start, end)
    while at >= 0:
        after = _VALUE_OBJECT.match(body, at + len(key))
        if after is not None and body[at - 1:at] != b"\\":
            return at, _object_end(body, after.end() - 1)
        at = body.find(key, at + len(key), end)
    return None


_VALUE_OBJECT = re.compile(rb"\s*:\s*\{")
