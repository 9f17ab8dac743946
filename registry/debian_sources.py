"""Debian source packages (.dsc and the files it lists) and the file lists of .deb packages.

Pure functions (blocking: callers run them in a thread); nothing here touches the engine.
A source package is uploaded as separate files in any order: the .dsc (python-debian reads it,
its PGP armour if any is stripped) and the tarballs/diff it lists, all stored in one pool
directory. Sources lists a .dsc once every file it names is stored with the sha256 it names.
"""
from __future__ import annotations

import gzip
import io
import re
import tarfile
from dataclasses import dataclass
from typing import Any

from debian import deb822, debfile

from . import debian_index as di

# <source>_<rest>.<ext>: the source name is what comes before the first "_" (Debian policy 5.6.1)
SOURCE_FILE = re.compile(r"(?P<source>[a-z0-9][a-z0-9+.-]+)_(?P<rest>[A-Za-z0-9.+~:_-]+?)"
                         r"\.(?P<ext>dsc|changes|buildinfo|tar\.(?:gz|xz|bz2|lzma)|diff\.gz|tar\.(?:gz|xz|bz2|lzma)\.asc)")
CHECKSUMS = (("Files", "md5sum", "md5"), ("Checksums-Sha1", "sha1", "sha1"),
             ("Checksums-Sha256", "sha256", "sha256"))


@dataclass(frozen=True)
class DscInfo:
    """What an uploaded .dsc says: its Sources stanza and the files it needs (name -> sha256)."""

    source: str
    version: str
    stanza: str
    needs: dict[str, str]


