"""PyPI simple-index documents as plain data: parse, merge, render (no I/O, no aiohttp).

A project page is held as a `ProjectPage` of `FileRecord`s whose `url` is absolute (the
upstream's own URL for proxied files). Stored proxy pages use the PEP 691 JSON shape with those
absolute URLs (`dump_page` / `load_page`); rendered pages (PEP 503 HTML, PEP 691 JSON) point
every file at depot through a caller-supplied `link` function, normally a relative link
`../../files/<project>/<file-id>/<filename>` so the rendering does not depend on the Host.
"""
from __future__ import annotations

import hashlib
import html
import json
import re
from dataclasses import dataclass, field, replace
from html.parser import HTMLParser
from typing import Any, Callable, Iterable, Sequence
from urllib.parse import quote, unquote, urldefrag, urljoin, urlsplit

from packaging.utils import (InvalidSdistFilename, InvalidWheelFilename, canonicalize_name,
                             parse_sdist_filename, parse_wheel_filename)
from packaging.version import InvalidVersion, Version

API_VERSION = "1.1"
JSON_TYPE = "application/vnd.pypi.simple.v1+json"
HTML_TYPE = "application/vnd.pypi.simple.v1+html"
# what depot asks an upstream for: JSON first, any HTML flavour as a fallback
UPSTREAM_ACCEPT = f"{JSON_TYPE}, {HTML_TYPE};q=0.2, text/html;q=0.1"

_NAME = re.compile(r"^([A-Z0-9]|[A-Z0-9][A-Z0-9._-]*[A-Z0-9])$", re.IGNORECASE)
_HEX = re.compile(r"^[0-9a-f]+$")
_FILE_ID = re.compile(r"^(?:[0-9a-f]{64}|url-[0-9a-f]{64})$")
_HASH_NAMES = ("sha256", "sha384", "sha512", "sha224", "sha1", "md5", "blake2b")
_MAX_FILENAME = 255


@dataclass
class FileRecord:
    """One distribution file of a project page (PEP 691 field names in snake case)."""

    filename: str
    url: str
    hashes: dict[str, str] = field(default_factory=dict)
    requires_python: str | None = None
    yanked: bool | str = False
    core_metadata: bool | dict[str, str] = False
    size: int | None = None
    upload_time: str | None = None

    @property
    def sha256(self) -> str | None:
        return self.hashes.get("sha256")


@dataclass
class ProjectPage:
    """A project's files in page order, plus the PEP 700 version list when known."""

    name: str
    files: list[FileRecord] = field(default_factory=list)
    versions: list[str] | None = None


# ---------------------------------------------------------------- names and ids

def normalize_project(name: str) -> str | None:
    """The PEP 503 normalised form of a valid project name, or None when the name is invalid."""
    if not name or len(name) > 200 or not _NAME.match(name):
        return None
    return canonicalize_name(name)


def file_id(record: FileRecord) -> str:
    """Stable id of a file inside depot links: its sha256, else a digest of its upstream URL."""
    sha = record.sha256
    if sha:
        return sha
    return "url-" + hashlib.sha256(record.url.encode()).hexdigest()


def valid_file_id(value: str) -> bool:
    """True for strings `file_id` can produce."""
    return bool(_FILE_ID.match(value))


def safe_filename(name: str) -> bool:
    """True when `name` can be a path segment: no separators, control characters or dot names."""
    if not name or len(name) > _MAX_FILENAME or name in (".", ".."):
        return False
    return not any(ch in name for ch in "/\\\x00") and all(ord(ch) >= 32 and ord(ch) != 127 for ch in name)


def relative_link(project: str, record: FileRecord) -> str:
    """Link from `/<repo>/simple/<project>/` to depot's copy of the file, with the hash fragment."""
    href = f"../../files/{project}/{file_id(record)}/{quote(record.filename)}"
    return href


def file_version(filename: str) -> str | None:
    """The version encoded in a wheel or sdist filename, or None when it cannot be read."""
    try:
        if filename.endswith(".whl"):
            return str(parse_wheel_filename(filename)[1])
        return str(parse_sdist_filename(filename)[1])
    except (InvalidWheelFilename, InvalidSdistFilename, InvalidVersion):
        return None


def file_package(filename: str) -> tuple[str, str] | None:
    """(normalised project, version) of a wheel or sdist filename (or its `.metadata`), or None."""
    if filename.endswith(".metadata"):
        filename = filename[: -len(".metadata")]
    try:
        if filename.endswith(".whl"):
            name, version, _build, _tags = parse_wheel_filename(filename)
        else:
            name, version = parse_sdist_filename(filename)
    except (InvalidWheelFilename, InvalidSdistFilename, InvalidVersion):
        return None
    return canonicalize_name(name), str(version)


