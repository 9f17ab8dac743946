"""Chef Supermarket documents: universe, cookbook and version JSON from cookbook metadata.json,
the check of an uploaded cookbook tarball, and the rewrite of an upstream universe."""
from __future__ import annotations

import json
import re
from typing import Any

from .tarball_meta import json_member
from .terraform_modules import version_key

NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]*"
VERSION = r"\d+(?:[._]\d+){1,2}"


def dotted(version: str) -> str:
    """Supermarket links write versions with '_' (1_2_3); the API means 1.2.3."""
    return version.replace("_", ".")


def cookbook_metadata(data: bytes) -> dict[str, Any]:
    """metadata.json of a cookbook tarball (`<name>/metadata.json`), checked; ValueError otherwise."""
    meta = json_member(data, ("metadata.json",))
    if meta is None:
        raise ValueError("the cookbook has no metadata.json (run `knife cookbook metadata` first)")
    if not re.fullmatch(NAME, str(meta.get("name", ""))):
        raise ValueError(f"metadata.json: name {meta.get('name')!r} is not valid")
    if not re.fullmatch(r"\d+\.\d+(\.\d+)?", str(meta.get("version", ""))):
        raise ValueError(f"metadata.json: version {meta.get('version')!r} is not x.y.z")
    deps = meta.get("dependencies", {})
    if not isinstance(deps, dict) or not all(isinstance(v, str) for v in deps.values()):
        raise ValueError("metadata.json: dependencies must map cookbook names to constraints")
    return meta


def universe_entry(base: str, name: str, version: str, deps: dict[str, str]) -> dict[str, Any]:
    return {"location_type": "opscode", "location_path": f"{base}/api/v1",
            "download_url": f"{base}/api/v1/cookbooks/{name}/versions/{version}/download", "dependencies": deps}


def rewrite_universe(body: bytes, base: str) -> bytes:
    """An upstream universe with every location at depot (blocking: run in a thread)."""
    universe = json.loads(body)
    if not isinstance(universe, dict):
        raise ValueError("the universe is not a JSON object")
    out: dict[str, dict[str, Any]] = {}
    for name, versions in universe.items():
        if not re.fullmatch(NAME, name) or not isinstance(versions, dict):
            continue
        out[name] = {v: universe_entry(base, name, v, (entry or {}).get("dependencies") or {})
                     for v, entry in versions.items() if re.fullmatch(VERSION, v) and isinstance(entry, dict)}
    return json.dumps(out).encode()


def merge_universes(universes: list[dict[str, Any]]) -> dict[str, Any]:
    """Members' universes, the first member having a version winning."""
    merged: dict[str, dict[str, Any]] = {}
    for universe in universes:
        for name, versions in universe.items():
            for version, entry in versions.items():
                merged.setdefault(name, {}).setdefault(version, entry)
    return merged


def version_doc(base: str, name: str, meta: dict[str, Any], size: int, published: str) -> dict[str, Any]:
    """/api/v1/cookbooks/<name>/versions/<v> as Supermarket answers it (`file` is what Berkshelf streams)."""
    version = meta["version"]
    return {"license": meta.get("license"), "tarball_file_size": size, "version": version,
            "average_rating": None, "cookbook": f"{base}/api/v1/cookbooks/{name}",
            "file": f"{base}/api/v1/cookbooks/{name}/versions/{version}/download",
            "dependencies": meta.get("dependencies") or {}, "platforms": meta.get("platforms") or {},
            "published_at": published}


def cookbook_doc(base: str, name: str, versions: list[tuple[str, dict[str, Any], str]]) -> dict[str, Any]:
    """/api/v1/cookbooks/<name> from (version, metadata, published_at), any order."""
    ordered = sorted(versions, key=lambda v: version_key(v[0]), reverse=True)
    latest = ordered[0][1]
    url = f"{base}/api/v1/cookbooks/{name}"
    return {"name": name, "maintainer": latest.get("maintainer"), "description": latest.get("description"),
            "category": "Other", "source_url": latest.get("source_url"), "issues_url": latest.get("issues_url"),
            "external_url": None, "average_rating": None, "deprecated": False,
            "latest_version": f"{url}/versions/{ordered[0][0]}",
            "versions": [f"{url}/versions/{v}" for v, _, _ in ordered],
            "created_at": ordered[-1][2], "updated_at": ordered[0][2], "up_for_adoption": None,
            "metrics": {"downloads": {"total": 0, "versions": {}}, "followers": 0}}


# ---------------------------------------------------------------- supply-chain policy (proxies)
COOKBOOK_DOC = re.compile(rf"api/v1/cookbooks/(?P<name>{NAME})")
VERSION_DOC = re.compile(rf"api/v1/cookbooks/(?P<name>{NAME})/versions/(?P<version>{VERSION})")


def offered_versions(path: str, body: bytes) -> list[tuple[str, str, Any]] | None:
    """(cookbook, version, published_at or None) a universe, cookbook or version document offers;
    None for other paths. Only version documents carry a publish time."""
    if path == "universe":
        universe = json.loads(body)
        return [(name, version, None) for name, versions in universe.items() for version in versions]
    found = VERSION_DOC.fullmatch(path)
    if found:
        return [(found["name"], dotted(found["version"]), json.loads(body).get("published_at"))]
    found = COOKBOOK_DOC.fullmatch(path)
    if found:
        doc = json.loads(body)
        return [(found["name"], dotted(str(url).rstrip("/").rsplit("/", 1)[-1]), None)
                for url in doc.get("versions") or []]
    return None


def without(path: str, body: bytes, hidden: frozenset[tuple[str, str]]) -> bytes:
    """A universe or cookbook document without the hidden (cookbook, version) pairs; the cookbook's
    latest_version moved to the newest version left."""
    doc = json.loads(body)
    if path == "universe":
        kept = {name: {v: e for v, e in versions.items() if (name, v) not in hidden} for name, versions in doc.items()}
        return json.dumps({name: versions for name, versions in kept.items() if versions}).encode()
    found = COOKBOOK_DOC.fullmatch(path)
    if not found:
        return body
    name = found["name"]
    urls = [u for u in doc.get("versions") or [] if (name, dotted(str(u).rstrip("/").rsplit("/", 1)[-1])) not in hidden]
    ordered = sorted(urls, key=lambda u: version_key(dotted(str(u).rstrip("/").rsplit("/", 1)[-1])), reverse=True)
    doc["versions"], doc["latest_version"] = ordered, ordered[0] if ordered else None
    return json.dumps(doc).encode()
