"""Composer metadata as data: versions normalised, dist zips read, p2 documents expanded,
rewritten and merged. Pure functions (no engine), run in worker threads where they parse.

A p2 document is `{"packages": {"vendor/name": [version, …]}}`; Packagist serves it minified
(`"minified": "composer/2.0"`: each entry lists only the keys that changed from the previous
one, `"__unset"` removes a key), so it is expanded before anything else reads it.
"""
from __future__ import annotations

import hashlib
import io
import json
import re
import zipfile
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote, unquote

from depot.cache.api import BASE_PLACEHOLDER

NAME = re.compile(r"[a-z0-9]([_.-]?[a-z0-9]+)*/[a-z0-9](([_.]?|-{0,2})[a-z0-9]+)*\Z")
VERSION = re.compile(r"v?(?P<nums>\d{1,5}(\.\d+){0,3})"
                     r"(?:[._-]?(?P<stab>stable|beta|b|RC|rc|alpha|a|patch|pl|p)(?P<n>(?:[.-]?\d+)*))?\Z")
DEV = re.compile(r"dev-[A-Za-z0-9._/-]{1,100}\Z")
STABILITY = {"a": "alpha", "alpha": "alpha", "b": "beta", "beta": "beta", "rc": "RC", "RC": "RC",
             "p": "patch", "pl": "patch", "patch": "patch"}
KEEP = ("name", "description", "keywords", "homepage", "readme", "license", "authors", "type", "require",
        "require-dev", "conflict", "replace", "provide", "suggest", "autoload", "autoload-dev", "include-path",
        "target-dir", "bin", "extra", "support", "funding", "abandoned", "archive", "notification-url")
MAX_COMPOSER_JSON = 1 << 20
MAX_ENTRIES = 100_000
UPSTREAM_URL = "upstream-url"      # where a proxied dist really is (kept in the stored document)


class ComposerError(ValueError):
    """A package, version or document that cannot be accepted (the message says why)."""


def normalize(version: str) -> str:
    """Composer's version_normalized (`v1.2` -> `1.2.0.0`, `1.0.0-beta2` -> `1.0.0.0-beta2`,
    `dev-main` unchanged); ComposerError for what Composer would not accept as a tag."""
    if DEV.match(version):
        return version
    found = VERSION.match(version)
    if found is None:
        raise ComposerError(f"invalid version {version!r}: use a tag like 1.2.3, v1.2.3, 1.0.0-beta2 or dev-<branch>")
    nums = found["nums"].split(".")
    out = ".".join(nums + ["0"] * (4 - len(nums)))
    stab = found["stab"]
    if stab and stab != "stable":
        out += "-" + STABILITY[stab] + found["n"].lstrip(".-")
    return out


def is_dev(version: str) -> bool:
    """Branches (`dev-main`, `1.x-dev`) live in the `~dev` document."""
    return version.startswith("dev-") or version.endswith("-dev")


