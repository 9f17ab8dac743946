"""Hosted OCI content in the catalog: blob records, manifests, tags and referrers.

Layout of catalog paths inside one depot repository (image names never start with `_`):

* `_blobs/<digest>`                          a blob pushed to (or mounted into) this repository
* `<image>/_manifests/<digest>`               a manifest; meta: media type, referenced blobs and
                                              child manifests, subject, artifactType, annotations
* `<image>/_tags/<tag>`                       a tag; same blob as its manifest, meta holds the digest
* `<image>/_referrers/<subject>/<digest>`     a manifest whose `subject` is <subject>

Every record names the blob holding its bytes, so the engine's mark-and-sweep gc keeps exactly
what some record references. Deleting a manifest drops its tags and referrer record, then
every `_blobs/` record that no remaining manifest of the repository references (its config and
layers, when unique to it); `depot gc` then reclaims those blobs. Blobs pushed but never
referenced by any manifest stay until deleted with `DELETE /v2/<name>/blobs/<digest>`.
"""
from __future__ import annotations

import asyncio
from typing import Any

from depot.cache.catalog import Catalog, HostedFile

from .oci_manifest import Manifest, descriptor_of, hex_of

BLOBS = "_blobs/"


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


class HostedStore:
    """OCI operations on one process's catalog; writes serialised per repository."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._locks: dict[str, asyncio.Lock] = {}

    def lock(self, repo: str) -> asyncio.Lock:
        """The lock serialising manifest writes and deletions of a repository (this process)."""
        return self._locks.setdefault(repo, asyncio.Lock())

    async def blob(self, repo: str, digest: str) -> HostedFile | None:
        return await self.catalog.get(repo, blob_path(digest))

    async def add_blob(self, repo: str, digest: str, size: int, sha256_hex: str) -> None:
        """Record a blob of this repository by the digest the client knows it by (sha256 or
        sha512); `sha256_hex` is where its bytes are in the store."""
        await self.catalog.put(repo, blob_path(digest), sha256_hex, size,
                               "application/octet-stream", {"digest": digest})

    async def delete_blob(self, repo: str, digest: str) -> bool:
        return await self.catalog.delete(repo, blob_path(digest))

    async def missing_blobs(self, repo: str, digests: list[str]) -> list[str]:
        return [d for d in digests if await self.blob(repo, d) is None]

    async def missing_manifests(self, repo: str, image: str, digests: list[str]) -> list[str]:
        return [d for d in digests if await self.catalog.get(repo, manifest_path(image, d)) is None]

    async def put_manifest(self, repo: str, image: str, manifest: Manifest, tags: list[str]) -> None:
        """Record a stored manifest (its bytes are already in the blob store) and its tags."""
        hexd = manifest.sha256 or hex_of(manifest.digest)
        await self.catalog.put(repo, manifest_path(image, manifest.digest), hexd, manifest.size,
                               manifest.media_type, manifest.meta())
        for tag in tags:
            await self.catalog.put(repo, tag_path(image, tag), hexd, manifest.size,
                                   manifest.media_type, {"digest": manifest.digest})
        if manifest.subject:
            await self.catalog.put(repo, referrer_path(image, manifest.subject, manifest.digest),
                                   hexd, manifest.size, manifest.media_type, {"digest": manifest.digest})

    async def resolve(self, repo: str, image: str, reference: str) -> HostedFile | None:
        """The catalog record of a manifest by digest or tag."""
        if ":" in reference:
            return await self.catalog.get(repo, manifest_path(image, reference))
        return await self.catalog.get(repo, tag_path(image, reference))

    async def delete_tag(self, repo: str, image: str, tag: str) -> bool:
        return await self.catalog.delete(repo, tag_path(image, tag))

    async def delete_manifest(self, repo: str, image: str, digest: str) -> bool:
        """Delete a manifest, the tags naming it, its referrer record, and orphaned blob records."""
        found = await self.catalog.get(repo, manifest_path(image, digest))
        if found is None:
            return False
        for tag in await self.catalog.list(repo, f"{image}/_tags/"):
            if tag.meta.get("digest") == digest:
                await self.catalog.delete(repo, tag.path)
        subject = found.meta.get("subject")
        if subject:
            await self.catalog.delete(repo, referrer_path(image, subject, digest))
        await self.catalog.delete(repo, manifest_path(image, digest))
        await self.reclaim(repo, list(found.meta.get("blobs") or []))
        return True

    async def reclaim(self, repo: str, candidates: list[str]) -> list[str]:
        """Drop the `_blobs/` records of candidates that no remaining manifest references."""
        if not candidates:
            return []
        still: set[str] = set()
        for record in await self.catalog.list(repo):
            if "/_manifests/" in record.path:
                still.update(record.meta.get("blobs") or [])
        dropped = [d for d in candidates if d not in still]
        for digest in dropped:
            await self.catalog.delete(repo, blob_path(digest))
        return dropped

    async def tags(self, repo: str, image: str) -> list[str]:
        prefix = f"{image}/_tags/"
        return [r.path[len(prefix):] for r in await self.catalog.list(repo, prefix)]

    async def has_image(self, repo: str, image: str) -> bool:
        return bool(await self.catalog.list(repo, f"{image}/_manifests/"))

    async def images(self, repo: str) -> list[str]:
        """Names of images with at least one manifest."""
        names: set[str] = set()
        for record in await self.catalog.list(repo):
            image = _image_of(record.path, "/_manifests/")
            if image is not None:
                names.add(image)
        return sorted(names)

    async def referrers(self, repo: str, image: str, subject: str,
                        artifact_type: str | None) -> list[dict[str, Any]]:
        """Descriptors of the manifests whose subject is `subject`."""
        out = []
        for record in await self.catalog.list(repo, f"{image}/_referrers/{subject}/"):
            manifest = await self.catalog.get(repo, manifest_path(image, record.meta["digest"]))
            if manifest is None:
                continue
            if artifact_type and manifest.meta.get("artifact_type") != artifact_type:
                continue
            out.append(descriptor_of(manifest.meta, manifest.size))
        return out
