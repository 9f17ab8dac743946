"""OCI / Docker manifests as pure data: validation of names, references and manifest bodies.

Nothing here does I/O. `parse_manifest` turns uploaded bytes into a `Manifest` that says which
blobs and child manifests it references, its subject, and the descriptor the referrers API
answers for it. Spec: OCI distribution-spec v1.1, image-spec v1.1, Docker image manifest v2.2.
"""
from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from .base import FormatError

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
IMAGE_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
MANIFEST_TYPES = IMAGE_TYPES + INDEX_TYPES
# what depot asks an upstream for when the client's Accept says nothing useful
DEFAULT_ACCEPT = ", ".join(MANIFEST_TYPES)

NAME_RE = re.compile(r"[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*")
TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
# digest algorithms the image spec registers; the blob store itself is sha256-addressed, a
# sha512 digest is an alias checked when the bytes arrive (upload or proxy fill)
HEX_LENGTHS = {"sha256": 64, "sha512": 128}
DIGEST_RE = re.compile(r"sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128}")
ANY_DIGEST_RE = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+")
MAX_NAME = 255
MAX_MANIFEST = 4 * 2**20
# layers clients never push (Windows foreign layers): no blob check for these
NONDISTRIBUTABLE = ("application/vnd.oci.image.layer.nondistributable.",
                    "application/vnd.docker.image.rootfs.foreign.")


class OciError(FormatError):
    """A FormatError carrying an OCI error code and optional detail."""

    def __init__(self, status: int, code: str, message: str, detail: Any = None) -> None:
        super().__init__(status, message, code)
        self.detail = detail


def error_body(code: str, message: str, detail: Any = None) -> bytes:
    """The spec's error JSON: {"errors":[{"code","message","detail"}]}."""
    item: dict[str, Any] = {"code": code, "message": message}
    item["detail"] = detail if detail is not None else {}
    return json.dumps({"errors": [item]}).encode()


def validate_name(name: str) -> str:
    """A repository (image) name per the distribution spec, or NAME_INVALID."""
    if not name or len(name) > MAX_NAME or not NAME_RE.fullmatch(name):
        raise OciError(400, "NAME_INVALID", "invalid repository name", {"name": name})
    return name


def validate_digest(digest: str) -> str:
    """'sha256:<64 hex>' or 'sha512:<128 hex>', else DIGEST_INVALID (other algorithms: UNSUPPORTED)."""
    if DIGEST_RE.fullmatch(digest):
        return digest
    if ANY_DIGEST_RE.fullmatch(digest) and digest.split(":", 1)[0] not in HEX_LENGTHS:
        raise OciError(400, "UNSUPPORTED", "only sha256 and sha512 digests are supported",
                       {"digest": digest})
    raise OciError(400, "DIGEST_INVALID", "invalid digest", {"digest": digest})


def is_digest(reference: str) -> bool:
    """Whether a manifest reference names a digest (else it is a tag)."""
    return ":" in reference


def validate_reference(reference: str) -> str:
    """A tag or a digest; MANIFEST_INVALID / DIGEST_INVALID when neither (for writes)."""
    if is_digest(reference):
        return validate_digest(reference)
    if not TAG_RE.fullmatch(reference):
        raise OciError(400, "MANIFEST_INVALID", "invalid tag", {"tag": reference})
    return reference


def read_reference(reference: str) -> str:
    """A reference to read: a name that cannot be a tag names no manifest (404 MANIFEST_UNKNOWN,
    as the distribution spec's tests expect); a malformed digest stays DIGEST_INVALID."""
    if not is_digest(reference) and not TAG_RE.fullmatch(reference):
        raise OciError(404, "MANIFEST_UNKNOWN", "no manifest with that reference", {"reference": reference})
    return validate_reference(reference)


def sha256_digest(body: bytes) -> str:
    """'sha256:<hex>' of bytes."""
    return "sha256:" + hashlib.sha256(body).hexdigest()


def digest_with(algorithm: str, body: bytes) -> str:
    """'<algorithm>:<hex>' of bytes (sha256 or sha512)."""
    return f"{algorithm}:{hashlib.new(algorithm, body).hexdigest()}"


def algorithm_of(digest: str) -> str:
    """'sha512' of 'sha512:…'."""
    return digest.split(":", 1)[0]


def hex_of(digest: str) -> str:
    """The hex part of a validated digest (the blob store's address only for sha256)."""
    return digest.split(":", 1)[1]


