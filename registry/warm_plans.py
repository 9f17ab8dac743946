"""What `depot warm` fetches: parsing lockfiles and lists into GET jobs (pure, no I/O).

A Job is one URL; `then(body, url)` turns its answer into further jobs (a PyPI project page
into the files of the pinned version, an npm packument into a tarball, an OCI index into its
manifests). Every URL is under the repository's mount, so depot answers it like a client.
"""
from __future__ import annotations

import html.parser
import json
import re
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Callable, Iterator
from urllib.parse import quote, urldefrag, urljoin


if TYPE_CHECKING:
    from packaging.version import Version

PYPI_JSON = "application/vnd.pypi.simple.v1+json"
NPM_CORGI = "application/vnd.npm.install-v1+json; q=1.0, application/json; q=0.8, */*"
OCI_ACCEPT = ", ".join((
    "application/vnd.oci.image.index.v1+json", "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json"))
NPM_LOCKS = ("package-lock.json", "npm-shrinkwrap.json")


class PlanError(ValueError):
    """FILE cannot be warmed into REPO (the message says why)."""


@dataclass
class Job:
    url: str
    accept: str | None = None
    then: Callable[[bytes, str], list["Job"]] | None = None


def detect(filename: str, text: str, repo_format: str) -> str:
    """requirements | npm | go | images | paths, from the file's name and the repository's format."""
    if filename in NPM_LOCKS or (text.lstrip().startswith("{") and '"lockfileVersion"' in text):
        return "npm"
    if filename == "go.sum":
        return "go"
    return {"pypi": "requirements", "npm": "npm", "go": "go", "oci": "images"}.get(repo_format, "paths")


def plan(kind: str, mount: str, text: str, platform: Any = None) -> tuple[list[Job], list[str]]:
    """The first jobs for a file of `kind`, and notes about lines that were skipped. `platform`
    (registry.npm_platform.Platform, None: every platform) selects npm's optional binaries."""
    if kind == "npm":
        return plan_npm(mount, text, platform)
    planner = {"requirements": plan_requirements, "go": plan_go,
               "images": plan_images, "paths": plan_paths}[kind]
    return planner(mount, text)


def _lines(text: str) -> Iterator[str]:
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if line:
            yield line


# ----------------------------------------------------------------------------- paths

def plan_paths(mount: str, text: str) -> tuple[list[Job], list[str]]:
    """One GET per listed path (relative to the repository)."""
    return [Job(f"{mount}/{quote(line.lstrip('/'), safe='/~')}") for line in _lines(text)], []


# ------------------------------------------------------------------------------ pypi

def pinned_requirements(text: str) -> tuple[list[tuple[str, str]], list[str]]:
    """(normalised name, version) for every `name==version` line; notes for the rest."""
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name
    pins, notes = [], []
    for line in _lines(text.replace("\\\n", " ")):
        if line.startswith("-"):
            notes.append(f"option line ignored: {line.split()[0]}")
            continue
        spec = re.sub(r"\s--hash[=\s]\S+", "", " " + line).strip()
        try:
            req = Requirement(spec)
        except InvalidRequirement:
            notes.append(f"not a requirement, skipped: {line}")
            continue
        exact = [s for s in req.specifier if s.operator in ("==", "===") and "*" not in s.version]
        if len(exact) != 1 or req.url:
            notes.append(f"not pinned with ==, skipped: {line}")
            continue
        pins.append((str(canonicalize_name(req.name)), exact[0].version))
    return pins, notes


def plan_requirements(mount: str, text: str) -> tuple[list[Job], list[str]]:
    pins, notes = pinned_requirements(text)
    return [Job(f"{mount}/simple/{name}/", PYPI_JSON, partial(pypi_files, version))
            for name, version in pins], notes


