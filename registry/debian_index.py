"""Debian repository documents: .deb control data, Packages stanzas, Release files (python-debian).

Pure functions (blocking: callers run them in a thread); nothing here touches the engine.
"""
from __future__ import annotations

import bz2
import email.utils
import gzip
import hashlib
import io
import lzma
import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from debian import deb822, debfile

# what a Packages stanza carries besides the control file, in archive order
HASHES = (("MD5sum", "md5"), ("SHA1", "sha1"), ("SHA256", "sha256"))
NAME = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")
COMPONENT = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


class BadPackage(ValueError):
    """The upload is not a .deb depot can index."""


@dataclass(frozen=True)
class DebInfo:
    """What an uploaded .deb says about itself."""

    package: str
    version: str
    architecture: str
    source: str
    control: str          # the control paragraph as text (no trailing blank line)


def read_deb(data: bytes) -> DebInfo:
    """Parse a .deb's control data (BadPackage when it is not a valid binary package)."""
    try:
        control = debfile.DebFile(fileobj=io.BytesIO(data)).debcontrol()
    except Exception as exc:   # python-debian raises many types on broken ar/tar members
        raise BadPackage(f"not a Debian binary package: {exc}") from None
    missing = [f for f in ("Package", "Version", "Architecture") if not control.get(f)]
    if missing:
        raise BadPackage(f"control file lacks {', '.join(missing)}")
    package, arch = control["Package"], control["Architecture"]
    if not NAME.match(package) or not re.match(r"^[a-z0-9-]+$", arch):
        raise BadPackage(f"invalid Package {package!r} or Architecture {arch!r}")
    source = (control.get("Source") or package).split()[0]
    return DebInfo(package, control["Version"], arch, source, control.dump().rstrip("\n"))


def pool_path(component: str, source: str, filename: str) -> str:
    """`pool/<component>/<prefix>/<source>/<file>` with Debian's prefix rule (lib + one letter)."""
    prefix = source[:4] if source.startswith("lib") and len(source) > 3 else source[:1]
    return f"pool/{component}/{prefix}/{source}/{filename}"


def stanza(control: str, filename: str, data_hashes: Mapping[str, str], size: int) -> str:
    """The Packages stanza of a stored .deb: its control fields plus Filename, Size and hashes."""
    lines = [control, f"Filename: {filename}", f"Size: {size}"]
    lines += [f"{field}: {data_hashes[key]}" for field, key in HASHES if key in data_hashes]
    return "\n".join(lines)


def file_hashes(data: bytes) -> dict[str, str]:
    return {"md5": hashlib.md5(data).hexdigest(), "sha1": hashlib.sha1(data).hexdigest(),
            "sha256": hashlib.sha256(data).hexdigest()}


def decompress(name: str, body: bytes) -> bytes:
    """An index body, decompressed by extension or magic number."""
    if name.endswith(".xz") or body[:6] == b"\xfd7zXZ\x00":
        return lzma.decompress(body)
    if name.endswith(".gz") or body[:2] == b"\x1f\x8b":
        return gzip.decompress(body)
    if name.endswith(".bz2") or body[:3] == b"BZh":
        return bz2.decompress(body)
    return body


def packages_text(stanzas: Iterable[str]) -> bytes:
    """A Packages document from stanzas (sorted for a deterministic result)."""
    return "".join(s.rstrip("\n") + "\n\n" for s in sorted(set(stanzas))).encode()


def packages_by_index(entries: Iterable[tuple[str, str, str]], architectures: set[str]) -> dict[tuple[str, str], bytes]:
    """Packages documents per (component, arch) from (component, arch, stanza) entries: `all`
    packages are listed in binary-all and in every architecture's index; every listed
    architecture of a component gets an index, even an empty one."""
    stanzas: dict[tuple[str, str], list[str]] = {}
    for component, arch, text in entries:
        for target in ({"all"} | architectures if arch == "all" else {arch}):
            stanzas.setdefault((component, target), []).append(text)
    for component in {c for c, _ in stanzas}:
        for arch in architectures | {"all"}:
            stanzas.setdefault((component, arch), [])
    return {key: packages_text(value) for key, value in stanzas.items()}


