"""Opkg feed documents (pure functions, run in worker threads): .ipk control data, Packages,
and usign signatures (OpenWrt's signify-compatible Ed25519 format)."""
from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import re
import tarfile
from dataclasses import dataclass
from typing import Iterable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

NAME = re.compile(r"^[a-z0-9][a-z0-9+.-]*$")
ARCH = re.compile(r"^[A-Za-z0-9_-]+$")
STRIPPED = ("filename", "size", "sha256sum", "md5sum")     # fields depot writes itself
MAX_CONTROL = 1 * 2**20


class BadPackage(ValueError):
    """An .ipk (or feed index) that cannot be used."""


@dataclass(frozen=True)
class IpkInfo:
    package: str
    version: str
    architecture: str
    control: str          # the control paragraph (no trailing newline)


def _members(data: bytes) -> dict[str, bytes]:
    """The outer members of an .ipk: an ar archive (Yocto, old OpenWrt) or a tar.gz (ipkg-build)."""
    out: dict[str, bytes] = {}
    if data.startswith(b"!<arch>\n"):
        pos = 8
        while pos + 60 <= len(data):
            header = data[pos:pos + 60]
            name = header[:16].decode("ascii", "replace").strip().rstrip("/")
            try:
                size = int(header[48:58].decode().strip())
            except ValueError:
                raise BadPackage("malformed ar member header") from None
            out[name.lstrip("./")] = data[pos + 60:pos + 60 + size]
            pos += 60 + size + (size % 2)
        return out
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            for member in tar:
                if member.isfile() and member.name.lstrip("./") in ("debian-binary", "control.tar.gz"):
                    handle = tar.extractfile(member)
                    out[member.name.lstrip("./")] = handle.read() if handle else b""
    except (tarfile.TarError, OSError, EOFError, gzip.BadGzipFile) as exc:
        raise BadPackage(f"not an .ipk (ar or tar.gz archive): {exc}") from None
    return out


def read_ipk(data: bytes) -> IpkInfo:
    """The control data of an .ipk, checked."""
    control_tar = _members(data).get("control.tar.gz")
    if control_tar is None:
        raise BadPackage("the .ipk has no control.tar.gz")
    try:
        with tarfile.open(fileobj=io.BytesIO(control_tar), mode="r:gz") as tar:
            found = next((m for m in tar if m.name.lstrip("./") == "control"), None)
            if found is None or not found.isfile() or found.size > MAX_CONTROL:
                raise BadPackage("control.tar.gz has no control file")
            handle = tar.extractfile(found)
            text = (handle.read() if handle else b"").decode("utf-8")
    except (tarfile.TarError, OSError, EOFError, gzip.BadGzipFile, UnicodeDecodeError) as exc:
        raise BadPackage(f"control.tar.gz cannot be read: {exc}") from None
    fields = parse_stanza(text)
    missing = [f for f in ("Package", "Version", "Architecture") if not fields.get(f.lower())]
    if missing:
        raise BadPackage(f"control file lacks {', '.join(missing)}")
    package, version, arch = fields["package"], fields["version"], fields["architecture"]
    if not NAME.match(package) or not ARCH.match(arch) or not re.match(r"^[A-Za-z0-9.+~:-]+$", version):
        raise BadPackage(f"invalid Package {package!r}, Version {version!r} or Architecture {arch!r}")
    kept = [line for line in _lines(text) if line.split(":", 1)[0].strip().lower() not in STRIPPED]
    return IpkInfo(package, version, arch, "\n".join(kept).strip("\n"))


def _lines(text: str) -> list[str]:
    """Logical lines of a stanza: a field and its continuation lines joined with newlines."""
    out: list[str] = []
    for line in text.strip("\n").splitlines():
        if line[:1] in (" ", "\t") and out:
            out[-1] += "\n" + line
        elif line.strip():
            out.append(line)
    return out


def parse_stanza(text: str) -> dict[str, str]:
    """Field (lower-case) -> value of one stanza."""
    fields: dict[str, str] = {}
    for line in _lines(text):
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip().lower()] = value.strip()
    return fields