class _Anchors(html.parser.HTMLParser):
    """<a href> links of a PEP 503 page with their data-* attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[dict[str, Any]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            found = dict(attrs)
            if found.get("href"):
                self.links.append(found)


def _page_files(body: bytes) -> list[tuple[str, str, bool]]:
    """(filename, href, has core metadata) from a PEP 691 JSON or PEP 503 HTML page."""
    text = body.decode("utf-8", "replace")
    if text.lstrip().startswith("{"):
        doc = json.loads(text)
        return [(f["filename"], f["url"], bool(f.get("core-metadata") or f.get("dist-info-metadata")))
                for f in doc.get("files", [])]
    parser = _Anchors()
    parser.feed(text)
    return [(urldefrag(a["href"])[0].rsplit("/", 1)[-1], a["href"],
             a.get("data-core-metadata", a.get("data-dist-info-metadata", "false")) not in ("false", None))
            for a in parser.links]


def _version_of(filename: str) -> "Version | str | None":
    from packaging.utils import (InvalidSdistFilename, InvalidWheelFilename, parse_sdist_filename,
                                 parse_wheel_filename)
    from packaging.version import InvalidVersion
    try:
        if filename.endswith(".whl"):
            return parse_wheel_filename(filename)[1]
        if filename.endswith((".tar.gz", ".zip")):
            return parse_sdist_filename(filename)[1]
    except (InvalidWheelFilename, InvalidSdistFilename, InvalidVersion):
        return None
    return None


def pypi_files(version: str, body: bytes, page_url: str) -> list[Job]:
    """Every file of `version` on a project page, and its PEP 658 metadata when announced."""
    from packaging.version import InvalidVersion, Version
    try:
        wanted: Version | str = Version(version)
    except InvalidVersion:
        wanted = version
    jobs = []
    for filename, href, metadata in _page_files(body):
        if _version_of(filename) != wanted:
            continue
        url = urldefrag(urljoin(page_url, href))[0]
        jobs.append(Job(url))
        if metadata:
            jobs.append(Job(url + ".metadata"))
    if not jobs:
        raise ValueError(f"no files of version {version}")
    return jobs


# ------------------------------------------------------------------------------- npm

def npm_lock_entries(lock: dict[str, Any], platform: Any = None,
                     skipped: list[str] | None = None) -> Iterator[tuple[str, str, str | None]]:
    """(name, version, resolved) of every registry package a v1/v2/v3 lockfile installs; with a
    `platform`, packages whose os/cpu/libc exclude it are left out (named in `skipped`)."""
    packages = lock.get("packages")
    if isinstance(packages, dict):
        for key, entry in packages.items():
            if not key or not isinstance(entry, dict) or entry.get("link") or entry.get("inBundle"):
                continue
            if platform is not None and not platform.accepts(entry):
                if skipped is not None:
                    skipped.append(key.rsplit("node_modules/", 1)[-1])
                continue
            name = entry.get("name") or key.rsplit("node_modules/", 1)[-1]
            if entry.get("version"):
                yield name, entry["version"], entry.get("resolved")
        return
    stack = [lock.get("dependencies") or {}]
    while stack:                                    # lockfile v1: nested "dependencies"
        for name, entry in stack.pop().items():
            if isinstance(entry, dict) and entry.get("version") and not entry.get("bundled"):
                yield name, entry["version"], entry.get("resolved")
                stack.append(entry.get("dependencies") or {})


def _registry_tarball(resolved: str | None) -> str | None:
    """The tarball file name of a registry `resolved` URL (None for git, file:, links)."""
    if not resolved or "/-/" not in resolved or not resolved.startswith(("http://", "https://")):
        return None
    return resolved.rsplit("/-/", 1)[1].split("?")[0].split("#")[0]


def plan_npm(mount: str, text: str, platform: Any = None) -> tuple[list[Job], list[str]]:
    """The packument of every package (as npm asks for it) and every tarball; with a `platform`,
    only the optional binaries npm would install there."""
    try:
        lock = json.loads(text)
    except ValueError as exc:
        raise PlanError(f"not a JSON lockfile: {exc}") from None
    versions: dict[str, set[str]] = {}
    jobs, notes = [], []
    skipped: list[str] = []
    entries = list(npm_lock_entries(lock, platform, skipped))
    if skipped:
        notes.append(f"{len(skipped)} packages for other platforms than {platform} skipped "
                     f"(--all-platforms to include them): {', '.join(sorted(skipped)[:5])}"
                     + (", …" if len(skipped) > 5 else ""))
    for name, version, resolved in entries:
        if resolved and not resolved.startswith(("http://", "https://")):
            notes.append(f"not from a registry, skipped: {name} ({resolved})")
            continue
        missing = versions.setdefault(name, set())     # every package's packument is fetched
        filename = _registry_tarball(resolved)
        if filename:
            jobs.append(Job(f"{mount}/{name}/-/{quote(filename)}"))
        else:
            missing.add(version)                       # its tarball is found through the packument
    for name, missing in versions.items():
        encoded = name.replace("/", "%2f")
        jobs.append(Job(f"{mount}/{encoded}", NPM_CORGI, partial(npm_tarballs, mount, name, sorted(missing))))
    return jobs, notes


def npm_tarballs(mount: str, name: str, wanted: list[str], body: bytes, _url: str) -> list[Job]:
    """Tarballs of `wanted` versions, located through the (rewritten) packument."""
    doc = json.loads(body)
    jobs = []
    for version in wanted:
        manifest = (doc.get("versions") or {}).get(version)
        if manifest is None:
            raise ValueError(f"{name}@{version} is not in the packument")
        tarball = (manifest.get("dist") or {}).get("tarball") or ""
        if not tarball.startswith(mount + "/"):
            tarball = f"{mount}/{name}/-/{name.rsplit('/', 1)[-1]}-{version}.tgz"
        jobs.append(Job(tarball))
    return jobs


# -------------------------------------------------------------------------------- go

def go_escape(text: str) -> str:
    """Module proxy case encoding: 'Azure/x' -> '!azure/x'."""
    return re.sub(r"[A-Z]", lambda m: "!" + m.group(0).lower(), text)


def plan_go(mount: str, text: str) -> tuple[list[Job], list[str]]:
    """`.info`, `.mod`, `.zip` of every module version (`.mod` only for `/go.mod` lines)."""
    jobs, notes = [], []
    for line in _lines(text):
        parts = line.split()
        if len(parts) != 3 or not parts[2].startswith("h1:"):
            notes.append(f"not a go.sum line, skipped: {line}")
            continue
        module, version = go_escape(parts[0]), parts[1]
        if version.endswith("/go.mod"):
            jobs.append(Job(f"{mount}/{module}/@v/{go_escape(version[:-7])}.mod"))
            continue
        for suffix in (".info", ".mod", ".zip"):
            jobs.append(Job(f"{mount}/{module}/@v/{go_escape(version)}{suffix}"))
    return jobs, notes


# ------------------------------------------------------------------------------- oci

def parse_image(ref: str) -> tuple[str, str]:
    """'lib/alpine:3.19' -> ('lib/alpine', '3.19'); 'x@sha256:…' -> ('x', 'sha256:…')."""
    if "@" in ref:
        name, _, reference = ref.partition("@")
        return name, reference
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon > slash:
        return ref[:colon], ref[colon + 1:]
    return ref, "latest"


def plan_images(mount: str, text: str) -> tuple[list[Job], list[str]]:
    """Manifests (and, through them, configs and layers) of every image reference."""
    base, _, repo = mount.rpartition("/")
    jobs = []
    for line in _lines(text):
        name, reference = parse_image(line.split()[0])
        prefix = f"{base}/v2/{repo}/{name}"
        jobs.append(Job(f"{prefix}/manifests/{reference}", OCI_ACCEPT, partial(oci_children, prefix)))
    return jobs, []


def oci_children(prefix: str, body: bytes, _url: str) -> list[Job]:
    """An index names manifests; a manifest names its config and layers."""
    doc = json.loads(body)
    jobs = [Job(f"{prefix}/manifests/{m['digest']}", OCI_ACCEPT, partial(oci_children, prefix))
            for m in doc.get("manifests") or []]
    for blob in [doc.get("config") or {}, *(doc.get("layers") or [])]:
        if blob.get("digest"):
            jobs.append(Job(f"{prefix}/blobs/{blob['digest']}"))
    return jobs
