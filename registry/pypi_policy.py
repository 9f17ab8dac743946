"""The supply-chain policy hook of PyPI: versions and upload times of a project page, and the
page without the files of hidden versions (HTML and PEP 691 JSON are rendered from it)."""
from __future__ import annotations

import hashlib
from dataclasses import replace
from typing import TYPE_CHECKING

from packaging.utils import (InvalidSdistFilename, InvalidWheelFilename, canonicalize_name, parse_sdist_filename,
                             parse_wheel_filename)
from packaging.version import InvalidVersion

from depot.cache.api import VersionInfo, parse_time

from . import pypi_index as ix

if TYPE_CHECKING:  # pragma: no cover
    from .base import Ctx


def file_package(filename: str) -> tuple[str, str] | None:
    """(normalised project, version) of a wheel or sdist file name (its .metadata too)."""
    filename = filename.removesuffix(".metadata")
    try:
        if filename.endswith(".whl"):
            name, version, _, _ = parse_wheel_filename(filename)
        else:
            name, version = parse_sdist_filename(filename)
    except (InvalidWheelFilename, InvalidSdistFilename, InvalidVersion):
        return None
    return str(canonicalize_name(name)), str(version)


def page_versions(page: ix.ProjectPage) -> list[VersionInfo]:
    """Each version on the page, published when its first file was uploaded."""
    first: dict[str, float | None] = {}
    for record in page.files:
        version = ix.file_version(record.filename)
        if version is None:
            continue
        uploaded = parse_time(record.upload_time)
        known = first.get(version)
        first[version] = uploaded if known is None else (known if uploaded is None else min(known, uploaded))
    project = str(canonicalize_name(page.name))
    return [VersionInfo(project, version, published) for version, published in first.items()]


def policy_page(ctx: "Ctx", page: ix.ProjectPage) -> tuple[ix.ProjectPage, str]:
    """The page without the files of versions the policy hides from `ctx`'s repository, and a
    token naming what was hidden ('' when nothing is)."""
    if not ctx.pull.policy_active():
        return page, ""
    hidden = ctx.pull.hidden(page_versions(page))
    if not hidden:
        return page, ""
    gone = {version for _, version in hidden}
    files = [f for f in page.files if ix.file_version(f.filename) not in gone]
    versions = None if page.versions is None else [v for v in page.versions if v not in gone]
    token = hashlib.sha256(repr(sorted(hidden)).encode()).hexdigest()[:16]
    return replace(page, files=files, versions=versions), token
