"""Conda packages built by the tests (.tar.bz2 and .conda) and channel trees for static upstreams."""
from __future__ import annotations

import hashlib
import io
import json
import tarfile
import time
import zipfile
from pathlib import Path
from typing import Any

import zstandard


def _tar(files: dict[str, bytes], mode: str = "w") -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode=mode) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), int(time.time()), 0o644
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def index_json(name: str, version: str, build: str = "0", subdir: str = "noarch",
               depends: list[str] | None = None) -> dict[str, Any]:
    return {"name": name, "version": version, "build": build, "build_number": 0, "depends": depends or [],
            "subdir": subdir, "license": "MIT", "timestamp": int(time.time() * 1000),
            **({"noarch": "generic"} if subdir == "noarch" else {}), "arch": None, "platform": None}


def _info_files(index: dict[str, Any], payload: dict[str, bytes]) -> dict[str, bytes]:
    paths = {"paths": [{"_path": p, "path_type": "hardlink", "sha256": hashlib.sha256(d).hexdigest(),
                        "size_in_bytes": len(d)} for p, d in payload.items()], "paths_version": 1}
    return {"info/index.json": json.dumps(index).encode(), "info/paths.json": json.dumps(paths).encode(),
            "info/files": "".join(p + "\n" for p in payload).encode()}


def tar_bz2(index: dict[str, Any], payload: dict[str, bytes]) -> bytes:
    """A .tar.bz2 package: info/ and the payload in one bzip2 tar."""
    return _tar({**_info_files(index, payload), **payload}, "w:bz2")


def dot_conda(index: dict[str, Any], payload: dict[str, bytes]) -> bytes:
    """A .conda package: a zip of metadata.json, info-<stem>.tar.zst and pkg-<stem>.tar.zst."""
    stem = f"{index['name']}-{index['version']}-{index['build']}"
    pack = zstandard.ZstdCompressor().compress
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("metadata.json", json.dumps({"conda_pkg_format_version": 2}))
        archive.writestr(f"pkg-{stem}.tar.zst", pack(_tar(payload)))
        archive.writestr(f"info-{stem}.tar.zst", pack(_tar(_info_files(index, payload))))
    return out.getvalue()


def package(name: str, version: str, ext: str = "tar.bz2", subdir: str = "noarch",
            depends: list[str] | None = None, text: str | None = None) -> tuple[str, bytes]:
    """(path in the channel, bytes) of a tiny package installing share/<name>.txt."""
    index = index_json(name, version, subdir=subdir, depends=depends)
    payload = {f"share/{name}.txt": (text or f"{name} {version}\n").encode()}
    data = tar_bz2(index, payload) if ext == "tar.bz2" else dot_conda(index, payload)
    path = f"{subdir}/{name}-{version}-0.{ext}"
    INDEXES[path] = index
    return path, data


INDEXES: dict[str, dict[str, Any]] = {}      # path -> index.json of the packages package() built


def record(path: str, data: bytes) -> dict[str, Any]:
    """The repodata record of a package built by package() (a channel's index, conda-index style)."""
    return {**INDEXES[path], "sha256": hashlib.sha256(data).hexdigest(),
            "md5": hashlib.md5(data).hexdigest(), "size": len(data)}


def write_channel(root: Path, packages: dict[str, bytes], filler: int = 0,
                  records: dict[str, dict[str, Any]] | None = None) -> None:
    """A static channel: the packages, noarch/ and linux-64/ repodata.json (plus `filler`
    generated records of packages that do not exist, to make the document big)."""
    for subdir in ("noarch", "linux-64"):
        (root / subdir).mkdir(parents=True, exist_ok=True)
    docs: dict[str, dict[str, Any]] = {s: {"info": {"subdir": s}, "packages": {}, "packages.conda": {},
                                           "removed": [], "repodata_version": 1} for s in ("noarch", "linux-64")}
    for path, data in packages.items():
        (root / path).write_bytes(data)
        subdir, fn = path.split("/", 1)
        docs[subdir]["packages.conda" if fn.endswith(".conda") else "packages"][fn] = \
            (records or {}).get(path) or record(path, data)
    for i in range(filler):
        fn = f"filler-pkg-{i}-1.0.{i % 7}-h{i:08x}_0.tar.bz2"
        docs["noarch"]["packages"][fn] = {
            "name": f"filler-pkg-{i}", "version": f"1.0.{i % 7}", "build": f"h{i:08x}_0", "build_number": 0,
            "depends": ["python >=3.8", f"filler-pkg-{i + 1} >=1.0", "libzlib >=1.2.13,<2.0a0"],
            "license": "BSD-3-Clause", "md5": "0" * 32, "sha256": "0" * 64, "size": 123456,
            "subdir": "noarch", "timestamp": 1700000000000 + i, "noarch": "python"}
    for subdir, doc in docs.items():
        (root / subdir / "repodata.json").write_text(json.dumps(doc, indent=1))
