"""CocoaPods CDN source documents: the md5 shard of a pod name, version shards, podspec checks
and the rewrite of a podspec's `source.http` to depot."""
from __future__ import annotations

import hashlib
import json
import re
from typing import Any
from urllib.parse import urlsplit

from .terraform_modules import version_key

POD = r"[A-Za-z0-9_+][A-Za-z0-9_+.-]*"
VERSION = r"[0-9][0-9A-Za-z.+-]*"
SHARD_FILE = re.compile(r"all_pods_versions_([0-9a-f])_([0-9a-f])_([0-9a-f])\.txt")
SPEC = re.compile(rf"Specs/([0-9a-f])/([0-9a-f])/([0-9a-f])/(?P<pod>{POD})/(?P<version>{VERSION})"
                  r"/(?P=pod)\.podspec\.json")
ARCHIVE = re.compile(rf"pods/(?P<pod>{POD})/(?P<version>{VERSION})/(?P<file>[^/]+\.(?:tar\.gz|tgz|zip))")
VERSION_YML = "min: 1.0.0\nlast: 1.16.2\nprefix_lengths:\n- 1\n- 1\n- 1\n"


def shard(pod: str) -> tuple[str, str, str]:
    """The CDN shard of a pod: the first three hex digits of md5(name)."""
    digest = hashlib.md5(pod.encode()).hexdigest()   # noqa: S324 (the CDN's layout)
    return digest[0], digest[1], digest[2]


def spec_path(pod: str, version: str) -> str:
    return "Specs/{}/{}/{}/{pod}/{version}/{pod}.podspec.json".format(*shard(pod), pod=pod, version=version)


def shard_path(pod: str) -> str:
    return "all_pods_versions_{}_{}_{}.txt".format(*shard(pod))


def parse_shard(body: bytes) -> dict[str, list[str]]:
    """Lines `Pod/1.0.0/1.1.0` -> {pod: [versions]}."""
    out: dict[str, list[str]] = {}
    for line in body.decode("utf-8", "replace").splitlines():
        parts = [p for p in line.strip().split("/") if p]
        if parts:
            out.setdefault(parts[0], []).extend(v for v in parts[1:] if v not in out.get(parts[0], []))
    return out


def dump_shard(pods: dict[str, list[str]]) -> bytes:
    return "".join("/".join([pod, *sorted(set(versions), key=version_key)]) + "\n"
                   for pod, versions in sorted(pods.items())).encode()


def add_version(old: bytes | None, pod: str, version: str) -> bytes:
    pods = parse_shard(old or b"")
    pods.setdefault(pod, [])
    if version not in pods[pod]:
        pods[pod].append(version)
    return dump_shard(pods)


def check_podspec(body: bytes) -> dict[str, Any]:
    """A podspec JSON object with a valid name and version; ValueError otherwise."""
    try:
        spec = json.loads(body)
    except ValueError as exc:
        raise ValueError(f"the podspec is not JSON: {exc}") from None
    if not isinstance(spec, dict):
        raise ValueError("the podspec is not a JSON object")
    if not re.fullmatch(POD, str(spec.get("name", ""))):
        raise ValueError(f"podspec name {spec.get('name')!r} is not valid")
    if not re.fullmatch(VERSION, str(spec.get("version", ""))):
        raise ValueError(f"podspec version {spec.get('version')!r} is not valid")
    return spec


def http_source(spec: dict[str, Any]) -> str | None:
    """The podspec's HTTP archive URL, or None (git and other sources)."""
    source = spec.get("source")
    url = source.get("http") if isinstance(source, dict) else None
    return url if isinstance(url, str) and url.startswith(("http://", "https://")) else None


def archive_name(url: str) -> str:
    name = urlsplit(url).path.rsplit("/", 1)[-1]
    return name if re.fullmatch(r"[^/]+\.(?:tar\.gz|tgz|zip)", name) else name + ".zip"


def rewrite_podspec(body: bytes, base: str) -> bytes:
    """The podspec with an HTTP archive source at depot (`<base>/pods/<Pod>/<version>/<file>`);
    git sources stay as they are (depot cannot cache them)."""
    spec = json.loads(body)
    url = http_source(spec)
    if url is None:
        return body
    spec["source"] = {**spec["source"],
                      "http": f"{base}/pods/{spec['name']}/{spec['version']}/{archive_name(url)}"}
    return json.dumps(spec, indent=2).encode()
