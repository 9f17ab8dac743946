"""The RubyGems compact index as text: `/info/<gem>`, `/versions`, `/names`, parsed and generated.

An info file is `---` then one line per version: `<version>[-<platform>] <dep>:<req>&<req>,…|
checksum:<sha256>[,ruby:<req>][,rubygems:<req>]`. `/versions` is `created_at: …`, `---`, then
`<gem> <v>[,<v>…] <md5 of its info file>` lines; the file is append-only upstream, so a gem may
appear on several lines (later ones add versions, `-<v>` removes one) and its last line carries
the current MD5. Bundler checks every answer against `ETag: "<md5 of the body>"`.
"""
from __future__ import annotations

import base64
import hashlib
import re
from typing import Any, Iterable, Mapping

HEADER = "---\n"
VERSIONS_HEADER = "created_at: 2024-01-01T00:00:00Z\n---\n"
GEM_FILE = re.compile(r"(?P<stem>[A-Za-z0-9._-]+)\.gem\Z")


def md5(body: bytes) -> str:
    return hashlib.md5(body, usedforsecurity=False).hexdigest()


def info_lines(body: bytes) -> list[tuple[str, str]]:
    """(head, line) for every version line of an info file; head is `version[-platform]`."""
    out = []
    for line in body.decode("utf-8", "replace").splitlines():
        if not line or line == "---" or " " not in line:
            continue
        out.append((line.split(" ", 1)[0], line))
    return out


def render_info(lines: Iterable[str]) -> bytes:
    return (HEADER + "".join(line + "\n" for line in lines)).encode()


def merge_info(bodies: Iterable[bytes]) -> bytes:
    """Info files of several repositories as one; the first one listing a version wins."""
    seen: set[str] = set()
    merged = []
    for body in bodies:
        for head, line in info_lines(body):
            if head not in seen:
                seen.add(head)
                merged.append(line)
    return render_info(merged)


def add_info_line(old: bytes | None, line: str) -> bytes:
    """An info file with one more version line; ValueError when that version is there."""
    head = line.split(" ", 1)[0]
    lines = info_lines(old or b"")
    if any(h == head for h, _ in lines):
        raise ValueError(f"version {head} is already in the index")
    return render_info([text for _, text in lines] + [line])


def remove_info_line(old: bytes | None, head: str) -> bytes | None:
    """The info file without one version (None: unchanged)."""
    lines = info_lines(old or b"")
    kept = [text for h, text in lines if h != head]
    return None if len(kept) == len(lines) else render_info(kept)


def checksum_of(body: bytes, head: str) -> str | None:
    """The sha256 an info file promises for `version[-platform]`."""
    for h, line in info_lines(body):
        if h == head:
            found = re.search(r"(?:\||,)checksum:([0-9a-f]{64})", line)
            return found.group(1) if found else None
    return None


def split_head(head: str) -> tuple[str, str]:
    """(`version`, `platform`) of an info head (`1.0-x86_64-linux` -> 1.0, x86_64-linux)."""
    version, _, platform = head.partition("-")
    return version, platform or "ruby"


def dependencies(name: str, body: bytes) -> list[dict[str, Any]]:
    """Dependency API entries (name, number, platform, dependencies) of an info file."""
    out = []
    for head, line in info_lines(body):
        version, platform = split_head(head)
        deps_part = line.split(" ", 1)[1].split("|", 1)[0]
        deps = []
        for dep in filter(None, deps_part.split(",")):
            dep_name, _, req = dep.partition(":")
            deps.append((dep_name, ", ".join(req.split("&")) or ">= 0"))
        out.append({"name": name, "number": version, "platform": platform, "dependencies": deps})
    return out


def parse_versions(body: bytes) -> dict[str, tuple[list[str], str]]:
    """gem -> (heads, md5 of its info file) from a versions file (appended lines folded)."""
    gems: dict[str, tuple[list[str], str]] = {}
    past_header = False
    for line in body.decode("utf-8", "replace").splitlines():
        if not past_header:
            past_header = line == "---"
            continue
        parts = line.split(" ")
        if len(parts) != 3:
            continue
        name, heads, digest = parts
        current = list(gems.get(name, ([], ""))[0])
        for head in heads.split(","):
            if head.startswith("-"):
                if head[1:] in current:
                    current.remove(head[1:])
            elif head and head not in current:
                current.append(head)
        gems[name] = (current, digest)
    return gems


def render_versions(gems: dict[str, tuple[list[str], str]]) -> bytes:
    """A versions file, one line per gem with versions, in name order."""
    lines = [f"{name} {','.join(heads)} {digest}\n" for name, (heads, digest) in sorted(gems.items()) if heads]
    return (VERSIONS_HEADER + "".join(lines)).encode()


def render_names(names: Iterable[str]) -> bytes:
    return (HEADER + "".join(n + "\n" for n in sorted(set(names)))).encode()


def gem_candidates(filename: str) -> list[tuple[str, str]]:
    """(gem, `version[-platform]`) readings of a .gem file name: the name may itself hold
    dashes, so every split before a digit is a candidate (the info file decides)."""
    found = GEM_FILE.match(filename)
    if found is None:
        return []
    stem = found["stem"]
    return [(stem[:i], stem[i + 1:]) for i, c in enumerate(stem)
            if c == "-" and i > 0 and stem[i + 1:i + 2].isdigit()]


def representation_digests(headers: Mapping[str, str]) -> tuple[str | None, str | None]:
    """(sha256 base64, md5 hex) the upstream promises for the whole document: `Repr-Digest:
    sha-256=:<b64>:` (or the older `Digest: sha-256=<b64>`), and an ETag that is a quoted MD5
    (rubygems.org's and depot's compact index; bundler 2.3 checks it)."""
    sha256 = None
    found = re.search(r"sha-256=:([A-Za-z0-9+/=]+):", headers.get("Repr-Digest", "")) or \
        re.search(r"sha-256=([A-Za-z0-9+/=]+)", headers.get("Digest", ""))
    if found:
        sha256 = found.group(1)
    etag = re.fullmatch(r'(?:W/)?"([0-9a-f]{32})"', headers.get("ETag", "").strip())
    return sha256, etag.group(1) if etag else None


def appended(old: bytes, part: bytes, headers: Mapping[str, str]) -> bytes | None:
    """The versions file after a `Range: bytes=<len(old) - 1>-` answer, as bundler builds it:
    the answer's first byte must be the copy's last one, and the whole file must match the
    digest the upstream sends (Repr-Digest, else an MD5 ETag); None when it does not (or when
    the upstream sends no digest to check against): the caller fetches the file whole."""
    found = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+|\*)", headers.get("Content-Range", "").strip())
    if not old or not part or part[:1] != old[-1:] or found is None or int(found.group(1)) != len(old) - 1:
        return None
    body = old + part[1:]
    if found.group(3) != "*" and int(found.group(3)) != len(body):
        return None
    sha256, etag_md5 = representation_digests(headers)
    if sha256 is not None:
        return body if base64.b64encode(hashlib.sha256(body).digest()).decode() == sha256 else None
    if etag_md5 is not None:
        return body if md5(body) == etag_md5 else None
    return None
