"""`depot warm` planners for the lockfiles of Puppet (Puppetfile), Hex (rebar.lock), Chef
(Berksfile.lock) and CocoaPods (Podfile.lock): every locked version's archive (pure, no I/O)."""
from __future__ import annotations

import hashlib
import json
import re
from urllib.parse import quote

from .warm_plans import Job

_PUPPET_MOD = re.compile(r"""^\s*mod\s+['"](?P<slug>[A-Za-z0-9]+[-/][a-z][a-z0-9_]*)['"]\s*,\s*['"]"""
                         r"""(?P<version>\d+\.\d+\.\d+[^'"]*)['"]""", re.MULTILINE)
_REBAR_PKG = re.compile(r'\{pkg,\s*<<"(?P<name>[a-z][a-z0-9_]*)">>,\s*<<"(?P<version>[^"]+)">>')
_BERKS_GRAPH = re.compile(r"^  (?P<name>[A-Za-z0-9][A-Za-z0-9_.-]*) \((?P<version>\d+\.\d+(?:\.\d+)?)\)$",
                          re.MULTILINE)
_POD = re.compile(r"^  - (?P<name>[A-Za-z0-9_+][A-Za-z0-9_+.-]*)(?:/[^ ]+)? \((?P<version>[^)]+)\)", re.MULTILINE)


def plan_puppetfile(mount: str, text: str) -> tuple[list[Job], list[str]]:
    """Modules pinned to a version in a Puppetfile (`mod 'owner-name', '1.2.3'`)."""
    jobs = [Job(f"{mount}/v3/files/{m['slug'].replace('/', '-')}-{quote(m['version'])}.tar.gz")
            for m in _PUPPET_MOD.finditer(text)]
    return jobs, [] if jobs else ["no module pinned to a version (mod 'owner-name', 'x.y.z') in the Puppetfile"]


def plan_rebar_lock(mount: str, text: str) -> tuple[list[Job], list[str]]:
    """Hex packages of a rebar.lock: each one's registry document and tarball."""
    jobs: list[Job] = []
    for name, version in dict.fromkeys((m["name"], m["version"]) for m in _REBAR_PKG.finditer(text)):
        jobs += [Job(f"{mount}/packages/{name}"), Job(f"{mount}/tarballs/{name}-{quote(version)}.tar")]
    return jobs, [] if jobs else ["no Hex package in the rebar.lock"]


def plan_berksfile_lock(mount: str, text: str) -> tuple[list[Job], list[str]]:
    """Cookbooks of a Berksfile.lock's GRAPH section."""
    graph = text.split("GRAPH", 1)[1] if "GRAPH" in text else ""
    jobs = [Job(f"{mount}/files/{m['name']}/{m['name']}-{quote(m['version'])}.tar.gz")
            for m in _BERKS_GRAPH.finditer(graph)]
    return jobs, [] if jobs else ["no cookbook in the Berksfile.lock GRAPH section"]


def plan_podfile_lock(mount: str, text: str) -> tuple[list[Job], list[str]]:
    """Pods of a Podfile.lock: each podspec, then the HTTP archive it names (git sources cannot be warmed)."""
    pods = text.split("DEPENDENCIES:", 1)[0]
    seen = dict.fromkeys((m["name"], m["version"]) for m in _POD.finditer(pods))
    jobs = []
    for name, version in seen:
        digest = hashlib.md5(name.encode()).hexdigest()   # noqa: S324 (the CDN's layout)
        jobs.append(Job(f"{mount}/Specs/{digest[0]}/{digest[1]}/{digest[2]}/{name}/{quote(version)}/{name}"
                        ".podspec.json", then=_pod_archive))
    return jobs, [] if jobs else ["no pod in the Podfile.lock"]


def _pod_archive(body: bytes, url: str) -> list[Job]:
    source = json.loads(body).get("source") or {}
    http = source.get("http") if isinstance(source, dict) else None
    return [Job(http)] if isinstance(http, str) else []