def read_dsc(data: bytes, filename: str, directory: str) -> DscInfo:
    """Parse a .dsc into the Sources stanza it gets in `directory` (BadPackage when invalid)."""
    try:
        dsc: Any = deb822.Dsc(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise di.BadPackage(f"not a Debian source control file: {exc}") from None
    source, version = dsc.get("Source", ""), dsc.get("Version", "")
    if not di.NAME.match(source) or not version or not dsc.get("Format"):
        raise di.BadPackage("a .dsc names its Source, Version and Format")
    if not filename.startswith(f"{source}_"):
        raise di.BadPackage(f"{filename} is not a file of source package {source}")
    listed = dsc.get("Checksums-Sha256") or []
    if not listed:
        raise di.BadPackage("the .dsc lists no Checksums-Sha256")
    needs = {}
    for item in listed:
        name = item.get("name", "")
        if "/" in name or not name.startswith(f"{source}_") or not re.fullmatch(r"[0-9a-f]{64}", item["sha256"]):
            raise di.BadPackage(f"the .dsc lists {name!r}: not a file of source package {source}")
        needs[name] = item["sha256"]
    return DscInfo(source, version, sources_stanza(dsc, data, filename, directory), needs)


def sources_stanza(dsc: Any, data: bytes, filename: str, directory: str) -> str:
    """The .dsc's fields as a Sources stanza: Package instead of Source, the .dsc itself added
    to its checksum lists, and the pool Directory."""
    out: Any = deb822.Sources()
    out["Package"] = dsc["Source"]
    own = di.file_hashes(data)
    for key, value in dsc.items():
        if key == "Source":
            continue
        out[key] = value
    for field, key, algo in CHECKSUMS:
        if field in dsc:
            out[field] = [*dsc[field], {key: own[algo], "size": str(len(data)), "name": filename}]
    out["Directory"] = directory
    return str(out.dump()).rstrip("\n")


def source_upload_meta(filename: str, data: bytes, digest: str, directory: str,
                       stored: dict[str, tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """The metadata of an uploaded source package file (`stored`: name -> (sha256, meta) of
    the files already in its pool directory), or BadPackage:
    * a .dsc (kind "dsc") must not disagree with the listed files stored already;
    * a tarball, diff or .buildinfo (kind "source") must be readable and match the sha256 the
      stored .dsc lists for it;
    * a .changes (kind "changes", dput uploads it last) must list only files stored with its sha256."""
    found = SOURCE_FILE.fullmatch(filename)
    assert found is not None
    if found["ext"] == "dsc":
        info = read_dsc(data, filename, directory)
        clash = [n for n, sha in info.needs.items() if n in stored and stored[n][0] != sha]
        meta = {"kind": "dsc", "package": info.source, "version": info.version, "stanza": info.stanza,
                "needs": info.needs}
    elif found["ext"] == "changes":
        clash = [n for n, sha in listed_sha256(data, filename).items() if stored.get(n, ("",))[0] != sha]
        if clash:
            raise di.BadPackage(f"{filename} lists files not uploaded (or with other content): {', '.join(clash)}")
        meta = {"kind": "changes"}
    else:
        check_part(filename, data)
        clash = [n for n, (_, m) in stored.items()
                 if m.get("kind") == "dsc" and m["needs"].get(filename, digest) != digest]
        meta = {"kind": "source"}
    if clash:
        raise di.BadPackage(f"{filename} disagrees with the sha256 of stored files: {', '.join(clash)}")
    return meta


def listed_sha256(data: bytes, filename: str) -> dict[str, str]:
    """name -> sha256 of the files a .changes lists (BadPackage when it lists none)."""
    try:
        changes: Any = deb822.Changes(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise di.BadPackage(f"{filename} is not a .changes file: {exc}") from None
    listed = {item["name"]: item["sha256"] for item in changes.get("Checksums-Sha256") or []}
    if not listed or any("/" in name for name in listed):
        raise di.BadPackage(f"{filename} lists no files in Checksums-Sha256")
    return listed


def check_part(filename: str, data: bytes) -> None:
    """A tarball or diff of a source package must be readable (BadPackage otherwise)."""
    try:
        if filename.endswith(".buildinfo"):
            if not deb822.Deb822(data.decode("utf-8")).get("Source"):
                raise di.BadPackage(f"{filename} names no Source")
        elif filename.endswith(".asc"):
            if not data.lstrip().startswith(b"-----BEGIN PGP SIGNATURE-----"):
                raise di.BadPackage(f"{filename} is not an armoured signature")
        elif filename.endswith(".diff.gz"):
            gzip.decompress(data)
        else:
            with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
                if tar.next() is None:
                    raise di.BadPackage(f"{filename} is an empty archive")
    except (tarfile.TarError, OSError, EOFError, ValueError) as exc:
        raise di.BadPackage(f"{filename} is not a readable archive: {exc}") from None


def deb_files(data: bytes) -> list[str]:
    """The paths a .deb installs (files and links, no directories), for Contents."""
    try:
        tar = debfile.DebFile(fileobj=io.BytesIO(data)).data.tgz()
        return sorted(m.name.removeprefix("./").lstrip("/") for m in tar.getmembers() if not m.isdir())
    except Exception as exc:    # python-debian raises many types on broken members
        raise di.BadPackage(f"the data archive of this package cannot be read: {exc}") from None


def location(control: str, package: str) -> str:
    """A package's Contents location: `<section>/<package>` (section as its control file says)."""
    section = deb822.Deb822(control).get("Section", "").split()
    return f"{section[0]}/{package}" if section else package


DIRECTORY = re.compile(rb"^Directory:[ \t]*(\S+)", re.M)
SHA256_LIST = re.compile(rb"^Checksums-Sha256:[ \t]*\n((?:[ \t]+\S.*(?:\n|$))+)", re.M)


def source_hashes(text: bytes) -> dict[str, str]:
    """`<Directory>/<file>` -> sha256 of every file every stanza of a Sources document lists
    (a scan of the two fields, fast on a full archive's index, like debian_index.pool_hashes)."""
    found: dict[str, str] = {}
    for para in di.PARAGRAPH_END.split(text.strip(b"\n")):
        directory, listed = DIRECTORY.search(para), SHA256_LIST.search(para)
        if directory is None or listed is None:
            continue
        base = directory.group(1).decode("utf-8", "replace").removeprefix("./").rstrip("/")
        for line in listed.group(1).decode("utf-8", "replace").splitlines():
            parts = line.split()
            if len(parts) == 3 and re.fullmatch(r"[0-9a-fA-F]{64}", parts[0]) and "/" not in parts[2]:
                found[f"{base}/{parts[2]}"] = parts[0].lower()
    return found
