"""Implementations under contract: every test in this folder runs against each of them.

A factory gets the test's temp folder and the pytest request (to reach session services) and
returns an opened Storage; the fixture closes it afterwards.
  local       files + SQLite (the embedded default)
  s3          blobs in a real Ceph RGW bucket (a fresh prefix per test) + SQLite
  s3-tiered   the same with a node-local disk tier in front (storage.local_cache)
  postgresql  files + metadata in a real PostgreSQL (a fresh database per test)
The account stores (users, tokens, lockout, audit) run against sqlite and postgresql.
"""
from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from depot.cache.storage import Accounts, Storage, open_accounts, open_storage


def _local(tmp: Path, request: Any) -> Storage:
    return open_storage(tmp / "data", "local")


def s3_settings(request: Any, bucket: str = "contract", prefix: str | None = None) -> Any:
    from depot.cache.blobs_s3 import S3Settings
    ceph = request.getfixturevalue("ceph_rgw")
    return S3Settings(ceph.endpoint, bucket, access_key=ceph.access_key, secret_key=ceph.secret_key,
                      prefix=prefix if prefix is not None else f"t-{uuid.uuid4().hex[:10]}")


def _s3(tmp: Path, request: Any) -> Storage:
    return open_storage(tmp / "data", "s3", s3=s3_settings(request))


def _s3_tiered(tmp: Path, request: Any) -> Storage:
    import dataclasses
    settings = dataclasses.replace(s3_settings(request), cache_max_size=64 * 1024 * 1024)
    return open_storage(tmp / "data", "s3", s3=settings)


def _postgresql(tmp: Path, request: Any) -> Storage:
    url = request.getfixturevalue("pg_cluster").new_database()
    return open_storage(tmp / "data", "local", database_url=url)


STORAGE_KINDS: dict[str, Callable[[Path, Any], Storage]] = {
    "local": _local, "s3": _s3, "s3-tiered": _s3_tiered, "postgresql": _postgresql}


@pytest.fixture(params=sorted(STORAGE_KINDS))
def storage(request: Any, tmp_path: Path) -> Iterator[Storage]:
    opened = STORAGE_KINDS[request.param](tmp_path, request)
    try:
        yield opened
    finally:
        opened.close()


def _sqlite_accounts(tmp: Path, request: Any) -> Accounts:
    return open_accounts(tmp / "data", create=True)


def _postgresql_accounts(tmp: Path, request: Any) -> Accounts:
    return open_accounts(tmp / "data", request.getfixturevalue("pg_cluster").new_database())


ACCOUNT_KINDS: dict[str, Callable[[Path, Any], Accounts]] = {
    "sqlite": _sqlite_accounts, "postgresql": _postgresql_accounts}


@pytest.fixture(params=sorted(ACCOUNT_KINDS))
def accounts(request: Any, tmp_path: Path) -> Iterator[Any]:
    """open() -> another handle on the same account store (another node's); the first is
    opened already as accounts.first. Every handle is closed afterwards."""
    opened: list[Accounts] = []

    def open_one() -> Accounts:
        if request.param == "sqlite" or not opened:
            handle = ACCOUNT_KINDS[request.param](tmp_path, request)
        else:                                    # the same PostgreSQL database again
            handle = open_accounts(tmp_path / f"node{len(opened)}", opened[0].db.url)
        opened.append(handle)
        return handle
    open_one.first = open_one()  # type: ignore[attr-defined]
    try:
        yield open_one
    finally:
        for handle in opened:
            handle.close()
