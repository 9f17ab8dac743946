"""The generated files of a Debian suite (`dists/<suite>/`): Packages, Sources, Contents,
Translation-en, the Release listing them all, and its signatures.

Pure functions (blocking: callers run them in a thread); nothing here touches the engine.
Contents lines are `<path> <section>/<package>[,…]` (Debian's format, no header); Translation-en
carries the descriptions of the suite's Packages (`Description-md5` is apt's md5 of the
Description value plus a newline, so apt matches them to the Packages stanzas).
"""
from __future__ import annotations

import bz2
import gzip
import hashlib
import lzma
import re
from dataclasses import dataclass, field
from typing import Iterable, Mapping

from . import debian_index as di
from . import signing


@dataclass
class Indexes:
    """What a suite lists besides its Release: per (component, arch) Packages and Contents
    documents, per component Sources (uncompressed bodies)."""

    packages: dict[tuple[str, str], bytes]
    sources: dict[str, bytes] = field(default_factory=dict)
    contents: dict[tuple[str, str], bytes] = field(default_factory=dict)

    def components(self) -> set[str]:
        return {c for c, _ in self.packages} | set(self.sources) | {c for c, _ in self.contents}

    def is_empty(self) -> bool:
        return not self.packages and not self.sources


def variants(text: bytes, kinds: Iterable[str]) -> dict[str, bytes]:
    """`text` under each extension of `kinds` ("" plain, .gz, .xz, .bz2; deterministic)."""
    makers = {"": lambda b: b, ".gz": lambda b: gzip.compress(b, mtime=0), ".xz": lzma.compress,
              ".bz2": bz2.compress}
    return {ext: makers[ext](text) for ext in kinds}


def index_files(indexes: Indexes, architectures: set[str]) -> dict[str, bytes]:
    """Every index file of the suite by its path relative to dists/<suite>/ (no Release)."""
    files: dict[str, bytes] = {}
    components = indexes.components()
    for (component, arch), text in indexes.packages.items():
        for ext, body in variants(text, ("", ".gz", ".xz")).items():
            files[f"{component}/binary-{arch}/Packages{ext}"] = body
    for component in components:
        for ext, body in variants(indexes.sources.get(component, b""), ("", ".gz", ".xz")).items():
            files[f"{component}/source/Sources{ext}"] = body
        docs = [text for (c, _), text in indexes.packages.items() if c == component]
        for ext, body in variants(translation(docs), ("", ".bz2", ".xz")).items():
            files[f"{component}/i18n/Translation-en{ext}"] = body
        for arch in architectures | {"all"}:
            for ext, body in variants(indexes.contents.get((component, arch), b""), ("", ".gz")).items():
                files[f"{component}/Contents-{arch}{ext}"] = body
    return files


def render_suite(suite: str, indexes: Indexes, architectures: set[str], date: float,
                 origin: str, secret: str) -> dict[str, bytes]:
    """dists/<suite>/ files: the indexes, their by-hash copies, Release, InRelease, Release.gpg."""
    files = index_files(indexes, architectures)
    release = di.release_text(suite, files, indexes.components(), architectures | {"all"}, date, origin)
    inrelease, detached = signing.sign_both(secret, release)
    by_hash = {f"{name.rpartition('/')[0]}/by-hash/SHA256/{hashlib.sha256(body).hexdigest()}": body
               for name, body in files.items()}
    return {**files, **by_hash, "Release": release, "InRelease": inrelease, "Release.gpg": detached}


# ---------------------------------------------------------------------------- Translation-en
DESCRIPTION = re.compile(rb"^Description:[ \t]*(.*(?:\n[ \t].*)*)", re.M)
PACKAGE = re.compile(rb"^Package:[ \t]*(\S+)", re.M)
HAS_MD5 = re.compile(rb"^Description-md5:", re.M)


def translation(documents: Iterable[bytes]) -> bytes:
    """Translation-en of Packages documents: one stanza per package and description. Stanzas
    that carry a Description-md5 already (a mirror's, whose long text is in the mirror's own
    Translation) are left out: their text here would not match that md5."""
    found: dict[tuple[bytes, str], bytes] = {}
    for text in documents:
        for para in di.PARAGRAPH_END.split(text.strip(b"\n")):
            name, desc = PACKAGE.search(para), DESCRIPTION.search(para)
            if name is None or desc is None or HAS_MD5.search(para):
                continue
            value = desc.group(1).rstrip(b"\n")
            md5 = hashlib.md5(value + b"\n", usedforsecurity=False).hexdigest()
            found.setdefault((name.group(1), md5), value)
    return b"".join(b"Package: %s\nDescription-md5: %s\nDescription-en: %s\n\n" % (name, md5.encode(), value)
                    for (name, md5), value in sorted(found.items()))


# ---------------------------------------------------------------------------- Contents
def contents_text(lines: Mapping[str, set[str]]) -> bytes:
    """A Contents document from path -> locations (`section/package`)."""
    out = [f"{path:<55} {','.join(sorted(locations))}\n" for path, locations in sorted(lines.items())]
    return "".join(out).encode()


def contents_by_index(entries: Iterable[tuple[str, str, str, Iterable[str]]],
                      architectures: set[str]) -> dict[tuple[str, str], bytes]:
    """Contents per (component, arch) from (component, arch, location, paths) entries; `all`
    packages are in Contents-all and in every architecture's Contents (as in Packages)."""
    lines: dict[tuple[str, str], dict[str, set[str]]] = {}
    for component, arch, location, paths in entries:
        for target in ({"all"} | architectures if arch == "all" else {arch}):
            table = lines.setdefault((component, target), {})
            for path in paths:
                table.setdefault(path, set()).add(location)
    return {key: contents_text(table) for key, table in lines.items()}


def merge_contents(documents: Iterable[bytes]) -> bytes:
    """One Contents document from several (the locations of a path joined)."""
    lines: dict[str, set[str]] = {}
    for text in documents:
        for line in text.decode("utf-8", "replace").splitlines():
            path, _, locations = line.rstrip().rpartition(" ")
            if path.strip() and locations:
                lines.setdefault(path.strip(), set()).update(locations.split(","))
    return contents_text(lines)


SOURCE_KEY = re.compile(rb"^(Package|Version):[ \t]*(\S+)", re.M)


def merge_sources(documents: Iterable[bytes]) -> bytes:
    """One Sources document from several (first occurrence of a package/version wins)."""
    seen: set[tuple[bytes, ...]] = set()
    out = []
    for text in documents:
        for para in di.PARAGRAPH_END.split(text.strip(b"\n")):
            key = tuple(sorted(SOURCE_KEY.findall(para)))
            if key and key not in seen:
                seen.add(key)
                out.append(para.rstrip(b"\n") + b"\n\n")
    return b"".join(out)
