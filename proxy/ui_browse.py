"""What the UI's browser shows of a repository in the format's own terms, never storage
internals: a hosted OCI repository as images, tags, digests, sizes and platforms (not
`_blobs/`, `_manifests/`); PyPI without the `.metadata` companions of wheels."""
from __future__ import annotations

import json
from html import escape as e
from typing import Any

from depot.cache.services import Services
from depot.registry.repo import RepoConfig

from .progress import human_bytes

HIDDEN_SUFFIXES = {"pypi": (".metadata",)}     # companions served beside a file, not files of their own


def visible(repo: RepoConfig, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Listing items without a format's internal companions."""
    hidden = HIDDEN_SUFFIXES.get(repo.format)
    return [i for i in items if not i["path"].endswith(hidden)] if hidden else items


async def oci_images(services: Services, repo: RepoConfig) -> list[dict[str, Any]]:
    """One row per tag of a hosted OCI repository: image, tag, digest, size, platforms."""
    files = await services.catalog.list(repo.name)
    by_path = {f.path: f for f in files}
    blob_sizes = {f.path[len("_blobs/"):]: f.size for f in files if f.path.startswith("_blobs/")}
    rows = []
    for record in files:
        image, sep, tag = record.path.partition("/_tags/")
        if not sep:
            continue
        digest = record.meta.get("digest", "")
        manifest = by_path.get(f"{image}/_manifests/{digest}")
        if manifest is None:
            continue
        referenced = manifest.meta.get("blobs") or []
        size = manifest.size + sum(blob_sizes.get(d, 0) for d in referenced)
        rows.append({"image": image, "tag": tag, "digest": digest, "size": size,
                     "platforms": await _platforms(services, repo, manifest, by_path, image)})
    return sorted(rows, key=lambda r: (r["image"], r["tag"]))


async def _platforms(services: Services, repo: RepoConfig, manifest: Any, by_path: dict[str, Any],
                     image: str) -> list[str]:
    try:
        doc = json.loads(await services.blobs.read(manifest.digest))
        if "manifests" in doc:            # an index: its children's platforms
            return [_platform(m.get("platform") or {}) for m in doc["manifests"] if m.get("platform")]
        config = (doc.get("config") or {}).get("digest")
        if config:
            found = json.loads(await services.blobs.read(config.split(":", 1)[1]))
            return [_platform(found)]
    except (OSError, ValueError, KeyError):
        pass
    return []


def _platform(fields: dict[str, Any]) -> str:
    parts = [fields.get("os", "?"), fields.get("architecture", "?"), fields.get("variant")]
    return "/".join(str(p) for p in parts if p)


def oci_html(repo: RepoConfig, rows: list[dict[str, Any]], base: str) -> str:
    """The images table of a hosted OCI repository."""
    host = base.split("://", 1)[-1]
    body = []
    for row in rows:
        ref = f"{host}/{repo.name}/{row['image']}:{row['tag']}"
        body.append(f"<tr><td>{e(row['image'])}</td><td>{e(row['tag'])}</td>"
                    f"<td><code title=\"{e(row['digest'])}\">{e(row['digest'][:19])}</code></td>"
                    f"<td class=\"num\">{e(human_bytes(row['size']))}</td>"
                    f"<td>{e(', '.join(row['platforms']) or '-')}</td><td><code>{e(ref)}</code></td></tr>")
    if not body:
        body.append('<tr><td colspan="6" class="muted">no images pushed yet</td></tr>')
    return ("<h2>Images</h2><table><thead><tr><th>image</th><th>tag</th><th>digest</th><th class=\"num\">size"
            "</th><th>platforms</th><th>pull</th></tr></thead><tbody>" + "".join(body) + "</tbody></table>")