def sort_versions(versions: Iterable[str]) -> list[str]:
    """Unique versions in PEP 440 order (unparseable ones last, as given)."""
    good: dict[Version, str] = {}
    bad: list[str] = []
    for text in dict.fromkeys(versions):
        try:
            good.setdefault(Version(text), text)
        except InvalidVersion:
            bad.append(text)
    return [good[v] for v in sorted(good)] + bad


def page_versions(page: ProjectPage) -> list[str]:
    """The page's version list: the one it declares, else derived from its filenames."""
    if page.versions is not None:
        return page.versions
    return sort_versions(v for v in (file_version(f.filename) for f in page.files) if v)


# ---------------------------------------------------------------- content negotiation

_VARIANTS = {
    JSON_TYPE: "json", "application/vnd.pypi.simple.latest+json": "json",
    HTML_TYPE: "html", "application/vnd.pypi.simple.latest+html": "html", "text/html": "html",
}


def choose_variant(accept: str | None, query_format: str | None = None) -> str | None:
    """Pick "json" or "html" for an Accept header (PEP 691); None when nothing acceptable."""
    if query_format:
        return _VARIANTS.get(query_format.strip().lower())
    if not accept or not accept.strip():
        return "html"
    best: tuple[float, int, str] | None = None
    for position, item in enumerate(accept.split(",")):
        parts = [p.strip() for p in item.split(";")]
        media = parts[0].lower()
        quality = 1.0
        for param in parts[1:]:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        variant = _VARIANTS.get(media) or ("html" if media in ("*/*", "text/*") else None)
        if variant is None or quality <= 0:
            continue
        rank = (quality, -position, variant)
        if best is None or rank[:2] > best[:2]:
            best = rank
    return best[2] if best else None


def content_type(variant: str) -> str:
    """Response Content-Type for a variant chosen by `choose_variant`."""
    return JSON_TYPE if variant == "json" else "text/html; charset=utf-8"


# ---------------------------------------------------------------- parsing upstream pages

def parse_page(body: bytes, page_url: str, project: str) -> ProjectPage:
    """Parse an upstream project page, JSON (PEP 691) or HTML (PEP 503), sniffed from the body."""
    if body.lstrip()[:1] == b"{":
        return parse_json_page(body, page_url, project)
    return parse_html_page(body, page_url, project)


def parse_json_page(body: bytes, page_url: str, project: str) -> ProjectPage:
    """Parse a PEP 691 project page; relative URLs resolved against `page_url`."""
    doc = _loads(body)
    if not isinstance(doc, dict) or not isinstance(doc.get("files", []), list):
        raise ValueError("not a PEP 691 project page")
    files = []
    for item in doc.get("files", []):
        if not isinstance(item, dict):
            continue
        record = _record_from_json(item, page_url)
        if record is not None:
            files.append(record)
    versions = doc.get("versions")
    if not (isinstance(versions, list) and all(isinstance(v, str) for v in versions)):
        versions = None
    return ProjectPage(name=project, files=_dedupe(files), versions=versions)


def _loads(body: bytes) -> Any:
    """json.loads, with too deeply nested documents reported as ValueError too."""
    try:
        return json.loads(body)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def _record_from_json(item: dict[str, Any], base: str) -> FileRecord | None:
    filename, url = item.get("filename"), item.get("url")
    if not isinstance(filename, str) or not isinstance(url, str):
        return None
    url, fragment = urldefrag(urljoin(base, url))
    hashes = _clean_hashes(item.get("hashes")) or _fragment_hashes(fragment)
    yanked = item.get("yanked", False)
    size = item.get("size")
    upload_time = item.get("upload-time")
    record = FileRecord(
        filename=filename, url=url, hashes=hashes,
        requires_python=_str_or_none(item.get("requires-python")),
        yanked=(yanked or True) if isinstance(yanked, str) else bool(yanked),
        core_metadata=_clean_metadata(item.get("core-metadata", item.get("dist-info-metadata", False))),
        size=size if isinstance(size, int) and not isinstance(size, bool) and size >= 0 else None,
        upload_time=upload_time if isinstance(upload_time, str) else None,
    )
    return record if _acceptable(record) else None


class _AnchorParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.anchors: list[dict[str, str | None]] = []
        self._text: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.anchors.append(dict(attrs))
            self._text = []

    def handle_data(self, data: str) -> None:
        if self._text is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._text is not None and self.anchors:
            self.anchors[-1]["#text"] = "".join(self._text).strip()
            self._text = None


