"""Admin deletion of a hosted OCI tag through the engine's HostedApi (no catalog access):
the tag goes; its manifest too when no tag names it any more, with its referrer record and
the `_blobs/` records no remaining manifest of the repository references."""
from __future__ import annotations

from typing import Any

from .oci_store import blob_path, manifest_path, referrer_path, tag_path


async def untag(hosted: Any, image: str, tag: str) -> None:
    """Delete `image:tag`, then the manifest it named if it is left untagged."""
    record = await hosted.get(tag_path(image, tag))
    if record is None:
        return
    digest = record.meta.get("digest")
    await hosted.delete(record.path)
    if not digest or any(t.meta.get("digest") == digest for t in await hosted.list(f"{image}/_tags/")):
        return
    manifest = await hosted.get(manifest_path(image, digest))
    if manifest is None:
        return
    if manifest.meta.get("subject"):
        await hosted.delete(referrer_path(image, manifest.meta["subject"], digest))
    await hosted.delete(manifest.path)
    candidates = set(manifest.meta.get("blobs") or [])
    if not candidates:
        return
    for other in await hosted.list():
        if "/_manifests/" in other.path:
            candidates -= set(other.meta.get("blobs") or [])
    for blob in candidates:
        await hosted.delete(blob_path(blob))
