"""Helm chart repository documents (pure functions, no I/O): charts, index.yaml, provenance.

Everything here runs in worker threads (charts and 20 MB indexes are parsed off the event loop).
Scalars are read as strings (no YAML timestamps or floats: `version: 1.10` stays "1.10"). The
index documents depot writes (hosted, proxy, group) are JSON, which is YAML that Helm reads and
which depot parses again a hundred times faster than YAML (a publish re-reads the hosted index,
a group merges its members'): an upstream's YAML is parsed once, when it is fetched.
"""
from __future__ import annotations

import gzip
import io
import json
import re
import tarfile
from datetime import datetime, timezone
from typing import Any, Iterable
from urllib.parse import urljoin, urlsplit, urlunsplit

import yaml

MAX_CHART_YAML = 1 * 2**20
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
SEMVER = re.compile(r"^v?\d+(\.\d+){0,2}(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$")
# fields of Chart.yaml that an index entry carries (helm's ChartVersion embeds the metadata)
CHART_FIELDS = ("apiVersion", "name", "version", "kubeVersion", "description", "type", "keywords", "home",
                "sources", "dependencies", "maintainers", "icon", "appVersion", "deprecated", "annotations")


class BadChart(ValueError):
    """A chart, index or provenance file that cannot be used (rendered as a 400)."""


class _StringLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """Safe YAML where scalars stay strings except booleans and null."""


_StringLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag.endswith((":bool", ":null"))]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}


def load_yaml(body: bytes | str) -> Any:
    """YAML (or JSON) with string scalars."""
    try:
        return yaml.load(body, Loader=_StringLoader)
    except yaml.YAMLError as exc:
        raise BadChart(f"not valid YAML: {str(exc).splitlines()[0]}") from None


def now_rfc3339() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# ---------------------------------------------------------------- charts

def chart_metadata(data: bytes) -> dict[str, Any]:
    """Chart.yaml of a packaged chart (a .tgz with `<chart>/Chart.yaml`), checked."""
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            chart_yaml, requirements = _chart_files(tar)
    except (tarfile.TarError, OSError, EOFError, gzip.BadGzipFile) as exc:
        raise BadChart(f"not a chart archive (.tgz): {exc}") from None
    meta = load_yaml(chart_yaml)
    if not isinstance(meta, dict):
        raise BadChart("Chart.yaml is not a mapping")
    for key in ("apiVersion", "name", "version"):
        if not isinstance(meta.get(key), str) or not meta[key]:
            raise BadChart(f"Chart.yaml has no {key}")
    if meta["apiVersion"] not in ("v1", "v2"):
        raise BadChart(f"Chart.yaml apiVersion {meta['apiVersion']!r} is not v1 or v2")
    if not NAME.match(meta["name"]):
        raise BadChart(f"chart name {meta['name']!r} is not valid")
    if not SEMVER.match(meta["version"]):
        raise BadChart(f"chart version {meta['version']!r} is not a semantic version")
    if requirements is not None and "dependencies" not in meta:
        deps = load_yaml(requirements)
        if isinstance(deps, dict) and isinstance(deps.get("dependencies"), list):
            meta["dependencies"] = deps["dependencies"]
    return {k: meta[k] for k in CHART_FIELDS if k in meta}


def _chart_files(tar: tarfile.TarFile) -> tuple[bytes, bytes | None]:
    """Chart.yaml (and a v1 requirements.yaml) from the chart's top directory."""
    found: dict[str, bytes] = {}
    top: str | None = None
    for member in tar:
        parts = member.name.lstrip("./").split("/")
        if top is None and parts and parts[0]:
            top = parts[0]
        if len(parts) == 2 and parts[0] == top and parts[1] in ("Chart.yaml", "requirements.yaml"):
            if not member.isfile() or member.size > MAX_CHART_YAML:
                raise BadChart(f"{member.name} is not a small regular file")
            handle = tar.extractfile(member)
            found[parts[1]] = handle.read() if handle else b""
    if "Chart.yaml" not in found:
        raise BadChart("no <chart>/Chart.yaml in the archive")
    return found["Chart.yaml"], found.get("requirements.yaml")


def chart_filename(name: str, version: str) -> str:
    return f"{name}-{version}.tgz"


def index_entry(meta: dict[str, Any], digest: str, url: str, created: str | None = None) -> dict[str, Any]:
    """One `entries.<name>[]` item of index.yaml."""
    return {**meta, "urls": [url], "created": created or now_rfc3339(), "digest": digest}


# ---------------------------------------------------------------- provenance

