"""Hosted OCI content in the catalog: blob records, manifests, tags and referrers.

Layout of catalog paths inside one depot repository (image names never start with `_`):

* `_blobs/<digest>`                          a blob pushed to (or mounted into) this repository
* `<image>/_manifests/<digest>`               a manifest; meta: media type, referenced blobs and
                                              child manifests, subject, artifactType, annotations
* `<image>/_tags/<tag>`                       a tag; same blob as its manifest, meta holds the digest
* `<image>/_referrers/<subject>/<digest>`     a manifest whose `subject` is <subject>

Every record names the blob holding its bytes, so the engine's mark-and-sweep gc keeps exactly
what some record references. Records are reached only through the engine's HostedApi; a manifest
PUT (check that its blobs are recorded, then record it) and a deletion (drop the manifest, then
the blob records nothing references any more) run under `hosted.lock()`, which is exclusive
across every worker and node, and each writes its records in one `hosted.commit()`: a manifest
can never be recorded while a concurrent deletion drops the blob records it needs.

Deleting a manifest drops its tags and referrer record, then every `_blobs/` record that no
remaining manifest of the repository references (its config and layers, when unique to it);
`depot gc` then reclaims those blobs. Blobs pushed but never referenced
by any manifest stay until deleted with `DELETE /v2/<name>/blobs/<digest>`.
"""
from __future__ import annotations

from typing import Any

from depot.cache.api import HostedApi, HostedFile, Write

from .oci_manifest import Manifest, descriptor_of, hex_of

BLOBS = "_blobs/"
OCTETS = "application/octet-stream"


def blob_path(digest: str) -> str:
    return BLOBS + digest


def manifest_path(image: str, digest: str) -> str:
    return f"{image}/_manifests/{digest}"


def tag_path(image: str, tag: str) -> str:
    return f"{image}/_tags/{tag}"


def referrer_path(image: str, subject: str, digest: str) -> str:
    return f"{image}/_referrers/{subject}/{digest}"


def _image_of(path: str, marker: str) -> str | None:
    head, sep, _ = path.partition(marker)
    return head if sep else None


def _delete(path: str) -> Write:
    return Write(path, "", 0, delete=True)


class HostedStore:
    """OCI records of one hosted repository, on the engine's HostedApi."""

    def __init__(self, hosted: HostedApi) -> None:
        self.hosted = hosted

    def lock(self) -> Any:
        """The repository's exclusive section for manifest writes and deletions (all nodes)."""
        return self.hosted.lock("oci-manifests")

    async def blob(self, digest: str) -> HostedFile | None:
        return await self.hosted.get(blob_path(digest))

    async def add_blob(self, digest: str, size: int, sha256_hex: str) -> None:
        """Record a blob of this repository by the digest the client knows it by (sha256 or
        sha512); `sha256_hex` is where its bytes are in the store."""
        async with self.lock():
            await self.hosted.commit([Write(blob_path(digest), sha256_hex, size, OCTETS, {"digest": digest})])

    async def delete_blob(self, digest: str) -> bool:
        async with self.lock():
            if await self.blob(digest) is None:
                return False
            return await self.hosted.commit([_delete(blob_path(digest))])

    async def missing_blobs(self, digests: list[str]) -> list[str]:
        return [d for d in digests if await self.blob(d) is None]

    async def missing_manifests(self, image: str, digests: list[str]) -> list[str]:
        return [d for d in digests if await self.hosted.get(manifest_path(image, d)) is None]

    async def put_manifest(self, image: str, manifest: Manifest, tags: list[str]) -> bool:
        """Record a stored manifest (its bytes are already in the blob store), its tags and its
        referrer record in one transaction, only while every blob record it needs is still there
        (each is rewritten unchanged, expecting its digest). Call under lock(); False: a blob
        record went meanwhile."""
        hexd = manifest.sha256 or hex_of(manifest.digest)
        writes = []
        for digest in manifest.blobs:
            found = await self.blob(digest)
            if found is None:
                return False
            writes.append(Write(found.path, found.digest, found.size, found.content_type, found.meta,
                                expect=found.digest))
        ref = {"digest": manifest.digest}
        writes.append(Write(manifest_path(image, manifest.digest), hexd, manifest.size, manifest.media_type,
                            manifest.meta()))
        writes += [Write(tag_path(image, tag), hexd, manifest.size, manifest.media_type, ref) for tag in tags]
        if manifest.subject:
            writes.append(Write(referrer_path(image, manifest.subject, manifest.digest), hexd, manifest.size,
                                manifest.media_type, ref))
        return await self.hosted.commit(writes)

    async def resolve(self, image: str, reference: str) -> HostedFile | None:
        """The record of a manifest by digest or tag."""
        if ":" in reference:
            return await self.hosted.get(manifest_path(image, reference))
        return await self.hosted.get(tag_path(image, reference))

    async def delete_tag(self, image: str, tag: str) -> bool:
        if await self.hosted.get(tag_path(image, tag)) is None:
            return False
        return await self.hosted.commit([_delete(tag_path(image, tag))])

    async def delete_manifest(self, image: str, digest: str) -> bool:
        """Delete a manifest, the tags naming it, its referrer record (one transaction), then the
        blob records no remaining manifest references. Call under lock()."""
        found = await self.hosted.get(manifest_path(image, digest))
        if found is None:
            return False
        writes = [_delete(t.path) for t in await self.hosted.list(f"{image}/_tags/") if t.meta.get("digest") == digest]
        subject = found.meta.get("subject")
        if subject:
            writes.append(_delete(referrer_path(image, subject, digest)))
        writes.append(_delete(manifest_path(image, digest)))
        await self.hosted.commit(writes)
        await self.reclaim(list(found.meta.get("blobs") or []))
        return True

    async def reclaim(self, candidates: list[str]) -> list[str]:
        """Drop the `_blobs/` records of candidates that no remaining manifest references
        (call under lock(), so that no manifest PUT records a reference meanwhile)."""
        if not candidates:
            return []
        still: set[str] = set()
        for record in await self.hosted.list():
            if "/_manifests/" in record.path:
                still.update(record.meta.get("blobs") or [])
        dropped = [d for d in candidates if d not in still]
        if dropped:
            await self.hosted.commit([_delete(blob_path(d)) for d in dropped])
        return dropped

    async def tags(self, image: str) -> list[str]:
        prefix = f"{image}/_tags/"
        return [r.path[len(prefix):] for r in await self.hosted.list(prefix)]

    async def has_image(self, image: str) -> bool:
        return bool(await self.hosted.list(f"{image}/_manifests/", limit=1))

    async def images(self) -> list[str]:
        """Names of images with at least one manifest."""
        names: set[str] = set()
        for record in await self.hosted.list():
            image = _image_of(record.path, "/_manifests/")
            if image is not None:
                names.add(image)
        return sorted(names)

    async def referrers(self, image: str, subject: str, artifact_type: str | None) -> list[dict[str, Any]]:
        """Descriptors of the manifests whose subject is `subject`."""
        out = []
        for record in await self.hosted.list(f"{image}/_referrers/{subject}/"):
            manifest = await self.hosted.get(manifest_path(image, record.meta["digest"]))
            if manifest is None:
                continue
            if artifact_type and manifest.meta.get("artifact_type") != artifact_type:
                continue
            out.append(descriptor_of(manifest.meta, manifest.size))
        return out