def sri_of(digest: str) -> str | None:
    """A sha512 digest as the engine's SRI check ("sha512-<base64>"); None for sha256."""
    if algorithm_of(digest) == "sha256":
        return None
    return f"{algorithm_of(digest)}-{base64.b64encode(bytes.fromhex(hex_of(digest))).decode()}"


@dataclass
class Manifest:
    """What depot needs to know about one stored manifest."""

    media_type: str
    digest: str                                          # as the client addresses it
    size: int
    sha256: str = ""                                     # hex: where the bytes are stored
    blobs: list[str] = field(default_factory=list)       # config + layers (digests)
    manifests: list[str] = field(default_factory=list)   # children of an index (digests)
    subject: str | None = None
    artifact_type: str | None = None
    annotations: dict[str, str] | None = None

    def meta(self) -> dict[str, Any]:
        """The catalog meta of the stored manifest."""
        return {"media_type": self.media_type, "digest": self.digest, "blobs": self.blobs,
                "manifests": self.manifests, "subject": self.subject,
                "artifact_type": self.artifact_type, "annotations": self.annotations}

    def descriptor(self) -> dict[str, Any]:
        """The descriptor the referrers API lists for this manifest."""
        return descriptor_of(self.meta(), self.size)


def descriptor_of(meta: dict[str, Any], size: int) -> dict[str, Any]:
    """A referrers-API descriptor from stored catalog meta."""
    out: dict[str, Any] = {"mediaType": meta["media_type"], "digest": meta["digest"], "size": size}
    if meta.get("artifact_type"):
        out["artifactType"] = meta["artifact_type"]
    if meta.get("annotations"):
        out["annotations"] = meta["annotations"]
    return out


def _invalid(message: str, detail: Any = None) -> OciError:
    return OciError(400, "MANIFEST_INVALID", message, detail)


def _descriptor(value: Any, where: str) -> dict[str, Any]:
    """Validate one descriptor object (mediaType, digest, size)."""
    if not isinstance(value, dict):
        raise _invalid(f"{where} is not a descriptor")
    digest, size = value.get("digest"), value.get("size")
    if not isinstance(digest, str) or not DIGEST_RE.fullmatch(digest):
        if isinstance(digest, str) and ANY_DIGEST_RE.fullmatch(digest):
            raise OciError(400, "UNSUPPORTED", f"{where}: only sha256 digests are supported")
        raise _invalid(f"{where}.digest is not a valid digest", {"digest": digest})
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise _invalid(f"{where}.size must be a non-negative integer")
    if "mediaType" in value and not isinstance(value["mediaType"], str):
        raise _invalid(f"{where}.mediaType must be a string")
    return value


def _media_type(doc: dict[str, Any], content_type: str | None) -> str:
    """The manifest's media type from its body, else the Content-Type it was sent with."""
    declared = doc.get("mediaType")
    sent = (content_type or "").split(";")[0].strip()
    if declared is not None and not isinstance(declared, str):
        raise _invalid("mediaType must be a string")
    if declared and sent and sent != declared and sent not in ("application/json",
                                                               "application/octet-stream"):
        raise _invalid("Content-Type does not match the manifest's mediaType",
                       {"mediaType": declared, "contentType": sent})
    media_type = declared or sent
    if not media_type and "manifests" in doc:
        media_type = OCI_INDEX
    elif not media_type and "layers" in doc:
        media_type = OCI_MANIFEST
    if media_type not in MANIFEST_TYPES:
        raise OciError(415 if media_type else 400, "MANIFEST_INVALID",
                       f"unsupported manifest media type {media_type!r}")
    return media_type


def parse_manifest(body: bytes, content_type: str | None, algorithm: str = "sha256") -> Manifest:
    """Validate an uploaded manifest or index; raises OciError (MANIFEST_INVALID, …).

    `algorithm` is the digest algorithm the manifest is known by (a push by sha512 digest)."""
    if len(body) > MAX_MANIFEST:
        raise OciError(413, "SIZE_INVALID", f"manifest larger than {MAX_MANIFEST} bytes")
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        raise _invalid("manifest is not valid JSON") from None
    if not isinstance(doc, dict):
        raise _invalid("manifest is not a JSON object")
    if doc.get("schemaVersion") != 2:
        raise _invalid("schemaVersion must be 2")
    media_type = _media_type(doc, content_type)
    found = Manifest(media_type, digest_with(algorithm, body), len(body), hashlib.sha256(body).hexdigest())
    if media_type in IMAGE_TYPES:
        _parse_image(doc, found)
    else:
        _parse_index(doc, found)
    subject = doc.get("subject")
    if subject is not None:
        found.subject = _descriptor(subject, "subject")["digest"]
    annotations = doc.get("annotations")
    if annotations is not None:
        if not isinstance(annotations, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in annotations.items()):
            raise _invalid("annotations must map strings to strings")
        found.annotations = annotations
    return found