def filename_of(info: IpkInfo) -> str:
    """OpenWrt's file name: <package>_<version>_<arch>.ipk (an epoch's ':' is not kept)."""
    return f"{info.package}_{info.version.split(':')[-1]}_{info.architecture}.ipk"


def stanza(control: str, filename: str, size: int, sha256: str) -> str:
    return f"{control}\nFilename: {filename}\nSize: {size}\nSHA256sum: {sha256}\n"


def packages_text(stanzas: Iterable[str]) -> bytes:
    return "\n".join(s.rstrip("\n") + "\n" for s in stanzas).encode()


def stanzas_of(text: bytes) -> list[str]:
    return [s for s in re.split(r"\n\s*\n", text.decode("utf-8", "replace")) if s.strip()]


def merge(documents: Iterable[bytes]) -> bytes:
    """One Packages from several (a group): the first member wins a package/version/arch."""
    seen: set[tuple[str, str, str]] = set()
    out = []
    for text in documents:
        for block in stanzas_of(text):
            fields = parse_stanza(block)
            key = (fields.get("package", ""), fields.get("version", ""), fields.get("architecture", ""))
            if key not in seen:
                seen.add(key)
                out.append(block)
    return packages_text(out)


def sha256_of(text: bytes, filename: str) -> str | None:
    """The SHA256sum a Packages document promises for `filename`."""
    for block in stanzas_of(text):
        fields = parse_stanza(block)
        if fields.get("filename", "").rsplit("/", 1)[-1] == filename and re.fullmatch(
                r"[0-9a-f]{64}", fields.get("sha256sum", "")):
            return fields["sha256sum"]
    return None


def gz(body: bytes) -> bytes:
    return gzip.compress(body, mtime=0)


# ---------------------------------------------------------------- usign (signify format)

def new_usign_key() -> bytes:
    """A new key as depot stores it: JSON with the 8-byte key number and the Ed25519 seed."""
    seed = Ed25519PrivateKey.generate().private_bytes_raw()
    return json.dumps({"keynum": os.urandom(8).hex(), "seed": base64.b64encode(seed).decode()}).encode()


def _load(secret: bytes) -> tuple[bytes, Ed25519PrivateKey]:
    data = json.loads(secret)
    return bytes.fromhex(data["keynum"]), Ed25519PrivateKey.from_private_bytes(base64.b64decode(data["seed"]))


def usign_public(secret: bytes) -> bytes:
    """The public key file opkg keeps in /etc/opkg/keys/<keynum>."""
    keynum, key = _load(secret)
    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return (f"untrusted comment: public key {keynum.hex()}\n"
            + base64.b64encode(b"Ed" + keynum + raw).decode() + "\n").encode()


def usign_keynum(secret: bytes) -> str:
    return _load(secret)[0].hex()


def usign_sign(secret: bytes, message: bytes) -> bytes:
    """Packages.sig: `usign -S` / `signify -S` output over `message`."""
    keynum, key = _load(secret)
    return (f"untrusted comment: signed by key {keynum.hex()}\n"
            + base64.b64encode(b"Ed" + keynum + key.sign(message)).decode() + "\n").encode()


def digest(parts: Iterable[str]) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def offered(text: bytes) -> list[tuple[str, str]]:
    """(package, version) of every stanza, the version as file names write it (no epoch)."""
    out = []
    for block in stanzas_of(text):
        fields = parse_stanza(block)
        if fields.get("package"):
            out.append((fields["package"], fields.get("version", "").split(":")[-1]))
    return out


def without(text: bytes, hidden: frozenset[tuple[str, str]]) -> bytes:
    """The Packages document without the stanzas of hidden (package, version) pairs."""
    kept = []
    for block in stanzas_of(text):
        fields = parse_stanza(block)
        if (fields.get("package", ""), fields.get("version", "").split(":")[-1]) not in hidden:
            kept.append(block)
    return packages_text(kept)
