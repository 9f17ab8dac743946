"""Build OCI image layouts by hand (no docker): layers, configs, manifests, indexes, artifacts."""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
EMPTY_CONFIG = "application/vnd.oci.empty.v1+json"


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def layer_tgz(files: dict[str, bytes]) -> bytes:
    """A reproducible gzip'd tar with the given files."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, content in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(content)
            info.mtime = 0
            tar.addfile(info, io.BytesIO(content))
    return gzip.compress(raw.getvalue(), mtime=0)


class Layout:
    """An OCI image layout directory being built: blobs/sha256/…, index.json, oci-layout."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        (self.root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        (self.root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
        self.refs: list[dict[str, Any]] = []

    def blob(self, data: bytes, media_type: str) -> dict[str, Any]:
        """Write a blob; returns its descriptor."""
        digest = digest_of(data)
        (self.root / "blobs" / "sha256" / digest.split(":")[1]).write_bytes(data)
        return {"mediaType": media_type, "digest": digest, "size": len(data)}

    def image(self, files: dict[str, bytes], arch: str = "amd64",
              shared: bytes | None = None) -> dict[str, Any]:
        """An image manifest with one (or two, with a shared base) layer; returns its descriptor."""
        layers = []
        if shared is not None:
            layers.append(self.blob(shared, OCI_LAYER))
        layers.append(self.blob(layer_tgz(files), OCI_LAYER))
        diff_ids = [digest_of(gzip.decompress(self.read(d["digest"]))) for d in layers]
        config = {"architecture": arch, "os": "linux", "config": {},
                  "rootfs": {"type": "layers", "diff_ids": diff_ids}, "history": []}
        config_desc = self.blob(json.dumps(config, sort_keys=True).encode(), OCI_CONFIG)
        manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config_desc, "layers": layers}
        desc = self.blob(json.dumps(manifest, indent=2).encode(), OCI_MANIFEST)
        desc["platform"] = {"architecture": arch, "os": "linux"}
        return desc

    def index_of(self, manifests: list[dict[str, Any]]) -> dict[str, Any]:
        """A multi-platform image index over image descriptors."""
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}
        return self.blob(json.dumps(index, indent=2).encode(), OCI_INDEX)

    def read(self, digest: str) -> bytes:
        return (self.root / "blobs" / "sha256" / digest.split(":")[1]).read_bytes()

    def tag(self, desc: dict[str, Any], name: str) -> None:
        ref = {k: v for k, v in desc.items() if k in ("mediaType", "digest", "size")}
        ref["annotations"] = {"org.opencontainers.image.ref.name": name}
        self.refs.append(ref)
        self.save()

    def save(self) -> None:
        (self.root / "index.json").write_text(json.dumps(
            {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": self.refs}))


def hello_layout(root: Path) -> tuple[Layout, dict[str, Any], dict[str, Any]]:
    """A layout with tag `v1` (one image) and tag `multi` (an index of amd64 + arm64)."""
    layout = Layout(root)
    single = layout.image({"hello.txt": b"hello from depot\n"})
    amd = layout.image({"arch.txt": b"amd64\n"}, "amd64", shared=layer_tgz({"base": b"base layer\n"}))
    arm = layout.image({"arch.txt": b"arm64\n"}, "arm64", shared=layer_tgz({"base": b"base layer\n"}))
    index = layout.index_of([amd, arm])
    layout.tag(single, "v1")
    layout.tag(index, "multi")
    return layout, single, index


def artifact_manifest(config: dict[str, Any], layers: list[dict[str, Any]], artifact_type: str,
                      subject: dict[str, Any] | None = None) -> bytes:
    """An OCI artifact manifest (image manifest with artifactType, optional subject)."""
    doc: dict[str, Any] = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": artifact_type,
                           "config": config, "layers": layers}
    if subject is not None:
        doc["subject"] = {k: subject[k] for k in ("mediaType", "digest", "size")}
    return json.dumps(doc).encode()
