"""The storage protocols the engine is written against, and the one factory that builds them.

The server (cache.services), the CLI (gc, stats, users, tokens) and backup all open storage with
`open_storage(settings)`; nothing else constructs a store. Each protocol has one contract test
suite in tests/contract/ that every implementation must pass. The embedded implementations:
`local` blobs (files, sendfile) and `sqlite` metadata with a diskcache negative cache.
"""
from __future__ import annotations

import errno
import sqlite3
from dataclasses import dataclass
from pathlib import Path
import builtins
from typing import Any, AsyncContextManager, AsyncIterator, ContextManager, Protocol, runtime_checkable

from .accounts import AuditLog, StoredUser, Token, UserStore
from .blobs import BlobStore, BlobWriter
from .catalog import Catalog, HostedFile, Write
from .db import Database
from .entries import Entry, EntryIndex
from .lockout import LockoutPolicy


@runtime_checkable
class BlobStorage(Protocol):
    """Content-addressed bytes (sha256 hex digests), written once, read many times."""

    def stat(self, digest: str) -> int | None:
        """Size of a stored blob, None when absent."""

    def exists(self, digest: str) -> bool:
        """Whether the blob is stored."""

    async def read(self, digest: str) -> bytes:
        """The whole blob (small blobs only)."""

    def read_chunks(self, digest: str, start: int = 0, end: int | None = None,
                    chunk_size: int = 256 * 1024) -> AsyncIterator[bytes]:
        """A byte range of the blob as chunks."""

    def local_path(self, digest: str) -> Path | None:
        """A local file for sendfile, or None when the store is remote."""

    def direct_url(self, digest: str, expires: float = 300.0) -> str | None:
        """A short-lived URL clients may download from directly (presigned), or None."""

    def local_file(self, digest: str) -> ContextManager[Path]:
        """A local file holding the blob while the context lasts (blocking; parsers that open files)."""

    def adopt(self, temp_path: Path, digest: str) -> Any:
        """Store a complete local file already verified to hash to `digest` (it is moved or removed)."""

    def writer(self, max_size: int | None = None, path: Path | None = None) -> BlobWriter:
        """A writer: write(), then commit(expect_sha256) or abort(); nothing is visible before."""

    async def put_bytes(self, data: bytes, expect_sha256: str | None = None) -> tuple[str, int]:
        """Store bytes; (digest, size)."""

    async def put_stream(self, chunks: AsyncIterator[bytes], expect_sha256: str | None = None,
                         max_size: int | None = None) -> tuple[str, int]:
        """Store a stream; nothing is stored when it fails, is too large or mismatches."""

    def delete(self, digest: str) -> int:
        """Remove a blob; the bytes freed (0 when absent)."""

    def scan(self) -> list[tuple[str, int, float]]:
        """Every stored blob as (digest, size, mtime), for GC."""


@runtime_checkable
class EntryStorage(Protocol):
    """Proxy entries: what a repository knows about one upstream path."""

    async def get(self, repo: str, key: str) -> Entry | None: ...
    async def put(self, entry: Entry) -> None: ...
    async def refresh(self, entry: Entry) -> None: ...
    async def delete(self, repo: str, key: str) -> None: ...
    async def stats(self) -> dict[str, dict[str, Any]]: ...
    async def pin(self, repo: str, key: str, sha256: str) -> None: ...
    async def pinned(self, repo: str, key: str) -> str | None: ...


@runtime_checkable
class NegativeCache(Protocol):
    """Upstream 404s remembered for a short time."""

    def is_negative(self, repo: str, key: str) -> bool: ...
    def set_negative(self, repo: str, key: str, ttl: float, status: int) -> None: ...
    def clear_negative(self, repo: str, key: str) -> None: ...


@runtime_checkable
class CatalogStorage(Protocol):
    """Hosted files: durable (repo, path) -> blob records, with atomic create/swap/batches."""

    async def get(self, repo: str, path: str) -> HostedFile | None: ...
    async def list(self, repo: str, prefix: str = "") -> list[HostedFile]: ...
    async def put(self, repo: str, path: str, digest: str, size: int, content_type: str | None = None,
                  meta: dict[str, Any] | None = None) -> None: ...
    async def put_new(self, repo: str, path: str, digest: str, size: int, content_type: str | None = None,
                      meta: dict[str, Any] | None = None) -> bool: ...
    async def put_all_new(self, repo: str,
                          rows: builtins.list[tuple[str, str, int, str | None, dict[str, Any]]]) -> bool: ...
    async def swap(self, repo: str, path: str, expect_digest: str | None, digest: str, size: int,
                   content_type: str | None = None, meta: dict[str, Any] | None = None) -> bool: ...
    async def delete(self, repo: str, path: str, tombstone: bool = False) -> bool: ...
    async def tombstone(self, repo: str, path: str) -> str | None: ...
    async def commit(self, repo: str, writes: builtins.list[Write]) -> bool: ...
    async def published_digest(self, repo: str, path: str) -> str | None: ...
    async def remember(self, repo: str, path: str, sha256: str) -> None: ...


