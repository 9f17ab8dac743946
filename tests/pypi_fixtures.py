"""Real, tiny Python distributions for the PyPI tests, built locally (no network).

`build_dist` makes a wheel and an sdist with `python -m build --no-isolation` and the
hatchling backend; `write_simple_project` lays files out as a static PEP 503 tree (relative
links, hash fragments, `data-requires-python`, PEP 658 `.metadata` files) that the test
upstream server (tests/upstream.py) serves.
"""
from __future__ import annotations

import hashlib
import html
import os
import subprocess
import sys
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from packaging.utils import canonicalize_name, parse_sdist_filename, parse_wheel_filename

PYPROJECT = """\
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "{name}"
version = "{version}"
description = "depot test package {name}"
requires-python = "{requires_python}"
dependencies = [{deps}]

[tool.hatch.build.targets.wheel]
packages = ["src/{module}"]
"""


@dataclass(frozen=True)
class Dist:
    """A built project version: its wheel and sdist."""

    name: str
    version: str
    wheel: Path
    sdist: Path

    @property
    def project(self) -> str:
        return canonicalize_name(self.name)

    @property
    def files(self) -> list[Path]:
        return [self.wheel, self.sdist]


def build_dist(workdir: Path, name: str, version: str, deps: tuple[str, ...] = (),
               requires_python: str = ">=3.8") -> Dist:
    """Build `name==version` (a one-module hatchling project) into `workdir/dist-<name>-<version>`."""
    module = canonicalize_name(name).replace("-", "_")
    src = workdir / f"src-{module}-{version}"
    (src / "src" / module).mkdir(parents=True, exist_ok=True)
    (src / "src" / module / "__init__.py").write_text(f'VERSION = "{version}"\n')
    (src / "pyproject.toml").write_text(PYPROJECT.format(
        name=name, version=version, module=module, requires_python=requires_python,
        deps=", ".join(f'"{d}"' for d in deps)))
    out = workdir / f"dist-{module}-{version}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    proc = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "-o", str(out), str(src)],
                          capture_output=True, text=True, env=env, timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"building {name} {version} failed:\n{proc.stdout}\n{proc.stderr}")
    wheels, sdists = sorted(out.glob("*.whl")), sorted(out.glob("*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1, list(out.iterdir())
    return Dist(name, version, wheels[0], sdists[0])


def build_many(workdir: Path, specs: list[tuple[str, str, tuple[str, ...]]]) -> dict[tuple[str, str], Dist]:
    """Build several (name, version, deps) in parallel; keyed by (normalised name, version)."""
    workdir.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max_workers=4) as pool:
        dists = list(pool.map(lambda s: build_dist(workdir, s[0], s[1], s[2]), specs))
    return {(d.project, d.version): d for d in dists}


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def wheel_metadata(wheel: Path) -> bytes:
    """The METADATA member of a wheel."""
    with zipfile.ZipFile(wheel) as archive:
        member = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        return archive.read(member)


def _project_of(filename: str) -> str:
    if filename.endswith(".whl"):
        return canonicalize_name(parse_wheel_filename(filename)[0])
    return canonicalize_name(parse_sdist_filename(filename)[0])


def write_simple_project(root: Path, project: str, files: list[Path] = (), metadata: bool = True) -> None:
    """Copy `files` into `root/packages/` and (re)write `root/simple/<project>/index.html`.

    The page lists every file of the project found in `packages/` with relative hrefs
    (`../../packages/<file>#sha256=`), `data-requires-python` and, for wheels when `metadata`
    is true, a `<file>.metadata` sibling announced by `data-core-metadata`.
    """
    packages = root / "packages"
    packages.mkdir(parents=True, exist_ok=True)
    for path in files:
        target = packages / path.name
        target.write_bytes(path.read_bytes())
        if metadata and path.name.endswith(".whl"):
            (packages / (path.name + ".metadata")).write_bytes(wheel_metadata(path))
    links = []
    for path in sorted(packages.iterdir()):
        if path.name.endswith(".metadata") or _project_of(path.name) != project:
            continue
        attrs = f'href="../../packages/{path.name}#sha256={sha256_file(path)}" data-requires-python="{html.escape(">=3.8")}"'
        meta = packages / (path.name + ".metadata")
        if meta.exists():
            attrs += f' data-core-metadata="sha256={sha256_file(meta)}"'
        links.append(f"    <a {attrs}>{path.name}</a><br/>")
    page = root / "simple" / project / "index.html"
    page.parent.mkdir(parents=True, exist_ok=True)
    tmp = page.with_suffix(".tmp")
    tmp.write_text("<!DOCTYPE html>\n<html><body>\n" + "\n".join(links) + "\n</body></html>\n")
    tmp.replace(page)
