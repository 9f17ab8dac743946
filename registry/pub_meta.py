"""Dart pub documents (pure functions, run in worker threads): archives, version listings.

The hosted repository keeps one small JSON record per package (`meta/<name>.json`: versions
with pubspec, archive sha256 and publish time); the listing clients read
(`api/packages/<name>`, repository spec v2) is rendered from it with archive URLs under the
URL of the repository the client asked.
"""
from __future__ import annotations

import gzip
import io
import json
import re
import tarfile
from datetime import datetime, timezone
from typing import Any, Iterable

import yaml

NAME = re.compile(r"^[a-z_][a-z0-9_]{0,63}$")
VERSION = re.compile(r"^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$")
MAX_PUBSPEC = 256 * 1024
UPSTREAM_URL = "x-depot-upstream-archive"     # kept in a proxied listing: where depot fetches the archive


class BadPackage(ValueError):
    """An archive or listing that cannot be used (a 400 for uploads, 502 from an upstream)."""


def now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def archive_path(name: str, version: str) -> str:
    """Where an archive is kept (hosted path, proxy cache key) and served (the deprecated v2 URL)."""
    return f"packages/{name}/versions/{version}.tar.gz"


def pubspec_of(data: bytes) -> dict[str, Any]:
    """The pubspec.yaml at the top of a package archive (.tar.gz), checked."""
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            found = None
            for member in tar:
                if member.name.lstrip("./") == "pubspec.yaml":
                    if not member.isfile() or member.size > MAX_PUBSPEC:
                        raise BadPackage("pubspec.yaml is not a small regular file")
                    handle = tar.extractfile(member)
                    found = handle.read() if handle else b""
                    break
    except (tarfile.TarError, OSError, EOFError, gzip.BadGzipFile) as exc:
        raise BadPackage(f"not a package archive (.tar.gz): {exc}") from None
    if found is None:
        raise BadPackage("the archive has no pubspec.yaml at its top")
    try:
        pubspec = yaml.safe_load(found)
    except yaml.YAMLError as exc:
        raise BadPackage(f"pubspec.yaml is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(pubspec, dict):
        raise BadPackage("pubspec.yaml is not a mapping")
    name, version = pubspec.get("name"), str(pubspec.get("version", ""))
    if not isinstance(name, str) or not NAME.match(name):
        raise BadPackage(f"package name {name!r} is not valid (lower-case letters, digits and _)")
    if not VERSION.match(version):
        raise BadPackage(f"version {version!r} is not a semantic version")
    pubspec["version"] = version
    return json.loads(json.dumps(pubspec, default=str))     # YAML dates etc. as strings


def add_version(old: bytes | None, pubspec: dict[str, Any], sha256: str) -> bytes:
    """The package record with a new version; BadPackage when the version exists already."""
    record = json.loads(old) if old else {"name": pubspec["name"], "versions": []}
    if any(v["version"] == pubspec["version"] for v in record["versions"]):
        raise BadPackage(f"version {pubspec['version']} of {pubspec['name']} already exists")
    record["versions"].append({"version": pubspec["version"], "pubspec": pubspec,
                               "archive_sha256": sha256, "published": now_iso()})
    return json.dumps(record).encode()


def _key(version: str) -> tuple[Any, ...]:
    core, _, pre = version.split("+")[0].partition("-")
    nums = tuple(int(p) if p.isdigit() else 0 for p in core.split("."))
    return nums, pre == "", tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre.split("."))


def latest(versions: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The highest stable (else highest) version that is not retracted."""
    live = [v for v in versions if not v.get("retracted")] or versions
    stable = [v for v in live if "-" not in str(v["version"]).split("+")[0]] or live
    return max(stable, key=lambda v: _key(str(v["version"]))) if stable else None


def listing(name: str, versions: list[dict[str, Any]]) -> dict[str, Any]:
    """A spec v2 listing of `versions` (sorted ascending, latest set)."""
    ordered = sorted(versions, key=lambda v: _key(str(v["version"])))
    return {"name": name, "latest": latest(ordered), "versions": ordered}


def render_hosted(record: bytes, base: str) -> bytes:
    """The client listing of a hosted record, archive URLs under `base`."""
    data = json.loads(record)
    versions = [{**v, "archive_url": f"{base}/{archive_path(data['name'], v['version'])}"} for v in data["versions"]]
    return json.dumps(listing(data["name"], versions)).encode()


def parse_listing(body: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(body)
    except ValueError as exc:
        raise BadPackage(f"listing is not JSON: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("versions"), list) \
            or not all(isinstance(v, dict) and isinstance(v.get("version"), str) for v in doc["versions"]):
        raise BadPackage("listing has no versions list")
    return doc


def rewrite_upstream(body: bytes, name: str, base: str) -> bytes:
    """An upstream listing with every archive at `<base>/packages/<name>/versions/<v>.tar.gz`
    (the upstream URL kept aside for depot's fetch); versions without archive_url dropped."""
    doc = parse_listing(body)
    kept = []
    for v in doc["versions"]:
        url = v.get("archive_url")
        if not isinstance(url, str) or not VERSION.match(v["version"]):
            continue
        kept.append({**v, UPSTREAM_URL: url, "archive_url": f"{base}/{archive_path(name, v['version'])}"})
    out = listing(name, kept)
    for key in ("isDiscontinued", "replacedBy"):
        if key in doc:
            out[key] = doc[key]
    return json.dumps(out).encode()


def find(doc: dict[str, Any], version: str) -> dict[str, Any] | None:
    return next((v for v in doc["versions"] if v["version"] == version), None)


def merge(name: str, docs: Iterable[dict[str, Any]]) -> bytes:
    """A group's listing: the first member having a version wins."""
    seen: dict[str, dict[str, Any]] = {}
    for doc in docs:
        for v in doc["versions"]:
            seen.setdefault(v["version"], v)
    return json.dumps(listing(name, list(seen.values()))).encode()


def without(body: bytes, hidden: frozenset[tuple[str, str]]) -> bytes:
    doc = parse_listing(body)
    name = str(doc.get("name"))
    out = {**doc, **listing(name, [v for v in doc["versions"] if (name, v["version"]) not in hidden])}
    return json.dumps(out).encode()


def epoch(stamp: Any) -> float | None:
    if not isinstance(stamp, str):
        return None
    try:
        return datetime.fromisoformat(re.sub(r"(\.\d{6})\d*", r"\1", stamp.replace("Z", "+00:00"))).timestamp()
    except ValueError:
        return None
