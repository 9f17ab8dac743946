"""The machine's own apt sources: the default upstream of a Debian proxy that names none.

apt reads `sources.list` (one-line form) and then `sources.list.d/*.list` (one-line) and
`*.sources` (deb822) in name order; the first enabled `deb` URI is the answer. No archive host is
spelled out in depot: whatever mirror the machine uses is the one depot proxies.
"""
from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Iterator

from debian import deb822

log = logging.getLogger("depot.debian")

APT_ETC = Path("/etc/apt")


def one_line_uris(text: str) -> Iterator[str]:
    """URIs of `deb` lines in the one-line format (`deb [options] uri suite [components]`)."""
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        words = line.split()
        if not words or words[0] != "deb":
            continue
        rest = line[3:].strip()
        if rest.startswith("["):
            rest = rest.partition("]")[2].strip()
        if rest:
            yield rest.split()[0]


def deb822_uris(text: str) -> Iterator[str]:
    """URIs of enabled `Types: deb` stanzas in the deb822 format."""
    for para in deb822.Deb822.iter_paragraphs(io.StringIO(text), use_apt_pkg=False):
        if "deb" not in para.get("Types", "").split():
            continue
        if para.get("Enabled", "yes").strip().lower() == "no":
            continue
        yield from para.get("URIs", "").split()


def source_files(etc: Path = APT_ETC) -> list[Path]:
    """The files apt reads, in apt's order."""
    files = [etc / "sources.list"]
    parts = etc / "sources.list.d"
    if parts.is_dir():
        files += sorted(p for p in parts.iterdir() if p.suffix in (".list", ".sources"))
    return [f for f in files if f.is_file()]


def first_deb_uri(etc: Path = APT_ETC) -> str | None:
    """The first `deb` URI of the machine's apt sources (None when there is none)."""
    for path in source_files(etc):
        try:
            text = path.read_text(errors="replace")
        except OSError as exc:
            log.warning("cannot read apt source file=%s error=%s", path, exc)
            continue
        uris = deb822_uris(text) if path.suffix == ".sources" else one_line_uris(text)
        for uri in uris:
            if uri.startswith(("http://", "https://")):
                return uri.rstrip("/") + "/"
    return None
