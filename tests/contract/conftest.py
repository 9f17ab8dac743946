"""Implementations under contract: every test in this folder runs against each of them.

Add a backend by adding a factory to the lists below (e.g. s3 blobs, postgresql metadata);
a factory yields an opened Storage-like bundle and closes it afterwards.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from depot.cache.storage import Storage, open_storage


def _local(tmp: Path) -> Storage:
    return open_storage(tmp / "data", "local")


STORAGE_KINDS: dict[str, Callable[[Path], Storage]] = {"local": _local}


@pytest.fixture(params=sorted(STORAGE_KINDS))
def storage(request: Any, tmp_path: Path) -> Iterator[Storage]:
    opened = STORAGE_KINDS[request.param](tmp_path)
    try:
        yield opened
    finally:
        opened.close()
