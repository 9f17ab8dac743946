"""The few Hex registry messages (hex_core's signed.proto, names.proto, versions.proto,
package.proto) as a tiny hand-written protobuf encoder/decoder, and their RSA signing
(PKCS#1 v1.5 over SHA-512, as hex_core verifies)."""
from __future__ import annotations

import gzip
from dataclasses import dataclass, field
from typing import Iterator

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa


class BadRegistry(ValueError):
    """A registry resource that does not parse or whose signature does not verify."""


# ---------------------------------------------------------------------- wire format
def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, value: bytes | str | int | bool) -> bytes:
    if isinstance(value, (bool, int)):
        return _varint(number << 3) + _varint(int(value))
    data = value.encode() if isinstance(value, str) else value
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def _fields(data: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) of a message: ints for varints, bytes for length-delimited."""
    pos = 0
    while pos < len(data):
        key, pos = _read_varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _read_varint(data, pos)
            yield number, value
        elif wire == 2:
            size, pos = _read_varint(data, pos)
            if pos + size > len(data):
                raise BadRegistry("truncated protobuf field")
            yield number, data[pos:pos + size]
            pos += size
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
        else:
            raise BadRegistry(f"unsupported protobuf wire type {wire}")


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise BadRegistry("truncated protobuf varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


# ---------------------------------------------------------------------- messages
@dataclass
class Dependency:
    package: str
    requirement: str
    optional: bool = False
    app: str | None = None
    repository: str | None = None

    def encode(self) -> bytes:
        out = _field(1, self.package) + _field(2, self.requirement)
        if self.optional:
            out += _field(3, True)
        if self.app is not None:
            out += _field(4, self.app)
        if self.repository is not None:
            out += _field(5, self.repository)
        return out


@dataclass
class Release:
    version: str
    inner_checksum: bytes
    outer_checksum: bytes
    dependencies: list[Dependency] = field(default_factory=list)

    def encode(self) -> bytes:
        return (_field(1, self.version) + _field(2, self.inner_checksum)
                + b"".join(_field(3, d.encode()) for d in self.dependencies) + _field(5, self.outer_checksum))


def encode_package(name: str, repository: str, releases: list[Release]) -> bytes:
    return b"".join(_field(1, r.encode()) for r in releases) + _field(2, name) + _field(3, repository)


def encode_names(repository: str, names: list[str]) -> bytes:
    return b"".join(_field(1, _field(1, n)) for n in names) + _field(2, repository)


def encode_versions(repository: str, packages: dict[str, list[str]]) -> bytes:
    return b"".join(_field(1, _field(1, name) + b"".join(_field(2, v) for v in versions))
                    for name, versions in packages.items()) + _field(2, repository)


def package_checksums(payload: bytes) -> tuple[str, dict[str, str]]:
    """(repository, {version: outer checksum hex}) of a Package payload."""
    repository, out = "", {}
    for number, value in _fields(payload):
        if number == 3 and isinstance(value, bytes):
            repository = value.decode()
        elif number == 1 and isinstance(value, bytes):
            version, outer = "", ""
            for n, v in _fields(value):
                if n == 1 and isinstance(v, bytes):
                    version = v.decode()
                elif n == 5 and isinstance(v, bytes):
                    outer = v.hex()
            out[version] = outer
    return repository, out


# ---------------------------------------------------------------------- signing
def sign_document(payload: bytes, private_pem: bytes) -> bytes:
    """gzip(Signed{payload, signature}) — what /names, /versions and /packages/<name> serve."""
    key = serialization.load_pem_private_key(private_pem, password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    signature = key.sign(payload, padding.PKCS1v15(), hashes.SHA512())
    return gzip.compress(_field(1, payload) + _field(2, signature), mtime=0)


def verify_document(body: bytes, public_pem: bytes | None) -> bytes:
    """The payload of a gzipped signed resource; its signature checked when a key is given."""
    try:
        signed = gzip.decompress(body)
    except (OSError, EOFError) as exc:
        raise BadRegistry(f"not gzip: {exc}") from None
    parts = dict(_fields(signed))
    payload, signature = parts.get(1), parts.get(2)
    if not isinstance(payload, bytes):
        raise BadRegistry("no payload in the signed resource")
    if public_pem is not None:
        key = serialization.load_pem_public_key(public_pem)
        assert isinstance(key, rsa.RSAPublicKey)
        try:
            key.verify(signature if isinstance(signature, bytes) else b"", payload, padding.PKCS1v15(),
                       hashes.SHA512())
        except InvalidSignature:
            raise BadRegistry("the registry signature does not verify with the configured public key") from None
    return payload


def generate_key() -> tuple[bytes, bytes]:
    """A new RSA-2048 key: (private PEM, public PEM)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return private, public_of(private)


