"""CRAN's DCF documents: DESCRIPTION read from a source tarball, PACKAGES parsed, rendered, merged."""
from __future__ import annotations

import gzip
import io
import re
import tarfile
import zipfile
from typing import Iterable

SOURCE = re.compile(r"src/contrib/(?:Archive/(?P<dir>[^/]+)/)?(?P<file>(?P<pkg>[A-Za-z][A-Za-z0-9.]*)_"
                    r"(?P<ver>[0-9]+(?:[.-][0-9]+)+)\.tar\.gz)\Z")
BINARY = re.compile(r"(?P<dir>bin/.+/contrib/[^/]+)/(?P<file>(?P<pkg>[A-Za-z][A-Za-z0-9.]*)_"
                    r"(?P<ver>[0-9]+(?:[.-][0-9]+)+)\.(?P<ext>zip|tgz))\Z")
INDEX = re.compile(r"(?P<dir>(?:src|bin/.+)/contrib(?:/[^/]+)?)/PACKAGES(?P<ext>\.gz|\.rds)?\Z")
# the fields tools::write_PACKAGES keeps, in its order
FIELDS = ("Package", "Version", "Priority", "Depends", "Imports", "LinkingTo", "Suggests", "Enhances", "License",
          "License_is_FOSS", "License_restricts_use", "OS_type", "Archs", "MD5sum", "NeedsCompilation", "Path")
MAX_DESCRIPTION = 1 << 20


class DescriptionError(ValueError):
    """The upload is not an R source package for its path."""


def parse_dcf(text: str) -> list[dict[str, str]]:
    """Stanzas of a Debian-control-style file (continuation lines start with whitespace)."""
    stanzas: list[dict[str, str]] = []
    current: dict[str, str] = {}
    key = None
    for line in text.splitlines():
        if not line.strip():
            if current:
                stanzas.append(current)
            current, key = {}, None
        elif line[0] in " \t" and key is not None:
            current[key] += "\n" + line
        elif ":" in line:
            key, _, value = line.partition(":")
            key = key.strip()
            current[key] = value.strip()
        else:
            raise DescriptionError(f"not a DCF line: {line[:60]!r}")
    if current:
        stanzas.append(current)
    return stanzas


def _description_bytes(data: bytes, wanted: str, zipped: bool) -> bytes:
    try:
        if zipped:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                info = archive.getinfo(wanted)
                if info.file_size > MAX_DESCRIPTION:
                    raise DescriptionError(f"{wanted} is too big")
                return archive.read(info)
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            member = next((m for m in tar if m.name.lstrip("./") == wanted), None)
            if member is None or not member.isfile() or member.size > MAX_DESCRIPTION:
                raise DescriptionError(f"the archive has no {wanted}")
            handle = tar.extractfile(member)
            assert handle is not None
            return handle.read()
    except KeyError:
        raise DescriptionError(f"the archive has no {wanted}") from None
    except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DescriptionError(f"not a readable {'zip' if zipped else '.tar.gz'}: {exc}") from None


def read_description(path: str, data: bytes) -> dict[str, str]:
    """DESCRIPTION of `src/contrib/<pkg>_<ver>.tar.gz` or of a binary package under bin/
    (`.zip` or `.tgz`, which must say when it was `Built`), checked against its path."""
    found = SOURCE.match(path)
    binary = BINARY.match(path) if found is None else None
    if (found is None or found["dir"]) and binary is None:
        raise DescriptionError("upload source packages as PUT src/contrib/<package>_<version>.tar.gz "
                               "and binaries as PUT bin/<platform>/contrib/<R x.y>/<package>_<version>.zip|tgz")
    found = found or binary
    assert found is not None
    text = _description_bytes(data, f"{found['pkg']}/DESCRIPTION", binary is not None and binary["ext"] == "zip")
    stanzas = parse_dcf(text.decode("utf-8", "replace"))
    if len(stanzas) != 1:
        raise DescriptionError("DESCRIPTION must hold one stanza")
    desc = stanzas[0]
    if desc.get("Package") != found["pkg"] or desc.get("Version") != found["ver"]:
        raise DescriptionError(f"DESCRIPTION names {desc.get('Package')} {desc.get('Version')}, "
                               f"the path {found['pkg']} {found['ver']}")
    if binary is not None and "Built" not in desc:
        raise DescriptionError("a binary package's DESCRIPTION says when it was Built (R CMD INSTALL --build)")
    return desc


def checked_archive(path: str, data: bytes) -> bytes:
    """`data` unchanged when it is a readable package archive whose DESCRIPTION names the
    package and version of `path` (an Archive/ path is read as its src/contrib/ twin); else
    DescriptionError. Blocking: the proxy runs it in a worker thread before storing a file."""
    found = SOURCE.match(path)
    if found is not None and found["dir"]:
        path = f"src/contrib/{found['file']}"
    try:
        read_description(path, data)
    except DescriptionError as exc:
        raise DescriptionError(f"upstream sent a broken {path.rsplit('/', 1)[-1]}: {exc}") from None
    return data


def latest(stanzas: Iterable[dict[str, str]]) -> list[dict[str, str]]:
    """The highest version of each package (write_PACKAGES' latestOnly)."""
    best: dict[str, dict[str, str]] = {}
    for entry in stanzas:
        kept = best.get(entry["Package"])
        if kept is None or version_key(entry["Version"]) > version_key(kept["Version"]):
            best[entry["Package"]] = entry
    return list(best.values())


def stanza(desc: dict[str, str], md5: str) -> dict[str, str]:
    """The PACKAGES entry of a package (write_PACKAGES fields)."""
    entry = {k: desc[k] for k in FIELDS if k in desc}
    entry["MD5sum"] = md5
    entry.setdefault("NeedsCompilation", desc.get("NeedsCompilation", "no"))
    return entry


def render(stanzas: Iterable[dict[str, str]]) -> bytes:
    """PACKAGES text, sorted by package name."""
    blocks = ["\n".join(f"{k}: {v}" for k, v in s.items()) for s in sorted(stanzas, key=lambda s: s["Package"])]
    return ("\n\n".join(blocks) + "\n").encode() if blocks else b""


def version_key(version: str) -> tuple[int, ...]:
    """R's package_version order: numbers separated by '.' or '-'."""
    return tuple(int(part) for part in re.split(r"[.-]", version))


def gz(body: bytes) -> bytes:
    return gzip.compress(body, mtime=0)


def merge(documents: Iterable[bytes]) -> bytes:
    """PACKAGES of a group: the first document naming a package wins for it."""
    seen: dict[str, dict[str, str]] = {}
    for body in documents:
        for entry in parse_dcf(body.decode("utf-8", "replace")):
            if "Package" in entry:
                seen.setdefault(entry["Package"], entry)
    return render(seen.values())