def prov_chart_file(prov: bytes) -> str:
    """The chart file a .prov (a PGP clear-signed Chart.yaml plus `files:`) is about."""
    text = prov.decode("utf-8", "replace")
    if "-----BEGIN PGP SIGNED MESSAGE-----" not in text or "-----BEGIN PGP SIGNATURE-----" not in text:
        raise BadChart("not a provenance file (no PGP clear-signed message)")
    body = text.split("-----BEGIN PGP SIGNATURE-----")[0]
    found = re.search(r"^files:\s*\n\s+['\"]?([^'\":\s]+\.tgz)['\"]?\s*:", body, re.MULTILINE)
    if not found or not NAME.match(found.group(1)):
        raise BadChart("the provenance file names no chart file (files: <chart>.tgz: sha256:…)")
    return found.group(1)


# ---------------------------------------------------------------- index documents

def parse_index(body: bytes) -> dict[str, Any]:
    """An index document (YAML or JSON), checked for the shape Helm needs."""
    if body[:1] == b"{":
        try:
            index = json.loads(body)
        except ValueError as exc:
            raise BadChart(f"index is not valid JSON: {exc}") from None
    else:
        index = load_yaml(body)
    if not isinstance(index, dict) or not isinstance(index.get("entries", {}), dict):
        raise BadChart("index has no entries mapping")
    entries = index.get("entries") or {}
    for name, versions in entries.items():
        if not isinstance(versions, list) or not all(isinstance(v, dict) for v in versions):
            raise BadChart(f"index entry {name!r} is not a list of chart versions")
    index["entries"] = entries
    return index


def empty_index() -> dict[str, Any]:
    return {"apiVersion": "v1", "entries": {}, "generated": now_rfc3339()}


def dump_json(index: dict[str, Any]) -> bytes:
    return json.dumps(index, separators=(",", ":")).encode()


def add_version(old: bytes | None, entry: dict[str, Any]) -> bytes:
    """The hosted index with `entry` added (replacing the same name and version)."""
    index = parse_index(old) if old else empty_index()
    versions = [v for v in index["entries"].get(entry["name"], []) if v.get("version") != entry["version"]]
    index["entries"][entry["name"]] = [entry, *versions]
    index["generated"] = now_rfc3339()
    return dump_json(index)


def remove_chart(old: bytes | None, filename: str) -> bytes | None:
    """The hosted index without the version packaged as `filename`; None when it was not there."""
    if not old:
        return None
    index = parse_index(old)
    for name, versions in list(index["entries"].items()):
        kept = [v for v in versions if chart_filename(name, str(v.get("version"))) != filename]
        if len(kept) == len(versions):
            continue
        if kept:
            index["entries"][name] = kept
        else:
            index["entries"].pop(name)
        index["generated"] = now_rfc3339()
        return dump_json(index)
    return None


def _without_userinfo(url: str) -> str:
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def rewrite_proxy_index(body: bytes, upstream: str, base: str) -> bytes:
    """The upstream's index with every chart at `<base>/charts/<name>-<version>.tgz`, the original
    (absolute) URL kept as the second mirror URL (where depot fetches it), digests untouched."""
    index = parse_index(body)
    origin = _without_userinfo(upstream.rstrip("/")) + "/index.yaml"
    for name, versions in list(index["entries"].items()):
        kept = []
        for cv in versions:
            urls, version = cv.get("urls") or [], cv.get("version")
            if not urls or not isinstance(urls[0], str) or not isinstance(version, str) \
                    or not NAME.match(name) or not SEMVER.match(version):
                continue                       # Helm could not use it either
            source = urljoin(origin, urls[0])
            cv["urls"] = [f"{base}/charts/{chart_filename(name, version)}", source]
            kept.append(cv)
        index["entries"][name] = kept
    return dump_json(index)


def chart_sources(index: dict[str, Any]) -> dict[str, tuple[str, str | None]]:
    """`<name>-<version>.tgz` -> (URL depot fetches, sha256 promised) of a rewritten proxy index."""
    sources: dict[str, tuple[str, str | None]] = {}
    for name, versions in index["entries"].items():
        for cv in versions:
            urls = cv.get("urls") or []
            if len(urls) >= 2:
                digest = cv.get("digest")
                ok = isinstance(digest, str) and re.fullmatch(r"[0-9a-f]{64}", digest)
                sources[chart_filename(name, cv["version"])] = (urls[1], digest if ok else None)
    return sources


def merge_indexes(indexes: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """One index from several (a group): the first member that has a version wins."""
    merged = empty_index()
    for index in indexes:
        for name, versions in index["entries"].items():
            have = merged["entries"].setdefault(name, [])
            seen = {v.get("version") for v in have}
            have.extend(v for v in versions if v.get("version") not in seen)
    return merged
