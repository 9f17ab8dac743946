"""Go module mechanics, as golang.org/x/mod does them: path case encoding, semantic versions,
module path checks and the module zip rules (pure functions, no I/O)."""
from __future__ import annotations

import io
import re
import zipfile
from dataclasses import dataclass
from functools import cmp_to_key

# golang.org/x/mod/zip limits
MAX_ZIP_FILE = 500 << 20
MAX_GO_MOD = 16 << 20
MAX_LICENSE = 16 << 20

_SEMVER = re.compile(r"v(0|[1-9]\d*)(?:\.(0|[1-9]\d*))?(?:\.(0|[1-9]\d*))?"
                     r"(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(?:\+([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?")
_CANONICAL = re.compile(r"v(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
                        r"(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(\+incompatible)?")
_PATH_ELEMENT = re.compile(r"[A-Za-z0-9._~-]+")
_FILE_ELEMENT = re.compile(r"[A-Za-z0-9!#$%&()+,\-.=@\[\]^_{}~ ]+")
_MAJOR_SUFFIX = re.compile(r"(?:/v(\d+)|\.v(\d+)(?:-unstable)?)\Z")
_MOD_LINE = re.compile(rb'^\s*module\s+("(?:[^"\\]|\\.)*"|`[^`]*`|\S+)', re.MULTILINE)


class ModuleError(ValueError):
    """A module path, version or zip that the go command would refuse (the message says why)."""


# ------------------------------------------------------------------------------ case encoding

def escape(text: str) -> str:
    """Case encoding for proxy URLs: 'github.com/Azure' -> 'github.com/!azure'."""
    return re.sub(r"[A-Z]", lambda m: "!" + m.group(0).lower(), text)


def unescape(text: str) -> str:
    """The inverse of escape(); ModuleError for upper case or a '!' not before a-z."""
    if re.search(r"[A-Z]|![^a-z]|!\Z", text):
        raise ModuleError(f"invalid case-encoded path {text!r}")
    return re.sub(r"!([a-z])", lambda m: m.group(1).upper(), text)


# ---------------------------------------------------------------------------------- semver

def is_canonical(version: str) -> bool:
    """vMAJOR.MINOR.PATCH[-pre][+incompatible], the only versions a module proxy serves files of."""
    return _CANONICAL.fullmatch(version) is not None


def _prerelease_key(pre: str) -> list[tuple[int, int | str]]:
    return [(0, int(p)) if p.isdigit() else (1, p) for p in pre.split(".")]


def compare(a: str, b: str) -> int:
    """golang.org/x/mod/semver.Compare for canonical versions (build suffix ignored)."""
    ma, mb = _SEMVER.fullmatch(a), _SEMVER.fullmatch(b)
    if ma is None or mb is None:
        return (ma is not None) - (mb is not None)
    na = tuple(int(x or 0) for x in ma.groups()[:3])
    nb = tuple(int(x or 0) for x in mb.groups()[:3])
    if na != nb:
        return -1 if na < nb else 1
    pa, pb = ma.group(4), mb.group(4)
    if pa == pb:
        return 0
    if pa is None or pb is None:
        return 1 if pa is None else -1
    ka, kb = _prerelease_key(pa), _prerelease_key(pb)
    return -1 if ka < kb else 1


def sort_versions(versions: list[str]) -> list[str]:
    """Oldest first, as `go list -m -versions` shows them."""
    return sorted(versions, key=cmp_to_key(compare))


def is_prerelease(version: str) -> bool:
    found = _SEMVER.fullmatch(version)
    return found is None or found.group(4) is not None


def latest(versions: list[str]) -> str | None:
    """What @latest names: the highest release, else the highest pre-release."""
    releases = [v for v in versions if not is_prerelease(v)]
    pool = sort_versions(releases or versions)
    return pool[-1] if pool else None


def major(version: str) -> int:
    m = _SEMVER.fullmatch(version)
    if m is None:
        raise ModuleError(f"invalid version {version!r}")
    return int(m.group(1))


# ----------------------------------------------------------------------------- module paths

def check_path(path: str) -> None:
    """module.CheckPath: slash-separated elements of [A-Za-z0-9._~-], the first one a host name."""
    if not path or path.startswith("/") or path.endswith("/") or "//" in path:
        raise ModuleError(f"malformed module path {path!r}")
    elements = path.split("/")
    for element in elements:
        if not _PATH_ELEMENT.fullmatch(element) or element in (".", "..") or element.endswith("."):
            raise ModuleError(f"malformed module path {path!r}: invalid element {element!r}")
    first = elements[0]
    if "." not in first or first.startswith("-") or not re.fullmatch(r"[a-z0-9.-]+", first):
        raise ModuleError(f"malformed module path {path!r}: the first element must be a lower-case host name")


def check_path_major(path: str, version: str) -> None:
    """module.CheckPathMajor: '/vN' (N >= 2) in the path goes with major version N, and only then."""
    found = _MAJOR_SUFFIX.search(path)
    suffix = int(found.group(1) or found.group(2)) if found else None
    vmajor = major(version)
    if path.startswith("gopkg.in/"):
        if suffix is None or suffix != vmajor:
            raise ModuleError(f"{path}@{version}: gopkg.in paths need a matching .vN suffix")
        return
    if found and found.group(1) is not None and suffix is not None and suffix >= 2:
        if vmajor != suffix:
            raise ModuleError(f"{path}@{version}: version must be v{suffix}.x.y for a /v{suffix} path")
    elif vmajor >= 2 and not version.endswith("+incompatible"):
        raise ModuleError(f"{path}@{version}: major version v{vmajor} needs a /v{vmajor} path suffix")