@runtime_checkable
class UploadSessionStorage(Protocol):
    """Resumable upload sessions (cache/uploads.py): state in the metadata store, bytes in parts
    beside the blob store, so any process of any node continues a session."""

    async def create(self, repo: str, scope: str) -> Any: ...
    async def get(self, session_id: str, repo: str, scope: str) -> Any: ...
    async def append(self, session: Any, chunks: AsyncIterator[bytes], start: int | None, max_size: int) -> int: ...
    async def finish(self, session: Any, chunks: AsyncIterator[bytes], digest: str,
                     max_size: int) -> tuple[str, int]: ...
    async def cancel(self, session: Any) -> None: ...


@runtime_checkable
class LockStorage(Protocol):
    """Named exclusive locks across the node's processes (SQLite) or all nodes (PostgreSQL)."""

    def hold(self, name: str) -> AsyncContextManager[None]: ...


@runtime_checkable
class AccountStorage(Protocol):
    """Users, tokens, lockout state and the JWT signing key (cache.accounts.UserStore on SQLite,
    cache.accounts_pg.PgAccounts on PostgreSQL). Blocking methods serve the CLI and start-up;
    the async ones the request path. Every change is seen by every worker and node at once."""

    def add_user(self, name: str, password: str, admin: bool = False) -> None: ...
    def set_password(self, name: str, password: str) -> None: ...
    def delete_user(self, name: str) -> None: ...
    def unlock(self, name: str) -> None: ...
    def any_admin(self) -> bool: ...
    def user_exists(self, name: str) -> bool: ...
    def user_is_admin(self, name: str) -> bool: ...
    def user_rows(self, now: float) -> builtins.list[tuple[str, bool, float, float]]: ...
    def create_token(self, user: str | None, repos: builtins.list[str], perm: str,
                     expires_in: float | None = None, description: str = "") -> tuple[Token, str]: ...
    def list_tokens(self) -> builtins.list[Token]: ...
    def revoke(self, token_id: str) -> bool: ...
    def signing_key(self) -> bytes: ...
    async def generation(self) -> int: ...
    async def user_state(self, name: str) -> StoredUser | None: ...
    async def password_state(self, name: str, now: float) -> tuple[float, StoredUser | None]: ...
    async def record_failure(self, name: str, policy: LockoutPolicy, now: float) -> bool: ...
    async def record_success(self, name: str) -> None: ...
    async def resolve_token(self, secret: str | None = None,
                            token_id: str | None = None) -> tuple[Token | None, StoredUser | None]: ...
    async def touch_token(self, token: Token, now: float) -> None: ...
    async def create_token_async(self, user: str | None, repos: builtins.list[str], perm: str,
                                 expires_in: float | None = None,
                                 description: str = "") -> tuple[Token, str]: ...


@runtime_checkable
class AuditStorage(Protocol):
    """The audit log (a JSON-lines file on one node, rows of the shared database with several)."""

    def record(self, action: str, result: str, actor: str | None = None, client: str | None = None,
               repository: str | None = None, **details: Any) -> None: ...
    def tail(self, limit: int = 1000, offset: int = 0) -> builtins.list[dict[str, Any]]: ...
    def close(self) -> None: ...


@dataclass
class Storage:
    """Everything persistent one process uses, opened together and closed together."""

    kind: str
    blobs: Any        # BlobStorage: BlobStore (local) or S3BlobStore
    db: Any           # Database (SQLite) or PgDatabase
    entries: EntryIndex
    catalog: Catalog
    local_db: Any = None   # SQLite for what stays per node (policy, download counts); db by default
    uploads: Any = None    # UploadSessionStorage on db + blobs (cache/uploads.py)
    locks: Any = None      # LockStorage on db (cache/locks.py)
    accounts: Any = None   # AccountStorage: in db (SQLite, or the shared PostgreSQL)
    audit: Any = None      # AuditStorage: the file beside db, or rows of the shared PostgreSQL

    def __post_init__(self) -> None:
        if self.local_db is None:
            self.local_db = self.db
        if self.uploads is None:
            from .uploads import UploadSessions
            self.uploads = UploadSessions(self.db, self.blobs)
        if self.locks is None:
            from .locks import NamedLocks
            self.locks = NamedLocks(self.db, Path(self.blobs.tmp))

    def close(self) -> None:
        self.locks.close()
        close_blobs = getattr(self.blobs, "close", None)     # the S3 store's local tier: its fill thread
        if close_blobs is not None:
            close_blobs()
        if self.audit is not None:
            self.audit.close()
        self.entries.close()
        self.db.close()
        if self.local_db is not self.db:
            self.local_db.close()

    def check(self, component: str) -> str:
        """Reachability of "database" or "storage": "ok" or the error (blocking)."""
        ping = getattr(self.db if component == "database" else self.blobs, "ping", None)
        try:
            if ping is not None:
                ping()
            return "ok"
        except Exception as err:  # reported, not raised: healthz answers 503 with the reason
            return f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"[:300]


