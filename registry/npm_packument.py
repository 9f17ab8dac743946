"""npm packuments as pure functions: rewrite, abbreviate, merge, and the hosted document.

No I/O and no aiohttp here. Upstream documents are parsed and rewritten once, at fill
time (`transform_packument`, called by the engine in a worker thread); large ones are
handed to a child process (`offload`) so that a 50 MB parse never holds the server's GIL.

Hosted documents are stored with `dist.tarball` relative (the tarball's file name) and
made absolute when rendered, so the stored bytes never depend on the public URL.
"""
from __future__ import annotations

import atexit
import base64
import concurrent.futures
import hashlib
import json
import multiprocessing
import re
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable
from urllib.parse import quote, unquote, urljoin, urlsplit

ABBREVIATED_TYPE = "application/vnd.npm.install-v1+json"
JSON_TYPE = "application/json"

# The fields a corgi (abbreviated) version keeps; everything else is only in the full document.
CORGI_VERSION_FIELDS = (
    "name", "version", "deprecated", "dependencies", "optionalDependencies", "devDependencies",
    "bundleDependencies", "peerDependencies", "peerDependenciesMeta", "acceptDependencies",
    "bin", "directories", "engines", "os", "cpu", "libc", "funding", "license",
    "_hasShrinkwrap", "hasInstallScript", "dist",
)
INSTALL_SCRIPTS = ("preinstall", "install", "postinstall")

# Names as they may appear in requests and upstream documents (legacy names included:
# upper case, some punctuation). Publishing uses the stricter rule in npm_publish.
READ_NAME = re.compile(r"^(?:@[A-Za-z0-9._~-]+/)?[A-Za-z0-9._~-][A-Za-z0-9._~!()*'-]*$")
TARBALL_FILE = re.compile(r"^[A-Za-z0-9._~!()*'+-]+\.tgz$")

OFFLOAD_THRESHOLD = 4 * 2**20      # bytes of JSON above which parsing goes to a child process


# ----------------------------------------------------------------------------- names and URLs

def parse_name(raw: str) -> str | None:
    """Normalise a package name from a request path (`@s%2fa`, `@s/a`, `a`); None if invalid."""
    name = unquote(raw)
    if len(name) > 214 or not READ_NAME.match(name) or name in (".", ".."):
        return None
    bare = name.rsplit("/", 1)[-1]
    if bare in (".", "..") or name.startswith("@.") or "/." == name[-2:]:
        return None
    return name


def bare_name(name: str) -> str:
    """`@scope/a` -> `a`; `a` -> `a`."""
    return name.rsplit("/", 1)[-1]


def tarball_filename(name: str, version: str) -> str:
    """The registry's tarball file name: `<unscoped-name>-<version>.tgz`."""
    return f"{bare_name(name)}-{version}.tgz"


def escaped_name(name: str) -> str:
    """The name as npm puts it in a URL path (`@scope%2fname`)."""
    return quote(name, safe="@")


def tarball_url(base_url: str, name: str, filename: str) -> str:
    """`{base}/<name>/-/<file>` (a scoped name keeps its slash, as the public registry does)."""
    return f"{base_url.rstrip('/')}/{name}/-/{filename}"


def tarball_basename(url: str) -> str | None:
    """The file name at the end of a tarball URL, or None if it is not a plausible `.tgz`."""
    path = urlsplit(url).path if "://" in url else url
    filename = unquote(path.rsplit("/", 1)[-1])
    return filename if TARBALL_FILE.match(filename) else None


def wants_abbreviated(accept: str | None) -> bool:
    """True when the client accepts the corgi document (npm install's Accept header)."""
    if not accept:
        return False
    for part in accept.split(","):
        fields = [f.strip() for f in part.split(";")]
        if fields[0].lower() != ABBREVIATED_TYPE:
            continue
        for param in fields[1:]:
            key, _, value = param.partition("=")
            if key.strip() == "q":
                try:
                    return float(value) > 0
                except ValueError:
                    return False
        return True
    return False


# ----------------------------------------------------------------------------- semver ordering

_SEMVER = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$")


def semver_key(version: str) -> tuple[Any, ...]:
    """A sort key ordering versions as semver does; unparseable versions sort first."""
    found = _SEMVER.match(version)
    if not found:
        return (0, (), 0, ())
    major, minor, patch, pre = found.groups()
    core = (int(major), int(minor), int(patch))
    if pre is None:
        return (1, core, 1, ())
    parts = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre.split("."))
    return (1, core, 0, parts)


