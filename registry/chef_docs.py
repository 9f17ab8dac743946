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