KINDS = ("local", "s3")


def open_storage(data_dir: Path, kind: str = "local", s3: Any = None,
                 database_url: str | None = None) -> Storage:
    """Open the configured stores (the only place that constructs them).

    `kind` chooses the blob store: "local" (files under data_dir) or "s3" (`s3`: S3Settings);
    `database_url` (postgresql://...) puts the metadata in PostgreSQL instead of SQLite.
    data_dir always holds the node's local state (temp files, locks).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown storage kind {kind!r}; known: {', '.join(KINDS)}")
    data = Path(data_dir)
    data.mkdir(parents=True, exist_ok=True, mode=0o700)
    if kind == "s3":
        from .blobs_s3 import S3BlobStore
        if s3 is None:
            raise ValueError("storage kind s3 needs its settings (endpoint, bucket, keys)")
        if s3.cache_max_size > 0:
            from .blob_tier import TieredS3BlobStore
            blobs: Any = TieredS3BlobStore(data, s3)
        else:
            blobs = S3BlobStore(data, s3)
        blobs.ensure_bucket()
    else:
        blobs = BlobStore(data)
    if database_url:
        from .meta_pg import PgCatalog, PgDatabase, PgEntryIndex
        pg = PgDatabase(database_url)
        users, audit = _accounts(data, pg)
        # policy state and download counts stay in the node's SQLite for now
        return Storage(kind, blobs, pg, PgEntryIndex(pg), PgCatalog(pg),  # type: ignore[arg-type]
                       local_db=Database(data / "depot.db"), accounts=users, audit=audit)
    db = Database(data / "depot.db")
    entries = EntryIndex(db, data / "negative")
    users, audit = _accounts(data, db)
    return Storage(kind, blobs, db, entries, Catalog(db), accounts=users, audit=audit)


def _accounts(data_dir: Path, db: Any) -> tuple[Any, Any]:
    """The account store and audit log on `db`: PostgreSQL (shared by the nodes) or SQLite."""
    if getattr(db, "kind", None) == "postgresql":
        from .accounts_pg import PgAccounts, PgAuditLog
        return PgAccounts(db), PgAuditLog(db)
    return UserStore(db), AuditLog(data_dir / "audit.log")


@dataclass
class Accounts:
    """What the user and token commands open: the account store, the audit log, their database."""

    users: Any        # AccountStorage
    audit: Any        # AuditStorage
    db: Any

    def close(self) -> None:
        self.audit.close()
        self.db.close()


def open_accounts(data_dir: Path, database_url: str | None = None, create: bool = False) -> Accounts:
    """Only the accounts (users, tokens, lockout, audit): in the shared PostgreSQL database when
    `database_url` is given, else in the node's SQLite (StoreMissing without `create`, as
    open_database)."""
    if database_url:
        from .meta_pg import PgDatabase
        Path(data_dir).mkdir(parents=True, exist_ok=True, mode=0o700)
        db: Any = PgDatabase(database_url, max_size=2)
    else:
        db = open_database(data_dir, create=create)
    try:
        users, audit = _accounts(Path(data_dir), db)
    except BaseException:
        db.close()
        raise
    return Accounts(users, audit, db)


class StoreMissing(FileNotFoundError):
    """The data directory holds no depot store (admin commands say so instead of creating one)."""


def open_database(data_dir: Path, create: bool = False) -> Database:
    """Only the metadata database (admin commands that touch no blob). Without `create`, a
    missing data directory is an error (StoreMissing) rather than a new empty store."""
    data = Path(data_dir)
    if not create and not (data / "depot.db").is_file():
        raise StoreMissing(f"no depot store in {data.resolve()} (looked for {data.resolve() / 'depot.db'}); "
                           "give --data or run from the directory that holds depot-data")
    data.mkdir(parents=True, exist_ok=True, mode=0o700)
    return Database(data / "depot.db")


def open_blobs(data_dir: Path) -> BlobStore:
    """Only the blob store (import of a backup's blobs)."""
    return BlobStore(Path(data_dir))


FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


def storage_full(exc: BaseException | None) -> bool:
    """Whether `exc` (or what caused it) is the disk or quota of the store running out."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, OSError) and exc.errno in FULL_ERRNOS:
            return True
        if isinstance(exc, sqlite3.OperationalError) and "disk is full" in str(exc):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False
