"""`depot warm` planners for Helm's Chart.lock and Terraform's .terraform.lock.hcl (pure, no I/O)."""
from __future__ import annotations

import json
import re
from urllib.parse import quote, urljoin

import yaml

from .warm_plans import Job, PlanError

HELM_LOCKS = ("Chart.lock", "requirements.lock")
TERRAFORM_LOCKS = (".terraform.lock.hcl",)
_PROVIDER = re.compile(r'provider\s+"(?P<addr>[^"]+)"\s*\{(?P<body>[^}]*)\}', re.DOTALL)
_VERSION = re.compile(r'^\s*version\s*=\s*"(?P<version>[^"]+)"', re.MULTILINE)


def plan_chart_lock(mount: str, text: str) -> tuple[list[Job], list[str]]:
    """One chart per locked dependency: `<repo>/charts/<name>-<version>.tgz` (a proxy looks it up
    in its upstream's index)."""
    try:
        lock = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise PlanError(f"not a Chart.lock: {exc}") from None
    jobs, notes = [], []
    for dep in lock.get("dependencies") or []:
        name, version = str(dep.get("name", "")), str(dep.get("version", ""))
        if not name or not version:
            notes.append(f"dependency without name or version skipped: {dep!r}")
        elif str(dep.get("repository", "")).startswith(("oci://", "file://", "@", "alias:")):
            notes.append(f"{name} {version}: repository {dep['repository']} is not a chart repository; skipped")
        else:
            jobs.append(Job(f"{mount}/charts/{quote(name)}-{quote(version)}.tgz"))
    return jobs, notes


def _archives(body: bytes, url: str) -> list[Job]:
    archives = json.loads(body).get("archives") or {}
    return [Job(urljoin(url, item["url"])) for item in archives.values() if isinstance(item.get("url"), str)]


def plan_terraform_lock(mount: str, text: str) -> tuple[list[Job], list[str]]:
    """Every locked provider version through a network mirror repository: its `<version>.json`,
    then the package of every platform it lists."""
    jobs, notes = [], []
    for found in _PROVIDER.finditer(text):
        parts = found["addr"].split("/")
        version = _VERSION.search(found["body"])
        if len(parts) != 3 or version is None:
            notes.append(f"provider {found['addr']} skipped: no hostname/namespace/type or no version")
            continue
        host, ns, ptype = (quote(p) for p in parts)
        jobs.append(Job(f"{mount}/{host}/{ns}/{ptype}/{quote(version['version'])}.json", then=_archives))
    return jobs, notes