def split_file_path(path: str) -> tuple[str, str, str]:
    """'<escaped module>/@v/<escaped version>.<ext>' -> (module, version, ext), unescaped."""
    module_part, sep, file = path.rpartition("/@v/")
    base, dot, ext = file.rpartition(".")
    if not sep or not dot:
        raise ModuleError(f"{path}: not a <module>/@v/<version>.<ext> path")
    return unescape(module_part), unescape(base), ext


# ------------------------------------------------------------------------------ module zips

@dataclass(frozen=True)
class ModuleZip:
    """What a valid module zip says: its go.mod text (None when it has none)."""

    go_mod: bytes | None


def _check_file_path(name: str) -> None:
    """module.CheckFilePath: no '..', '.', empty elements, odd characters or Windows names."""
    if not name or name.startswith("/") or "\\" in name:
        raise ModuleError(f"malformed file path {name!r}")
    for element in name.split("/"):
        if element in ("", ".", "..") or not _FILE_ELEMENT.fullmatch(element) or element.endswith((".", " ")):
            raise ModuleError(f"malformed file path {name!r}: invalid element {element!r}")
        stem = element.split(".", 1)[0].lower()
        if stem in ("con", "prn", "aux", "nul") or re.fullmatch(r"(com|lpt)\d", stem):
            raise ModuleError(f"malformed file path {name!r}: {element!r} is a reserved Windows name")


def _check_collision(seen: dict[str, tuple[str, bool]], name: str, is_dir: bool) -> None:
    """x/mod/zip's collisionChecker: one entry per file, no case-insensitive twins, no name that
    is both a file and a directory (parents count as directories)."""
    fold = name.lower()
    other = seen.get(fold)
    if other is not None:
        if other[0] != name:
            raise ModuleError(f"case-insensitive file name collision: {other[0]!r} and {name!r}")
        if other[1] != is_dir:
            raise ModuleError(f"entry {name!r} is both a file and a directory")
        if not is_dir:
            raise ModuleError(f"multiple entries for file {name!r}")
    else:
        seen[fold] = (name, is_dir)
    if "/" in name:
        _check_collision(seen, name.rsplit("/", 1)[0], True)


def check_zip(data: bytes, path: str, version: str) -> ModuleZip:
    """golang.org/x/mod/zip.CheckZip: every entry under `path@version/`, valid and unique file
    paths (also ignoring case), go.mod only at the root, size limits; returns that go.mod."""
    if len(data) > MAX_ZIP_FILE:
        raise ModuleError(f"module zip is larger than {MAX_ZIP_FILE} bytes")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = archive.infolist()
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise ModuleError(f"not a zip file: {exc}") from None
    prefix = f"{path}@{version}/"
    seen: dict[str, tuple[str, bool]] = {}
    total = 0
    go_mod: bytes | None = None
    for info in infos:
        if not info.filename.startswith(prefix):
            raise ModuleError(f"{info.filename}: path does not have prefix {prefix!r}")
        name = info.filename[len(prefix):]
        if not name:
            continue
        is_dir = name.endswith("/")
        name = name.rstrip("/") if is_dir else name
        _check_file_path(name)
        _check_collision(seen, name, is_dir)
        if is_dir:
            continue
        base = name.rsplit("/", 1)[-1]
        if base.lower() == "go.mod" and name != "go.mod":
            raise ModuleError(f"{info.filename}: go.mod file not in module root directory (or not lower case)")
        total += info.file_size
        if total > MAX_ZIP_FILE:
            raise ModuleError(f"total uncompressed size of module contents is larger than {MAX_ZIP_FILE} bytes")
        if name == "go.mod" and info.file_size > MAX_GO_MOD:
            raise ModuleError(f"go.mod file too large (max size is {MAX_GO_MOD} bytes)")
        if name == "LICENSE" and info.file_size > MAX_LICENSE:
            raise ModuleError(f"LICENSE file too large (max size is {MAX_LICENSE} bytes)")
        if name == "go.mod":
            try:
                go_mod = archive.read(info)
            except (zipfile.BadZipFile, ValueError, OSError, NotImplementedError) as exc:
                raise ModuleError(f"go.mod cannot be read: {exc}") from None
    return ModuleZip(go_mod)


def module_line(go_mod: bytes) -> str | None:
    """The module path a go.mod declares (quoted forms unquoted), or None."""
    found = _MOD_LINE.search(go_mod)
    if found is None:
        return None
    value = found.group(1).decode("utf-8", "replace")
    if value[:1] in ('"', "`"):
        value = value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return value


def check_go_mod(go_mod: bytes | None, path: str, version: str) -> bytes:
    """The .mod a proxy serves: the zip's go.mod (its module line must name `path`), or the
    synthesized `module <path>` for zips without one (only +incompatible or v0/v1 versions)."""
    if go_mod is None:
        return f"module {path}\n".encode()
    declared = module_line(go_mod)
    if declared is None:
        raise ModuleError("go.mod has no module line")
    if declared != path:
        raise ModuleError(f"go.mod declares module {declared!r}, not {path!r}")
    if version.endswith("+incompatible"):
        raise ModuleError(f"{version}: +incompatible versions cannot have a go.mod")
    return go_mod
