"""Hex package tarballs (version 3): an uncompressed tar of VERSION, CHECKSUM, metadata.config
(Erlang terms) and contents.tar.gz. Read and checked at publish (blocking: run in a thread)."""
from __future__ import annotations

import hashlib
import io
import re
import tarfile
from typing import Any

NAME = r"[a-z][a-z0-9_]*"
VERSION = r"\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?"
MAX_META = 1 * 2**20
TOKEN = re.compile(r'\s*(?:(<<")((?:[^"\\]|\\.)*)(">>)|(")((?:[^"\\]|\\.)*)"|(\'(?:[^\'\\]|\\.)*\')'
                   r"|(-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)|([a-z][A-Za-z0-9_@]*)|(=>|#\{|[{}\[\],.|]))")


class BadTarball(ValueError):
    """Not a Hex package tarball, or one whose metadata is unusable."""


def parse_terms(text: str) -> list[Any]:
    """Erlang terms ending with '.', as hex_core writes metadata.config: binaries and strings
    become str, lists list, tuples tuple, maps dict, atoms str (true/false bool)."""
    tokens: list[tuple[str, Any]] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        found = TOKEN.match(text, pos)
        if not found or found.end() == pos:
            raise BadTarball(f"metadata.config: cannot parse near {text[pos:pos + 20]!r}")
        pos = found.end()
        g = found.groups()
        if g[0]:
            tokens.append(("v", _unescape(g[1])))
        elif g[3]:
            tokens.append(("v", _unescape(g[4])))
        elif g[5]:
            tokens.append(("v", g[5][1:-1]))
        elif g[6]:
            tokens.append(("v", float(g[6]) if "." in g[6] else int(g[6])))
        elif g[7]:
            tokens.append(("v", {"true": True, "false": False}.get(g[7], g[7])))
        else:
            tokens.append(("p", g[8]))
    out, i = [], 0
    while i < len(tokens):
        term, i = _term(tokens, i)
        if i >= len(tokens) or tokens[i] != ("p", "."):
            raise BadTarball("metadata.config: a term does not end with '.'")
        out.append(term)
        i += 1
    return out


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def _term(tokens: list[tuple[str, Any]], i: int) -> tuple[Any, int]:
    if i >= len(tokens):
        raise BadTarball("metadata.config ends early")
    kind, value = tokens[i]
    if kind == "v":
        return value, i + 1
    closing = {"{": "}", "[": "]", "#{": "}"}.get(value)
    if closing is None:
        raise BadTarball(f"metadata.config: unexpected {value!r}")
    items: list[Any] = []
    i += 1
    while tokens[i:i + 1] != [("p", closing)]:
        item, i = _term(tokens, i)
        if value == "#{":
            if tokens[i:i + 1] != [("p", "=>")]:
                raise BadTarball("metadata.config: a map entry lacks '=>'")
            val, i = _term(tokens, i + 1)
            item = (item, val)
        items.append(item)
        if tokens[i:i + 1] == [("p", ",")]:
            i += 1
        elif tokens[i:i + 1] != [("p", closing)]:
            raise BadTarball("metadata.config: expected ',' or a closing bracket")
    i += 1
    if value == "{":
        return tuple(items), i
    if value == "#{":
        return dict(items), i
    if items and all(isinstance(x, int) for x in items):
        return "".join(map(chr, items)), i            # a string written as a list of codes
    return items, i


def _pairs(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    if isinstance(value, list) and all(isinstance(x, tuple) and len(x) == 2 for x in value):
        return dict(value)
    return {}


def read(data: bytes) -> dict[str, Any]:
    """name, version, requirements ([{name, requirement, optional, app, repository}]),
    inner and outer checksums (hex) of a Hex tarball; BadTarball otherwise."""
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            files = {}
            for member in tar:
                if member.name in ("VERSION", "CHECKSUM", "metadata.config", "contents.tar.gz") and member.isfile():
                    if member.name != "contents.tar.gz" and member.size > MAX_META:
                        raise BadTarball(f"{member.name} is too big")
                    handle = tar.extractfile(member)
                    files[member.name] = handle.read() if handle else b""
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise BadTarball(f"not a Hex package tarball: {exc}") from None
    missing = {"VERSION", "metadata.config", "contents.tar.gz"} - set(files)
    if missing:
        raise BadTarball(f"not a Hex package tarball: missing {', '.join(sorted(missing))}")
    if files["VERSION"].strip() != b"3":
        raise BadTarball("only Hex tarball version 3 is supported")
    inner = hashlib.sha256(files["VERSION"] + files["metadata.config"] + files["contents.tar.gz"]).hexdigest()
    if "CHECKSUM" in files and files["CHECKSUM"].strip().decode("ascii", "replace").lower() != inner:
        raise BadTarball("CHECKSUM does not match the tarball's contents")
    meta = dict(t for t in parse_terms(files["metadata.config"].decode("utf-8", "replace"))
                if isinstance(t, tuple) and len(t) == 2)
    name, version = str(meta.get("name", "")), str(meta.get("version", ""))
    if not re.fullmatch(NAME, name):
        raise BadTarball(f"metadata.config: name {name!r} is not a valid package name")
    if not re.fullmatch(VERSION, version):
        raise BadTarball(f"metadata.config: version {version!r} is not a semantic version")
    return {"name": name, "version": version, "requirements": _requirements(meta.get("requirements", [])),
            "inner_checksum": inner, "outer_checksum": hashlib.sha256(data).hexdigest()}


def _requirements(raw: Any) -> list[dict[str, Any]]:
    out = []
    for entry in (raw.items() if isinstance(raw, dict) else raw or []):
        if isinstance(entry, tuple) and len(entry) == 2 and isinstance(entry[0], str):
            props = _pairs(entry[1])
            name = entry[0]
        else:                                         # older lists of property lists
            props = _pairs(entry)
            name = props.get("name")  # type: ignore[assignment]
        if not isinstance(name, str) or not isinstance(props.get("requirement"), str):
            raise BadTarball("metadata.config: a requirement lacks a name or a requirement")
        out.append({"name": name, "requirement": props["requirement"], "optional": props.get("optional") is True,
                    "app": str(props.get("app", name)), "repository": props.get("repository")})
    return out
