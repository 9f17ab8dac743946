"""JSON documents generated per request, with a strong ETag so that clients and proxies in front
(a second depot revalidating its metadata) get a 304 instead of the body when nothing changed."""
from __future__ import annotations

import hashlib
import json
from typing import Any, Mapping

from aiohttp import web


def json_answer(request: web.Request, doc: Any, headers: Mapping[str, str] | None = None) -> web.Response:
    """`doc` as JSON with ETag (sha256 of the body); 304 when If-None-Match names it."""
    body = json.dumps(doc, separators=(",", ":")).encode()
    etag = f'"{hashlib.sha256(body).hexdigest()}"'
    out = {"ETag": etag, "Cache-Control": "no-cache", **(headers or {})}
    candidates = {tag.strip() for tag in request.headers.get("If-None-Match", "").split(",")}
    if etag in candidates or "*" in candidates:
        return web.Response(status=304, headers=out)
    return web.Response(body=body, content_type="application/json", headers=out)