def _parse_image(doc: dict[str, Any], found: Manifest) -> None:
    config = _descriptor(doc.get("config"), "config")
    layers = doc.get("layers")
    if not isinstance(layers, list):
        raise _invalid("layers must be a list")
    found.blobs.append(config["digest"])
    for index, layer in enumerate(layers):
        layer = _descriptor(layer, f"layers[{index}]")
        if layer.get("urls") or str(layer.get("mediaType", "")).startswith(NONDISTRIBUTABLE):
            continue
        if layer["digest"] not in found.blobs:
            found.blobs.append(layer["digest"])
    artifact_type = doc.get("artifactType")
    if artifact_type is not None and not isinstance(artifact_type, str):
        raise _invalid("artifactType must be a string")
    found.artifact_type = artifact_type or config.get("mediaType")


def _parse_index(doc: dict[str, Any], found: Manifest) -> None:
    children = doc.get("manifests")
    if not isinstance(children, list):
        raise _invalid("manifests must be a list")
    for index, child in enumerate(children):
        child = _descriptor(child, f"manifests[{index}]")
        if child["digest"] not in found.manifests:
            found.manifests.append(child["digest"])
    artifact_type = doc.get("artifactType")
    if artifact_type is not None and not isinstance(artifact_type, str):
        raise _invalid("artifactType must be a string")
    found.artifact_type = artifact_type


def referrers_index(descriptors: list[dict[str, Any]]) -> bytes:
    """The referrers API answer: an OCI image index of the given descriptors."""
    return json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": descriptors},
                      separators=(",", ":")).encode()


def page(items: list[str], n: str | None, last: str | None) -> tuple[list[str], bool]:
    """Sorted items after `last`, at most n of them; and whether more remain."""
    ordered = sorted(items)
    if last:
        ordered = [item for item in ordered if item > last]
    if n is None or n == "":
        return ordered, False
    try:
        limit = int(n)
    except ValueError:
        raise OciError(400, "PAGINATION_NUMBER_INVALID", "n must be an integer") from None
    if limit < 0:
        raise OciError(400, "PAGINATION_NUMBER_INVALID", "n must not be negative")
    return ordered[:limit], len(ordered) > limit


def tags_page(mount: str, image: str, tags: list[str], n: str | None,
              last: str | None) -> tuple[dict[str, Any], dict[str, str]]:
    """(body, headers) of a `tags/list` answer: sorted, paged by n and last, with the Link of
    the next page; the same for hosted and pull-through repositories."""
    shown, more = page(tags, n, last)
    headers = {}
    if more and shown:
        headers["Link"] = f'<{mount}/{image}/tags/list?n={n}&last={shown[-1]}>; rel="next"'
    full_name = f"{mount.removeprefix('/v2').lstrip('/')}/{image}".lstrip("/")
    return {"name": full_name, "tags": shown}, headers


def accept_variant(accept: str | None) -> tuple[str, str]:
    """(Accept header to send upstream, short cache-key variant) for a client's Accept.

    Only manifest media types are kept (in the client's order), so the variant is a function
    of exactly what is asked upstream: an Accept naming no manifest type (`application/json`,
    `*/*`, empty) asks the default list, like a client that takes every type, and can never
    store a different answer under the shared variant "all". Clients that take every manifest
    type (docker, containerd, skopeo, oras) share "all"; others get a variant per set of types.
    """
    types: list[str] = []
    for part in (accept or "").split(","):
        media = part.split(";")[0].strip().lower()
        if media in MANIFEST_TYPES and media not in types:
            types.append(media)
    if not types or set(MANIFEST_TYPES) <= set(types):
        return ", ".join(types) if types else DEFAULT_ACCEPT, "all"
    return ", ".join(types), hashlib.sha256(",".join(sorted(types)).encode()).hexdigest()[:12]