def parse_html_page(body: bytes, page_url: str, project: str) -> ProjectPage:
    """Parse a PEP 503 project page; relative hrefs resolved against `page_url`."""
    parser = _AnchorParser()
    parser.feed(body.decode("utf-8", errors="replace"))
    parser.close()
    files = []
    for attrs in parser.anchors:
        href = attrs.get("href")
        if not href:
            continue
        url, fragment = urldefrag(urljoin(page_url, href.strip()))
        filename = unquote(urlsplit(url).path.rsplit("/", 1)[-1]) or (attrs.get("#text") or "")
        yanked_attr = attrs.get("data-yanked", False) if "data-yanked" in attrs else False
        metadata_attr = attrs.get("data-core-metadata", attrs.get("data-dist-info-metadata"))
        record = FileRecord(
            filename=filename, url=url, hashes=_fragment_hashes(fragment),
            requires_python=_str_or_none(attrs.get("data-requires-python")),
            yanked=(yanked_attr or True) if "data-yanked" in attrs else False,
            core_metadata=_metadata_attr(metadata_attr),
        )
        if _acceptable(record):
            files.append(record)
    return ProjectPage(name=project, files=_dedupe(files))


def _fragment_hashes(fragment: str) -> dict[str, str]:
    name, sep, value = fragment.partition("=")
    if not sep:
        return {}
    return _clean_hashes({name: value})


def _clean_hashes(raw: Any) -> dict[str, str]:
    if not isinstance(raw, dict):
        return {}
    hashes = {}
    for name, value in raw.items():
        if isinstance(name, str) and isinstance(value, str):
            name, value = name.lower(), value.lower()
            if name in _HASH_NAMES and _HEX.match(value) and len(value) <= 128:
                hashes[name] = value
    if "sha256" in hashes and len(hashes["sha256"]) != 64:
        del hashes["sha256"]
    return hashes


def _metadata_attr(value: str | None) -> bool | dict[str, str]:
    if value is None or value.strip().lower() in ("", "false"):
        return False
    if value.strip().lower() == "true":
        return True
    return _fragment_hashes(value.strip()) or True


def _clean_metadata(value: Any) -> bool | dict[str, str]:
    if isinstance(value, dict):
        return _clean_hashes(value) or True
    return bool(value) if isinstance(value, bool) else False


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def _acceptable(record: FileRecord) -> bool:
    return safe_filename(record.filename) and urlsplit(record.url).scheme in ("http", "https")


def _dedupe(files: list[FileRecord]) -> list[FileRecord]:
    seen: dict[str, FileRecord] = {}
    for record in files:
        seen.setdefault(record.filename, record)
    return list(seen.values())


# ---------------------------------------------------------------- stored form

def dump_page(page: ProjectPage) -> bytes:
    """Serialise a page (absolute URLs kept) for the cache: PEP 691 JSON."""
    return _json_bytes(_page_doc(page, lambda r: r.url))


def load_page(body: bytes, project: str) -> ProjectPage:
    """Inverse of `dump_page`."""
    return parse_json_page(body, "", project)


def _record_doc(record: FileRecord, url: str) -> dict[str, Any]:
    doc: dict[str, Any] = {"filename": record.filename, "url": url, "hashes": record.hashes}
    if record.requires_python is not None:
        doc["requires-python"] = record.requires_python
    doc["yanked"] = record.yanked
    if record.core_metadata:
        doc["core-metadata"] = record.core_metadata
        doc["dist-info-metadata"] = record.core_metadata
    if record.size is not None:
        doc["size"] = record.size
    if record.upload_time is not None:
        doc["upload-time"] = record.upload_time
    return doc


def _page_doc(page: ProjectPage, link: Callable[[FileRecord], str]) -> dict[str, Any]:
    return {
        "meta": {"api-version": API_VERSION},
        "name": page.name,
        "versions": page_versions(page),
        "files": [_record_doc(r, link(r)) for r in page.files],
    }