def is_prerelease(version: str) -> bool:
    found = _SEMVER.match(version)
    return bool(found and found.group(4))


def highest_version(versions: Iterable[str], stable_first: bool = True) -> str | None:
    """The highest version, preferring releases over pre-releases when `stable_first`."""
    ordered = sorted(versions, key=semver_key)
    if stable_first:
        stable = [v for v in ordered if not is_prerelease(v)]
        if stable:
            return stable[-1]
    return ordered[-1] if ordered else None


# ----------------------------------------------------------------------------- upstream documents

def rewrite_tarballs(doc: dict[str, Any], base_url: str, name: str) -> dict[str, Any]:
    """Point every `versions.*.dist.tarball` at depot (`{base}/<name>/-/<file>`), in place."""
    versions = doc.get("versions")
    if not isinstance(versions, dict):
        return doc
    for manifest in versions.values():
        dist = manifest.get("dist") if isinstance(manifest, dict) else None
        if not isinstance(dist, dict) or not isinstance(dist.get("tarball"), str):
            continue
        filename = tarball_basename(dist["tarball"])
        if filename:
            dist["tarball"] = tarball_url(base_url, name, filename)
    return doc


def abbreviate(doc: dict[str, Any]) -> dict[str, Any]:
    """The corgi document: `{name, modified, dist-tags, versions}` with install fields only."""
    versions: dict[str, Any] = {}
    for version, manifest in (doc.get("versions") or {}).items():
        if not isinstance(manifest, dict):
            continue
        small = {k: manifest[k] for k in CORGI_VERSION_FIELDS if k in manifest}
        scripts = manifest.get("scripts")
        if "hasInstallScript" not in small and isinstance(scripts, dict) \
                and any(s in scripts for s in INSTALL_SCRIPTS):
            small["hasInstallScript"] = True
        versions[version] = small
    modified = doc.get("modified") or (doc.get("time") or {}).get("modified")
    out: dict[str, Any] = {"name": doc.get("name"), "dist-tags": doc.get("dist-tags") or {},
                           "versions": versions}
    if modified:
        out["modified"] = modified
    return out