def read_composer_json(data: bytes) -> dict[str, Any]:
    """The composer.json of a dist zip (at the root or in its single top directory)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            infos = zf.infolist()
            if len(infos) > MAX_ENTRIES:
                raise ComposerError(f"more than {MAX_ENTRIES} entries in the zip")
            for info in infos:
                parts = info.filename.replace("\\", "/").split("/")
                if info.filename.startswith(("/", "\\")) or ".." in parts:
                    raise ComposerError(f"unsafe path in the zip: {info.filename!r}")
            bad = zf.testzip()
            if bad is not None:
                raise ComposerError(f"corrupt zip entry {bad!r}")
            candidates = sorted((i for i in infos if i.filename.rstrip("/").split("/")[-1] == "composer.json"
                                 and i.filename.count("/") <= 1), key=lambda i: i.filename.count("/"))
            if not candidates:
                raise ComposerError("no composer.json at the root of the zip (or in its top directory)")
            if candidates[0].file_size > MAX_COMPOSER_JSON:
                raise ComposerError("composer.json is too large")
            raw = zf.read(candidates[0])
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError) as exc:
        raise ComposerError(f"not a zip archive: {exc}") from None
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise ComposerError(f"composer.json is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ComposerError("composer.json is not a JSON object")
    return doc


def encode_version(version: str) -> str:
    """A version as one URL path segment: branch names may hold `/` (`dev-feature/x`), which
    a percent-escape would not protect (the path is decoded before routing), so it becomes `~`
    (never part of a Composer version)."""
    return quote(version.replace("/", "~"), safe="")


def decode_version(segment: str) -> str:
    """The inverse of encode_version() (on the decoded path segment)."""
    return unquote(segment).replace("~", "/")


def dist_path(name: str, version: str) -> str:
    """Where a hosted dist zip is stored (and served)."""
    return f"dists/{name}/{encode_version(version)}.zip"


def p2_path(name: str, dev: bool) -> str:
    return f"p2/{name}{'~dev' if dev else ''}.json"


def version_entry(composer: dict[str, Any], name: str, version: str, sha1: str, when: float) -> dict[str, Any]:
    """The p2 entry of a published version; its dist URL under BASE_PLACEHOLDER."""
    entry = {key: composer[key] for key in KEEP if key in composer}
    entry.update(name=name, version=version, version_normalized=normalize(version),
                 dist={"type": "zip", "url": f"{BASE_PLACEHOLDER}/{dist_path(name, version)}",
                       "reference": sha1, "shasum": sha1},
                 time=datetime.fromtimestamp(when, timezone.utc).isoformat(timespec="seconds"))
    return entry


def check_upload(composer: dict[str, Any], name: str | None, version: str | None) -> tuple[str, str]:
    """(name, version) of an upload: composer.json's name must match the URL's, its version
    (if any) too; the version must be one Composer accepts."""
    found = composer.get("name")
    if not isinstance(found, str) or not NAME.match(found):
        raise ComposerError(f"composer.json has no valid package name (vendor/name, lower case): {found!r}")
    if name is not None and found != name:
        raise ComposerError(f"composer.json names {found!r}, not {name!r}")
    inside = composer.get("version")
    if inside is not None and version is not None and inside != version:
        raise ComposerError(f"composer.json says version {inside!r}, the upload {version!r}")
    version = version or inside
    if not isinstance(version, str) or not version:
        raise ComposerError("no version: give it in the URL, the form or composer.json")
    normalize(version)
    return found, version


def add_version(old: bytes | None, name: str, entry: dict[str, Any]) -> bytes:
    """A p2 document with one more version; ComposerError when that version is there."""
    doc = json.loads(old) if old else {"packages": {name: []}}
    versions = doc["packages"].setdefault(name, [])
    if any(v.get("version_normalized") == entry["version_normalized"] for v in versions):
        raise ComposerError(f"{name} {entry['version']} already exists")
    versions.insert(0, entry)
    return json.dumps(doc, indent=1, sort_keys=True).encode()


def expand(versions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Composer's MetadataMinifier::expand."""
    out: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    for data in versions:
        current = dict(data) if current is None else {**current, **data}
        current = {k: v for k, v in current.items() if v != "__unset"}
        out.append(current)
    return out


def parse_p2(body: bytes) -> dict[str, list[dict[str, Any]]]:
    """package -> expanded version entries of a p2 document."""
    try:
        doc = json.loads(body)
        packages = doc["packages"]
        if not isinstance(packages, dict):
            raise TypeError("packages is not an object")
        minified = doc.get("minified") == "composer/2.0"
        return {name: expand(vs) if minified else list(vs) for name, vs in packages.items() if isinstance(vs, list)}
    except (ValueError, KeyError, TypeError) as exc:
        raise ComposerError(f"not a Composer p2 document: {exc}") from None


def render_p2(packages: dict[str, list[dict[str, Any]]]) -> bytes:
    return json.dumps({"packages": packages}, sort_keys=True).encode()


def proxy_dist_path(name: str, version: str, reference: str | None) -> str:
    """Where a proxy serves an upstream dist: by version and reference (a moved tag gets a new path)."""
    ref = re.sub(r"[^A-Za-z0-9._-]", "_", reference or "") or "noref"
    return f"dists/{name}/{encode_version(version)}/{ref}.zip"


def rewrite_p2(body: bytes) -> bytes:
    """An upstream p2 document expanded, each dist URL pointing at depot (BASE_PLACEHOLDER),
    the original kept under UPSTREAM_URL for the download."""
    packages = parse_p2(body)
    for name, versions in packages.items():
        for entry in versions:
            dist = entry.get("dist")
            if isinstance(dist, dict) and isinstance(dist.get("url"), str) and isinstance(entry.get("version"), str):
                dist[UPSTREAM_URL] = dist["url"]
                dist["url"] = f"{BASE_PLACEHOLDER}/{proxy_dist_path(name, entry['version'], dist.get('reference'))}"
    return render_p2(packages)


def merge_p2(bodies: list[bytes]) -> bytes:
    """Members' p2 documents as one; the first member listing a version wins."""
    merged: dict[str, list[dict[str, Any]]] = {}
    for body in bodies:
        for name, versions in parse_p2(body).items():
            have = merged.setdefault(name, [])
            seen = {v.get("version_normalized") or v.get("version") for v in have}
            have.extend(v for v in versions if (v.get("version_normalized") or v.get("version")) not in seen)
    return render_p2(merged)


def find_dist(body: bytes, name: str, version: str, reference: str) -> dict[str, Any] | None:
    """The dist of `version` in a (rewritten) p2 document whose reference matches."""
    for entry in parse_p2(body).get(name, []):
        dist = entry.get("dist")
        if entry.get("version") == version and isinstance(dist, dict):
            if proxy_dist_path(name, version, dist.get("reference")).endswith(f"/{reference}.zip"):
                return dist
    return None


def sha1(data: bytes) -> str:
    return hashlib.sha1(data, usedforsecurity=False).hexdigest()