def _json_bytes(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


# ---------------------------------------------------------------- rendering

def render_json(page: ProjectPage, link: Callable[[FileRecord], str]) -> bytes:
    """PEP 691 JSON (API 1.1, with PEP 700 fields) with every file URL given by `link`."""
    return _json_bytes(_page_doc(page, link))


def render_html(page: ProjectPage, link: Callable[[FileRecord], str]) -> bytes:
    """PEP 503 HTML with hash fragments, requires-python, yanked and core-metadata attributes."""
    esc = html.escape
    lines = ["<!DOCTYPE html>", "<html>", "<head>",
             f'<meta name="pypi:repository-version" content="{API_VERSION}">',
             f"<title>Links for {esc(page.name)}</title>", "</head>", "<body>",
             f"<h1>Links for {esc(page.name)}</h1>"]
    for record in page.files:
        href = link(record)
        name, value = _fragment_hash(record.hashes)
        if name:
            href += f"#{name}={value}"
        attrs = [f'href="{esc(href)}"']
        if record.requires_python:
            attrs.append(f'data-requires-python="{esc(record.requires_python)}"')
        if record.yanked is not False:
            reason = record.yanked if isinstance(record.yanked, str) else ""
            attrs.append(f'data-yanked="{esc(reason)}"')
        if record.core_metadata:
            meta = _metadata_value(record.core_metadata)
            attrs.append(f'data-core-metadata="{esc(meta)}"')
            attrs.append(f'data-dist-info-metadata="{esc(meta)}"')
        lines.append(f"<a {' '.join(attrs)}>{esc(record.filename)}</a><br/>")
    lines += ["</body>", "</html>", ""]
    return "\n".join(lines).encode()


def _fragment_hash(hashes: dict[str, str]) -> tuple[str | None, str | None]:
    for name in _HASH_NAMES:
        if name in hashes:
            return name, hashes[name]
    return None, None


def _metadata_value(value: bool | dict[str, str]) -> str:
    if isinstance(value, dict):
        name, digest = _fragment_hash(value)
        if name:
            return f"{name}={digest}"
    return "true"


def render_index_html(projects: Sequence[str]) -> bytes:
    """The PEP 503 root page listing projects (links relative to `/<repo>/simple/`)."""
    esc = html.escape
    lines = ["<!DOCTYPE html>", "<html>", "<head>",
             f'<meta name="pypi:repository-version" content="{API_VERSION}">',
             "<title>Simple index</title>", "</head>", "<body>"]
    lines += [f'<a href="{esc(quote(p))}/">{esc(p)}</a><br/>' for p in projects]
    lines += ["</body>", "</html>", ""]
    return "\n".join(lines).encode()


def render_index_json(projects: Sequence[str]) -> bytes:
    """The PEP 691 root document listing projects."""
    return _json_bytes({"meta": {"api-version": API_VERSION}, "projects": [{"name": p} for p in projects]})


def parse_index(body: bytes) -> list[str]:
    """Normalised project names from an upstream root page (JSON or HTML)."""
    if body.lstrip()[:1] == b"{":
        projects = _loads(body).get("projects", [])
        if not isinstance(projects, list):
            raise ValueError("not a PEP 691 index: projects must be a list")
        raw = [p.get("name") for p in projects if isinstance(p, dict)]
    else:
        parser = _AnchorParser()
        parser.feed(body.decode("utf-8", errors="replace"))
        parser.close()
        raw = [a.get("#text") for a in parser.anchors]
    names = (normalize_project(n) for n in raw if isinstance(n, str))
    return sorted({n for n in names if n})


def dump_index(projects: Sequence[str]) -> bytes:
    """Stored form of a root page: a JSON list of names."""
    return _json_bytes(list(projects))


def load_names(body: bytes) -> list[str]:
    """Inverse of `dump_index`."""
    names = _loads(body)
    return [n for n in names if isinstance(n, str)] if isinstance(names, list) else []


# ---------------------------------------------------------------- groups and lookups

def merge_pages(name: str, pages: Iterable[ProjectPage]) -> ProjectPage:
    """One page from several members in order; the first member wins for the same filename."""
    files: dict[str, FileRecord] = {}
    versions: list[str] = []
    for page in pages:
        for record in page.files:
            files.setdefault(record.filename, record)
        versions.extend(page_versions(page))
    return ProjectPage(name=name, files=list(files.values()), versions=sort_versions(versions))


def find_file(page: ProjectPage, wanted_id: str, filename: str) -> FileRecord | None:
    """The record with this depot file id and filename, if the page lists it."""
    for record in page.files:
        if record.filename == filename and file_id(record) == wanted_id:
            return record
    return None


def metadata_record(record: FileRecord) -> FileRecord | None:
    """The `<file>.metadata` companion of a record (PEP 658), when the page advertises one."""
    if not record.core_metadata:
        return None
    hashes = record.core_metadata if isinstance(record.core_metadata, dict) else {}
    return replace(record, filename=record.filename + ".metadata", url=record.url + ".metadata",
                   hashes=dict(hashes), core_metadata=False, size=None)
