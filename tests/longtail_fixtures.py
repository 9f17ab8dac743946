"""Shared helpers of the replayed-client tests (pub, swift, opkg, p2): tokens, archives."""
from __future__ import annotations

import gzip
import io
import tarfile
import zipfile
from typing import Any


def make_token(depot: Any, *args: str) -> str:
    """A depot token (`depot token create …`)."""
    return depot.run_cli("token", "create", *args).stdout.strip().splitlines()[-1]


def tar_gz(files: dict[str, bytes], prefix: str = "") -> bytes:
    """A .tar.gz holding `files` (path -> bytes) under `prefix`."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for path, data in files.items():
            info = tarfile.TarInfo(prefix + path)
            info.size = len(data)
            info.mtime = 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(out.getvalue(), mtime=0)     # the same bytes every time


def zip_bytes(files: dict[str, bytes]) -> bytes:
    """A .zip holding `files` (path -> bytes)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, data in files.items():
            archive.writestr(zipfile.ZipInfo(path, (2024, 1, 1, 0, 0, 0)), data)
    return out.getvalue()
