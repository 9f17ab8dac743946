"""The OCI push protocol's view of upload sessions: Content-Range parsing.

Sessions themselves (state in the metadata store, bytes in shared storage, so consecutive
requests of one upload may reach any worker of any node) are the engine's: `ctx.hosted.uploads`
(cache/uploads.py).
"""
from __future__ import annotations

import re

from depot.cache.api import RangeInvalid, UploadUnknown

__all__ = ["RangeInvalid", "UploadUnknown", "parse_content_range"]


def parse_content_range(header: str | None) -> tuple[int, int] | None:
    """'<start>-<end>' (optionally 'bytes ' prefixed, '/total' suffixed) -> (start, end)."""
    if not header:
        return None
    text = header.strip().removeprefix("bytes").strip().removeprefix("=").strip()
    text = text.split("/")[0]
    found = re.fullmatch(r"(\d+)-(\d+)", text)
    if not found:
        raise RangeInvalid(f"bad Content-Range {header!r}")
    start, end = int(found[1]), int(found[2])
    if end < start:
        raise RangeInvalid(f"bad Content-Range {header!r}")
    return start, end