def dumps(doc: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON, the form depot stores and serves."""
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


def loads(body: bytes) -> dict[str, Any]:
    """Parse a packument; ValueError if it is not a JSON object."""
    try:
        doc = json.loads(body)
    except RecursionError:
        raise ValueError("a packument nested too deeply") from None
    if not isinstance(doc, dict):
        raise ValueError("a packument must be a JSON object")
    return doc


def _transform(body: bytes, base_url: str, name: str, abbreviated: bool) -> bytes:
    doc = rewrite_tarballs(loads(body), base_url, name)
    doc.pop("_rev", None)
    return dumps(abbreviate(doc) if abbreviated else doc)


def transform_packument(body: bytes, base_url: str, name: str, abbreviated: bool) -> bytes:
    """The fill-time transform of an upstream packument: rewrite tarballs, maybe abbreviate."""
    return offload(_transform, body, base_url, name, abbreviated)


def _index(body: bytes) -> dict[str, dict[str, str]]:
    return _index_of(loads(body))


def _index_of(doc: dict[str, Any]) -> dict[str, dict[str, str]]:
    index: dict[str, dict[str, str]] = {}
    for version, manifest in (doc.get("versions") or {}).items():
        dist = manifest.get("dist") if isinstance(manifest, dict) else None
        if not isinstance(dist, dict) or not isinstance(dist.get("tarball"), str):
            continue
        filename = tarball_basename(dist["tarball"])
        if filename:
            entry = {"version": version, "url": dist["tarball"]}
            for key in ("integrity", "shasum"):
                if isinstance(dist.get(key), str):
                    entry[key] = dist[key]
            index[filename] = entry
    return index


def tarball_index(body: bytes) -> dict[str, dict[str, str]]:
    """`{file: {version, url, integrity?, shasum?}}` for every version of a packument.

    Blocking (a child process for large documents): call from a worker thread.
    """
    return offload(_index, body)


# ----------------------------------------------------------------------------- proxied documents
#
# A proxy stores ONE document per package and upstream: the full packument, with its tarball
# URLs pointing at BASE_MARK, preceded by one line of JSON, the tarball index (file -> version,
# integrity, shasum, absolute upstream URL). Clients get it rendered: abbreviated when asked
# and with BASE_MARK replaced by their public base URL, so neither the variant nor the Host
# is part of the cache key, and the index that verifies tarballs lives as long as the document.

BASE_MARK = "http://depot.invalid/-depot-base-"
_MARK = BASE_MARK.encode()


def _store_proxied(body: bytes, name: str, packument_url: str) -> bytes:
    doc = loads(body)
    index = _index_of(doc)
    for entry in index.values():
        entry["url"] = urljoin(packument_url, entry["url"])
    doc = rewrite_tarballs(doc, BASE_MARK, name)
    doc.pop("_rev", None)
    return json.dumps(index, separators=(",", ":")).encode() + b"\n" + dumps(doc)


def store_proxied(body: bytes, name: str, packument_url: str) -> bytes:
    """The fill-time transform of an upstream packument: index line + rewritten full document.

    Blocking (a child process for large documents): the engine calls it from a worker thread.
    """
    return offload(_store_proxied, body, name, packument_url)


def stored_index(stored: bytes) -> dict[str, dict[str, str]]:
    """The tarball index line of a stored proxied document."""
    return json.loads(stored[:stored.index(b"\n")])


def _render_proxied(stored: bytes, base_url: str, abbreviated: bool) -> bytes:
    body = stored[stored.index(b"\n") + 1:]
    if abbreviated:
        body = dumps(abbreviate(loads(body)))
    return body.replace(_MARK, json.dumps(base_url.rstrip("/"))[1:-1].encode())


def render_proxied(stored: bytes, base_url: str, abbreviated: bool) -> bytes:
    """A stored proxied document as a client gets it (its own base URL, maybe abbreviated)."""
    if not abbreviated:                   # a byte substitution: cheap even for large documents
        return _render_proxied(stored, base_url, False)
    return offload(_render_proxied, stored, base_url, abbreviated)


# ----------------------------------------------------------------------------- groups

@dataclass(frozen=True)
class Source:
    """One member's rendered document, what identifies it (for ETags and merges), its status."""

    body: bytes
    token: str
    status: str                     # HIT | MISS | STALE | REVALIDATED
    hosted: bool = False


def x_cache(sources: list[Source]) -> str:
    """What a combined document reports: the worst of its members' cache statuses."""
    statuses = {s.status for s in sources}
    for status in ("STALE", "MISS", "REVALIDATED"):
        if status in statuses:
            return status
    return "HIT"


def merge_packuments(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """Merge members' documents in order: earlier members win versions, dist-tags and fields."""
    merged: dict[str, Any] = {}
    versions: dict[str, Any] = {}
    tags: dict[str, str] = {}
    times: dict[str, Any] = {}
    for doc in docs:
        for key, value in doc.items():
            if key not in ("versions", "dist-tags", "time", "_rev", "_attachments"):
                merged.setdefault(key, value)
        for version, manifest in (doc.get("versions") or {}).items():
            versions.setdefault(version, manifest)
        for tag, version in (doc.get("dist-tags") or {}).items():
            tags.setdefault(tag, version)
        for key, value in (doc.get("time") or {}).items():
            times.setdefault(key, value)
    merged["dist-tags"] = {t: v for t, v in tags.items() if v in versions}
    merged["versions"] = versions
    if times:
        merged["time"] = times
    modified = [str(d["modified"]) for d in docs if d.get("modified")]
    if modified:
        merged["modified"] = max(modified)
    return merged


def _merge(bodies: list[bytes]) -> bytes:
    return dumps(merge_packuments([loads(b) for b in bodies]))


def merge_bodies(bodies: list[bytes]) -> bytes:
    """Merge serialized member documents (already rewritten to the same base URL)."""
    if len(bodies) == 1:
        return bodies[0]
    return offload(_merge, bodies)


# ----------------------------------------------------------------------------- hosted documents

def iso_now(now: float | None = None) -> str:
    """An ISO 8601 UTC timestamp with milliseconds, as the registry writes them."""
    now = time.time() if now is None else now
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z"


def new_hosted(name: str, now: float | None = None) -> dict[str, Any]:
    """An empty hosted document for `name`."""
    stamp = iso_now(now)
    return {"_id": name, "name": name, "_rev": "0-0", "dist-tags": {}, "versions": {},
            "time": {"created": stamp, "modified": stamp}}


def next_rev(doc: dict[str, Any]) -> str:
    """The revision after the document's current one: `<n+1>-<hash of the content>`."""
    current = str(doc.get("_rev", "0-0"))
    number = int(current.split("-", 1)[0]) if current.split("-", 1)[0].isdigit() else 0
    body = dumps({k: v for k, v in doc.items() if k != "_rev"})
    return f"{number + 1}-{hashlib.sha256(body).hexdigest()[:32]}"


def touch(doc: dict[str, Any], now: float | None = None) -> dict[str, Any]:
    """Bump `_rev` and `time.modified` after a change; returns the document."""
    doc.setdefault("time", {})["modified"] = iso_now(now)
    doc["_rev"] = next_rev(doc)
    return doc


def add_version(doc: dict[str, Any], manifest: dict[str, Any], filename: str,
                tags: dict[str, str], now: float | None = None) -> dict[str, Any]:
    """Add a published version (tarball stored relative) and apply its dist-tags."""
    version = manifest["version"]
    stored = {k: v for k, v in manifest.items() if not k.startswith("_") or k in ("_id", "_hasShrinkwrap")}
    stored["_id"] = f"{doc['name']}@{version}"
    stored["dist"] = {**(manifest.get("dist") or {}), "tarball": filename}
    doc["versions"][version] = stored
    doc.setdefault("time", {})[version] = iso_now(now)
    for tag, target in tags.items():
        doc["dist-tags"][tag] = target
    for key in ("description", "readme", "keywords", "license", "homepage", "repository",
                "author", "maintainers", "bugs"):
        if key in manifest and (key != "readme" or manifest[key]):
            doc[key] = manifest[key]
    return touch(doc, now)


def remove_version(doc: dict[str, Any], version: str, now: float | None = None) -> str | None:
    """Drop a version and the tags naming it (re-pointing `latest`); returns its tarball file."""
    manifest = doc["versions"].pop(version, None)
    if manifest is None:
        return None
    doc.get("time", {}).pop(version, None)
    had_latest = doc["dist-tags"].get("latest") == version
    doc["dist-tags"] = {t: v for t, v in doc["dist-tags"].items() if v != version}
    if had_latest and doc["versions"]:
        doc["dist-tags"]["latest"] = highest_version(doc["versions"])
    touch(doc, now)
    return (manifest.get("dist") or {}).get("tarball")


def apply_update(doc: dict[str, Any], incoming: dict[str, Any],
                 now: float | None = None) -> list[str]:
    """Apply a metadata PUT (deprecate, unpublish-by-omission, dist-tags); returns removed versions.

    Only what npm's own commands change is accepted: a version may lose or gain its
    `deprecated` message or disappear; dist-tags are replaced. New versions need a publish.
    Raises ValueError on anything else.
    """
    new_versions = incoming.get("versions")
    new_tags = incoming.get("dist-tags", doc["dist-tags"])
    if not isinstance(new_versions, dict) or not isinstance(new_tags, dict):
        raise ValueError("versions and dist-tags must be objects")
    unknown = [v for v in new_versions if v not in doc["versions"]]
    if unknown:
        raise ValueError(f"cannot add version {unknown[0]} without its tarball; use npm publish")
    removed = [v for v in list(doc["versions"]) if v not in new_versions]
    for version in removed:
        remove_version(doc, version, now)
    for version, manifest in new_versions.items():
        message = manifest.get("deprecated") if isinstance(manifest, dict) else None
        if message:
            doc["versions"][version]["deprecated"] = str(message)
        else:
            doc["versions"][version].pop("deprecated", None)
    tags = {str(t): str(v) for t, v in new_tags.items() if v in doc["versions"]}
    if removed and "latest" not in tags and doc["versions"]:
        tags["latest"] = highest_version(doc["versions"]) or ""
    doc["dist-tags"] = tags
    touch(doc, now)
    return removed


def render_hosted(doc: dict[str, Any], base_url: str, abbreviated: bool) -> bytes:
    """Serialize a stored hosted document for clients: absolute tarball URLs, maybe corgi."""
    name = doc["name"]
    out = dict(doc)
    out["versions"] = {}
    for version, manifest in doc.get("versions", {}).items():
        dist = dict(manifest.get("dist") or {})
        if dist.get("tarball") and "://" not in dist["tarball"]:
            dist["tarball"] = tarball_url(base_url, name, dist["tarball"])
        out["versions"][version] = {**manifest, "dist": dist}
    out["modified"] = (doc.get("time") or {}).get("modified")
    if abbreviated:
        return dumps(abbreviate(out))
    out.pop("modified", None)
    return dumps(out)


def _render_stored(body: bytes, base_url: str, abbreviated: bool) -> bytes:
    return render_hosted(loads(body), base_url, abbreviated)


def render_stored(body: bytes, base_url: str, abbreviated: bool) -> bytes:
    """`render_hosted` of a stored (serialized) document; blocking, call from a thread."""
    return offload(_render_stored, body, base_url, abbreviated)


def version_document(doc: dict[str, Any], spec: str) -> dict[str, Any] | None:
    """`GET /<name>/<version|tag>`: one version's manifest from a (rendered) document."""
    version = (doc.get("dist-tags") or {}).get(spec, spec)
    manifest = (doc.get("versions") or {}).get(version)
    return manifest if isinstance(manifest, dict) else None


# ----------------------------------------------------------------------------- search

def search_object(doc: dict[str, Any]) -> dict[str, Any]:
    """One result of `/-/v1/search` for a hosted document."""
    latest = (doc.get("dist-tags") or {}).get("latest") or highest_version(doc.get("versions", {}))
    manifest = (doc.get("versions") or {}).get(latest or "", {})
    name = doc["name"]
    package: dict[str, Any] = {
        "name": name, "version": latest,
        "description": manifest.get("description") or doc.get("description") or "",
        "keywords": manifest.get("keywords") or [],
        "date": (doc.get("time") or {}).get(latest or "") or (doc.get("time") or {}).get("modified"),
        "links": {}, "publisher": {"username": "depot"},
        "maintainers": doc.get("maintainers") or [],
    }
    if name.startswith("@"):
        package["scope"] = name[1:].split("/", 1)[0]
    else:
        package["scope"] = "unscoped"
    score = {"final": 1.0, "detail": {"quality": 1.0, "popularity": 1.0, "maintenance": 1.0}}
    return {"package": package, "score": score, "searchScore": 1.0}


def search_matches(doc: dict[str, Any], text: str) -> bool:
    """Every word of `text` occurs in the name, description or keywords (case-insensitive)."""
    obj = search_object(doc)["package"]
    haystack = " ".join([obj["name"], str(obj["description"]),
                         " ".join(str(k) for k in obj["keywords"] or [])]).lower()
    return all(word in haystack for word in text.lower().split())


# ----------------------------------------------------------------------------- off-GIL parsing

def tarball_sri(info: dict[str, str]) -> str | None:
    """The integrity to verify a tarball against: SRI if given, else the sha1 shasum as SRI."""
    if info.get("integrity"):
        return info["integrity"]
    shasum = info.get("shasum")
    if shasum and len(shasum) == 40:
        return "sha1-" + base64.b64encode(bytes.fromhex(shasum)).decode()
    return None


def tarball_index_json(body: bytes, packument_url: str) -> bytes:
    """Fill-time transform of a proxy's index key: tarball file -> integrity and absolute URL."""
    index = tarball_index(body)
    for entry in index.values():
        if entry.get("url"):
            entry["url"] = urljoin(packument_url, entry["url"])
    return json.dumps(index, separators=(",", ":")).encode()



class _Offloader:
    """A lazily started child-process pool for parsing large JSON documents.

    json.loads/dumps of tens of megabytes hold the GIL for their whole run, which would
    stall the event loop even from a worker thread; in a child process they cannot.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None

    def pool(self) -> concurrent.futures.ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                context = multiprocessing.get_context("spawn")
                self._pool = concurrent.futures.ProcessPoolExecutor(max_workers=2, mp_context=context)
                atexit.register(self.close)
            return self._pool

    def close(self) -> None:
        """Stop the child processes (at exit, before the interpreter tears modules down)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def run(self, func: Callable[..., Any], *args: Any) -> Any:
        try:
            return self.pool().submit(func, *args).result()
        except concurrent.futures.process.BrokenProcessPool:
            with self._lock:
                self._pool = None
            return func(*args)


_OFFLOADER = _Offloader()


def offload(func: Callable[..., Any], body: bytes | list[bytes], *args: Any) -> Any:
    """Run `func(body, *args)` here for small bodies, in a child process for large ones."""
    size = len(body) if isinstance(body, bytes) else sum(len(b) for b in body)
    if size < OFFLOAD_THRESHOLD:
        return func(body, *args)
    return _OFFLOADER.run(func, body, *args)
