"""Admin deletion of a hosted OCI tag through the engine's HostedApi (no catalog access):
the tag goes; its manifest too when no tag names it any more, with its referrer record and
the `_blobs/` records no remaining manifest of the repository references (under the
repository's manifest lock, like every other OCI deletion: see registry/oci_store.py)."""
from __future__ import annotations

from typing import Any

from .oci_store import HostedStore, tag_path


async def untag(hosted: Any, image: str, tag: str) -> None:
    """Delete `image:tag`, then the manifest it named if it is left untagged."""
    store = HostedStore(hosted)
    async with store.lock():
        record = await hosted.get(tag_path(image, tag))
        if record is None:
            return
        digest = record.meta.get("digest")
        await hosted.delete(record.path)          # the engine's retention rule decides
        if not digest or any(t.meta.get("digest") == digest for t in await hosted.list(f"{image}/_tags/")):
            return
        await store.delete_manifest(image, digest)