def public_of(private_pem: bytes) -> bytes:
    key = serialization.load_pem_private_key(private_pem, password=None)
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


# ---------------------------------------------------------------------- merging (groups)
def decode_names(payload: bytes) -> list[str]:
    return [v.decode() for n, p in _fields(payload) if n == 1 and isinstance(p, bytes)
            for k, v in _fields(p) if k == 1 and isinstance(v, bytes)]


def decode_versions(payload: bytes) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for number, package in _fields(payload):
        if number == 1 and isinstance(package, bytes):
            parts = list(_fields(package))
            name = next((v.decode() for k, v in parts if k == 1 and isinstance(v, bytes)), "")
            out[name] = [v.decode() for k, v in parts if k == 2 and isinstance(v, bytes)]
    return out


def decode_releases(payload: bytes) -> list[tuple[str, bytes]]:
    """(version, the Release message as it is) of a Package payload."""
    out = []
    for number, release in _fields(payload):
        if number == 1 and isinstance(release, bytes):
            version = next((v.decode() for k, v in _fields(release) if k == 1 and isinstance(v, bytes)), "")
            out.append((version, release))
    return out


def encode_package_raw(name: str, repository: str, releases: list[bytes]) -> bytes:
    return b"".join(_field(1, r) for r in releases) + _field(2, name) + _field(3, repository)


def merge_payloads(path: str, repository: str, payloads: list[bytes]) -> bytes:
    """Members' payloads of `path` merged (the first member having a version wins), for re-signing."""
    if path == "names":
        return encode_names(repository, sorted({n for p in payloads for n in decode_names(p)}))
    if path == "versions":
        merged: dict[str, list[str]] = {}
        for payload in payloads:
            for name, versions in decode_versions(payload).items():
                merged.setdefault(name, [])
                merged[name] += [v for v in versions if v not in merged[name]]
        return encode_versions(repository, dict(sorted(merged.items())))
    seen: dict[str, bytes] = {}
    for payload in payloads:
        for version, raw in decode_releases(payload):
            seen.setdefault(version, raw)
    return encode_package_raw(path.removeprefix("packages/"), repository, list(seen.values()))


# ---------------------------------------------------------------------- supply-chain policy (proxies)
def _repository_of(payload: bytes, number: int) -> str:
    return next((v.decode() for n, v in _fields(payload) if n == number and isinstance(v, bytes)), "")


def payload_versions(path: str, payload: bytes) -> list[tuple[str, str]]:
    """(package, version) pairs a /versions or /packages/<name> payload offers (none for /names)."""
    if path == "versions":
        return [(name, v) for name, versions in decode_versions(payload).items() for v in versions]
    if path.startswith("packages/"):
        name = path.removeprefix("packages/")
        return [(name, version) for version, _ in decode_releases(payload)]
    return []


def without(path: str, payload: bytes, hidden: frozenset[tuple[str, str]]) -> bytes:
    """The payload without the hidden (package, version) pairs (for re-signing by the proxy)."""
    if path == "versions":
        kept = {name: [v for v in versions if (name, v) not in hidden]
                for name, versions in decode_versions(payload).items()}
        return encode_versions(_repository_of(payload, 2), {n: vs for n, vs in kept.items() if vs})
    if path.startswith("packages/"):
        name = path.removeprefix("packages/")
        return encode_package_raw(name, _repository_of(payload, 3),
                                  [raw for version, raw in decode_releases(payload) if (name, version) not in hidden])
    return payload
