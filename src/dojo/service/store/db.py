"""Engines, sessions and migrations of the job store.

SQLite (WAL, foreign keys on, every transaction ``BEGIN IMMEDIATE`` so that a read followed by
a write never fails half way) is the default; PostgreSQL (psycopg 3) serves many hosts.

Migrations are Alembic revisions (:mod:`dojo.service.store.migrations`), run from code when a
store is opened by ``dojo serve``, an agent or an admin command: an empty database and an old
one take the same revisions in one transaction; a database newer than this code is refused.
Concurrent starts are serialised (a PostgreSQL advisory lock; SQLite's write lock).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from dojo.errors import DojoConfigError
from dojo.service.store import migrations

SQLITE_POOL_SIZE = 48
_PG_LOCK_KEY = 0x646F6A6F  # "dojo": the advisory lock held while migrating


def normalize_url(url: str) -> str:
    """``postgresql://`` means psycopg 3; a bare ``*.db`` path means a SQLite file."""
    if "://" not in url:
        if not url.endswith((".db", ".sqlite", ".sqlite3")):
            raise DojoConfigError(
                f"--db {url!r} is neither a URL (sqlite:///PATH, postgresql://USER@HOST/DB) "
                "nor a SQLite file path ending in .db, .sqlite or .sqlite3."
            )
        return f"sqlite:///{Path(url).expanduser().resolve()}"
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def masked(url: str) -> str:
    """The URL without its password, for messages."""
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)


class Database:
    """One job store: an engine and a session factory."""

    def __init__(self, url: str) -> None:
        self.url = normalize_url(url)
        try:
            parsed = make_url(self.url)
        except ArgumentError:
            raise DojoConfigError(
                f"--db {masked(url)!r} is not a database URL "
                "(sqlite:///PATH or postgresql://USER@HOST/DB)."
            ) from None
        self.dialect = parsed.get_backend_name()
        if self.dialect not in ("sqlite", "postgresql"):
            raise DojoConfigError(
                f"--db {masked(url)!r}: only SQLite and PostgreSQL are supported."
            )
        try:
            self.engine = (
                _sqlite_engine(self.url)
                if self.dialect == "sqlite"
                else create_engine(self.url, pool_pre_ping=True, pool_size=10, max_overflow=20)
            )
        except ImportError as e:
            raise DojoConfigError(
                f"--db {masked(url)!r} needs a driver that is not installed ({e}); "
                "for PostgreSQL: pip install 'psycopg[binary]'."
            ) from None
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        # SQLite has one writer at a time, and a writer that finds the lock taken sleeps in its
        # busy handler (backing off to 100 ms) instead of waking when it frees: under a burst of
        # submits most time went to those sleeps. Writers of this process queue on a lock of ours,
        # woken at once; other processes (agents, admin commands) still meet the busy handler.
        self._write_lock: threading.RLock | None = (
            threading.RLock() if self.dialect == "sqlite" else None
        )
        # reads take no write lock: on SQLite a plain (deferred) BEGIN instead of BEGIN IMMEDIATE
        self._reads = sessionmaker(
            self.engine.execution_options(dojo_readonly=True), expire_on_commit=False
        )

    @contextmanager
    def session(self, readonly: bool = False) -> Iterator[Session]:
        """A transaction: committed when the block ends, rolled back if it raises.

        ``readonly``: the block only reads, so on SQLite it does not queue for the write lock
        (writers then wait only for writers); it sees one snapshot all the same.
        """
        if readonly or self._write_lock is None:
            with (self._reads if readonly else self._sessions)() as s, s.begin():
                yield s
            return
        with self._write_lock, self._sessions() as s, s.begin():
            yield s

    def check(self) -> None:
        """Connect once; a clear one-line error if the store cannot be reached."""
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except OperationalError as e:
            reason = str(e.orig).strip().splitlines()[0] if e.orig else str(e)
            raise DojoConfigError(
                f"Cannot reach the job store at {masked(self.url)} ({reason})."
            ) from None

    def migrate(self) -> int:
        """Bring the schema to the newest version; returns the version found before (0: empty)."""
        self.check()
        newest = migrations.head()
        with self.engine.begin() as conn:
            if self.dialect == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
            found = migrations.current(conn)
            if found is None or found > newest:
                raise DojoConfigError(
                    f"The job store at {masked(self.url)} has a schema "
                    f"{'unknown to' if found is None else f'version {found}, newer than'} "
                    f"this Dojo's {newest}; upgrade Dojo."
                )
            if found < newest:
                migrations.upgrade(conn, found)
        return found

    def version(self) -> int:
        """The store's schema version (0: empty; -1: newer than this code knows)."""
        with self.engine.connect() as conn:
            found = migrations.current(conn)
        return -1 if found is None else found

    def dispose(self) -> None:
        self.engine.dispose()


def _sqlite_engine(url: str) -> Engine:
    database = make_url(url).database
    if database and database != ":memory:":
        try:
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise DojoConfigError(
                f"Cannot create the folder of the SQLite job store {database} ({e.strerror})."
            ) from None
    # a connection for each of the server's worker threads (anyio's 40) and a few more: a pool
    # smaller than that opens and closes overflow connections, with their PRAGMAs, under load
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": 30},
        pool_size=SQLITE_POOL_SIZE,
        max_overflow=8,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves, below
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # a writer takes the lock at the start, so two writers never deadlock upgrading a read lock
        conn.exec_driver_sql(
            "BEGIN" if conn.get_execution_options().get("dojo_readonly") else "BEGIN IMMEDIATE"
        )

    return engine