PARAGRAPH_END = re.compile(rb"\n(?:[ \t]*\n)+")
KEY_FIELDS = {name: re.compile(rb"^" + name + rb":[ \t]*(\S+)", re.M)
              for name in (b"Package", b"Version", b"Architecture")}


def merge_packages(documents: Iterable[bytes]) -> bytes:
    """One Packages document from several (first occurrence of package/version/arch wins).
    Paragraphs are kept byte for byte; only their key fields are read (a merge of a full
    archive index stays fast)."""
    seen: set[tuple[bytes, ...]] = set()
    out = []
    for text in documents:
        for para in PARAGRAPH_END.split(text.strip(b"\n")):
            fields = [regex.search(para) for regex in KEY_FIELDS.values()]
            if fields[0] is None:
                continue
            key = tuple(f.group(1) if f else b"" for f in fields)
            if key not in seen:
                seen.add(key)
                out.append(para.rstrip(b"\n") + b"\n\n")
    return b"".join(out)


POOL_FIELDS = re.compile(rb"^(Package|Filename|SHA256):[ \t]*(\S*)[ \t]*$", re.M)


def pool_hashes(text: bytes) -> dict[str, str]:
    """Filename -> SHA256 of every stanza of a Packages document.

    Only these single-line fields are needed, from indexes of 60,000+ stanzas on the path of a
    client's first pool download: one scan of the document takes a fraction of a second where a
    full deb822 parse takes tens (python-debian is used for everything else). Every stanza
    starts with Package (Debian policy 5.3), which delimits them here."""
    found: dict[str, str] = {}
    name = sha = None
    for match in POOL_FIELDS.finditer(text + b"\nPackage: end"):
        field, value = match.group(1), match.group(2).decode("utf-8", "replace")
        if field == b"Package":
            if name and sha and re.fullmatch(r"[0-9a-fA-F]{64}", sha):
                found[name.removeprefix("./")] = sha.lower()
            name = sha = None
        elif field == b"Filename":
            name = value
        else:
            sha = value
    return found


def release_text(suite: str, files: Mapping[str, bytes], components: Iterable[str],
                 architectures: Iterable[str], date: float, origin: str) -> bytes:
    """A Release file listing `files` (paths relative to dists/<suite>/) with sizes and hashes."""
    release: Any = deb822.Release()
    release["Origin"] = origin
    release["Label"] = origin
    release["Suite"] = suite
    release["Codename"] = suite
    release["Date"] = email.utils.formatdate(date, usegmt=True)
    release["Architectures"] = " ".join(sorted(set(architectures)))
    release["Components"] = " ".join(sorted(set(components)))
    release["Acquire-By-Hash"] = "yes"
    for field, algo, key in (("MD5Sum", "md5", "md5sum"), ("SHA256", "sha256", "sha256")):
        release[field] = [{key: hashlib.new(algo, body).hexdigest(), "size": str(len(body)), "name": name}
                          for name, body in sorted(files.items())]
    return release.dump().encode()


@dataclass(frozen=True)
class ReleaseEntry:
    name: str              # path relative to the Release's directory
    sha256: str
    size: int


def parse_release(body: bytes) -> tuple[dict[str, ReleaseEntry], bool, deb822.Release]:
    """The SHA256 entries of a Release or InRelease (signature stripped), whether it offers
    by-hash, and the parsed paragraph."""
    release = deb822.Release(body.decode("utf-8", "replace"))
    entries = {}
    for item in release.get("SHA256", []):
        entries[item["name"]] = ReleaseEntry(item["name"], item["sha256"].lower(), int(item["size"]))
    by_hash = str(release.get("Acquire-By-Hash", "no")).lower() == "yes"
    return entries, by_hash, release


def suite_components(release: deb822.Release) -> tuple[list[str], list[str]]:
    """(components, architectures) a Release names."""
    return release.get("Components", "").split(), release.get("Architectures", "").split()
