"""Where the collector keeps a fleet's messages: SQLite by default, PostgreSQL given a URL.

Three tables, the same in both engines:

* ``events`` — one row per event message, keyed by its ``id`` (the contract's de-duplication
  key): a replayed or redelivered event is ignored by the primary key, never stored twice. Its
  ``incident`` groups the detections of one attack that came back (a table made before the
  column existed gets it at open, filled from the stored payloads).
* ``stats`` — one row per stats message, keyed by ``(device, time)`` for the same reason.
* ``devices`` — one row per gateway: last status (``online`` / ``offline``) and when it was
  last heard from.

Every message is one transaction: its row and the device's ``last_seen`` land together or not
at all. The JSON payload is kept whole (``payload``: TEXT in SQLite, JSONB in PostgreSQL) beside
the columns dashboards filter on, so keys added to the contract later are queryable without a
migration.
"""

from __future__ import annotations

import logging
import random
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol

from agent.contract import MAX_ID_CHARS

logger = logging.getLogger(__name__)

POSTGRES_SCHEMES: Final = ("postgresql://", "postgres://")
INSTALL_POSTGRES: Final = "pip install 'iotids[console]'"


class StoreError(Exception):
    """The database refused a write or went away; the message was not stored.

    ``retryable`` is True when the database itself failed (down, locked, disk): the same
    message may be stored later. False when it refused this message (bad data).
    """

    def __init__(self, message: str, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


@dataclass(frozen=True)
class EventRow:
    """One event message as stored."""

    id: str
    device: str
    type: str
    detection: str
    incident: str  # the first detection of the attack this one recurs, else its own
    label: str
    category: str
    score: float | None
    time: float
    received: float
    payload: str  # the message's JSON text, whole

    @property
    def opens_incident(self) -> bool:
        """A ``new`` event that does not recur an earlier detection's incident."""
        return self.type == "new" and self.incident == self.detection


@dataclass(frozen=True)
class StatsRow:
    """One stats message as stored."""

    device: str
    time: float
    received: float
    payload: str


@dataclass(frozen=True)
class StatusRow:
    """A gateway's retained ``online`` / ``offline``."""

    device: str
    status: str
    received: float


Row = EventRow | StatsRow | StatusRow


class Store(Protocol):
    """What the consumer writes to."""

    def add(self, row: Row) -> bool:
        """Store one message in one transaction; False when it was already there (duplicate)."""
        ...

    def close(self) -> None:
        """Release the connection."""
        ...


@dataclass(frozen=True)
class _Dialect:
    """The few places SQLite and PostgreSQL spell things differently."""

    json_type: str
    greatest: str
    placeholder: str
    incident_in_payload: str  # the payload's ``incident`` when it is a string, else NULL
    # two collectors upgrading one PostgreSQL database at once: the second's ALTER waits for
    # the first's and then finds the column (SQLite has no IF NOT EXISTS here; one writer)
    add_column: str

    def sql(self, text: str) -> str:
        return text.replace("%s", self.placeholder)


_SQLITE: Final = _Dialect(
    json_type="TEXT",
    greatest="MAX",
    placeholder="?",
    add_column="ADD COLUMN",
    incident_in_payload=(
        "CASE json_type(payload, '$.incident') WHEN 'text'"
        " THEN json_extract(payload, '$.incident') END"
    ),
)
_POSTGRES: Final = _Dialect(
    json_type="JSONB",
    greatest="GREATEST",
    placeholder="%s",
    add_column="ADD COLUMN IF NOT EXISTS",
    incident_in_payload=(
        "CASE jsonb_typeof(payload->'incident') WHEN 'string' THEN payload->>'incident' END"
    ),
)


def _tables(d: _Dialect) -> list[str]:
    return [
        f"""CREATE TABLE IF NOT EXISTS events (
            id TEXT PRIMARY KEY,
            device TEXT NOT NULL,
            type TEXT NOT NULL,
            detection TEXT NOT NULL,
            incident TEXT NOT NULL DEFAULT '',
            label TEXT NOT NULL,
            category TEXT NOT NULL,
            score DOUBLE PRECISION,
            time DOUBLE PRECISION NOT NULL,
            received DOUBLE PRECISION NOT NULL,
            payload {d.json_type} NOT NULL
        )""",
        f"""CREATE TABLE IF NOT EXISTS stats (
            device TEXT NOT NULL,
            time DOUBLE PRECISION NOT NULL,
            received DOUBLE PRECISION NOT NULL,
            payload {d.json_type} NOT NULL,
            PRIMARY KEY (device, time)
        )""",
        """CREATE TABLE IF NOT EXISTS devices (
            device TEXT PRIMARY KEY,
            status TEXT NOT NULL DEFAULT 'unknown',
            status_received DOUBLE PRECISION,
            last_seen DOUBLE PRECISION NOT NULL
        )""",
    ]


INDEXES: Final = (
    "CREATE INDEX IF NOT EXISTS events_device_time ON events (device, time)",
    "CREATE INDEX IF NOT EXISTS events_detection ON events (detection)",
    "CREATE INDEX IF NOT EXISTS events_incident ON events (incident)",
)


def _add_incident(d: _Dialect) -> list[str]:
    """An events table made before ``incident``: the column, filled from each stored payload.

    The rule of ``agent.contract.incident_of``, in SQL: the payload's ``incident`` when a
    non-empty string, cut to the stored ids' length, else the row's own detection.
    """
    return [
        f"ALTER TABLE events {d.add_column} incident TEXT NOT NULL DEFAULT ''",
        "UPDATE events SET incident = COALESCE(NULLIF(substr("  # noqa: S608 - the dialect's constant expression only
        f"{d.incident_in_payload}, 1, {MAX_ID_CHARS}), ''), detection) WHERE incident = ''",
    ]


def _seen_sql(d: _Dialect) -> str:
    return d.sql(
        "INSERT INTO devices (device, last_seen) VALUES (%s, %s) ON CONFLICT (device) DO UPDATE"  # noqa: S608 - only the dialect's constant function name is formatted in
        f" SET last_seen = {d.greatest}(devices.last_seen, excluded.last_seen)"
    )


def _status_sql(d: _Dialect) -> str:
    return d.sql(
        "INSERT INTO devices (device, status, status_received, last_seen)"  # noqa: S608 - as above
        " VALUES (%s, %s, %s, %s) ON CONFLICT (device) DO UPDATE"
        " SET status = excluded.status, status_received = excluded.status_received,"
        f" last_seen = {d.greatest}(devices.last_seen, excluded.last_seen)"
    )


def _event_sql(d: _Dialect) -> str:
    return d.sql(
        "INSERT INTO events (id, device, type, detection, incident, label, category, score,"
        " time, received, payload) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (id) DO NOTHING"
    )


def _stats_sql(d: _Dialect) -> str:
    return d.sql(
        "INSERT INTO stats (device, time, received, payload) VALUES (%s, %s, %s, %s)"
        " ON CONFLICT (device, time) DO NOTHING"
    )


class _Cursor(Protocol):
    rowcount: int
    description: Any  # DB-API: one sequence per result column, its name first

    def execute(self, query: Any, params: Any = ..., /) -> Any: ...


class SqlStore:
    """A :class:`Store` over one DB-API connection (sqlite3 or psycopg 3).

    Single-threaded by design: the consumer writes from paho's network thread only.
    """

    def __init__(
        self,
        connect: Callable[[], Any],
        dialect: _Dialect,
        errors: tuple[type[BaseException], ...],
        refusals: tuple[type[BaseException], ...],
        same_file: Callable[[], bool] = lambda: True,
    ) -> None:
        self._connect = connect
        self._dialect = dialect
        self._errors = errors
        # what the database says of one message's content; any other error is the database
        # failing (down, locked, full, a damaged file): retried, never acknowledged as stored
        self._refusals = refusals
        self._same_file = same_file
        self._conn: Any = None
        self._event_sql = _event_sql(dialect)
        self._stats_sql = _stats_sql(dialect)
        self._seen_sql = _seen_sql(dialect)
        self._status_sql = _status_sql(dialect)
        with self._transaction():
            pass  # connects, and makes or upgrades the tables

    def _prepare(self, cur: _Cursor) -> None:
        """The tables on every new connection: the file may be new since the last one."""
        for statement in _tables(self._dialect):
            cur.execute(statement)
        cur.execute("SELECT * FROM events LIMIT 0")
        if "incident" not in {column[0] for column in cur.description}:
            for statement in _add_incident(self._dialect):
                cur.execute(statement)
        for statement in INDEXES:
            cur.execute(statement)

    @contextmanager
    def _transaction(self) -> Iterator[_Cursor]:
        """One transaction: commit on success, roll back and raise StoreError on failure."""
        if self._conn is not None and not self._same_file():
            self._drop_connection()
            logger.warning("store: the database file was removed or replaced; opening it anew")
            raise StoreError("the database file was removed or replaced")
        try:
            fresh = self._conn is None
            if self._conn is None:
                self._conn = self._connect()
            cur = self._conn.cursor()
            try:
                if fresh:
                    self._prepare(cur)
                yield cur
                self._conn.commit()
            finally:
                cur.close()
        except self._errors as exc:
            self._drop_connection()
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
            raise StoreError(text, retryable=not isinstance(exc, self._refusals)) from exc

    def _drop_connection(self) -> None:
        """Roll back and forget the connection; the next write reconnects."""
        if self._conn is None:
            return
        conn, self._conn = self._conn, None
        for step in (conn.rollback, conn.close):  # close even when the rollback fails
            try:
                step()
            except self._errors:
                logger.debug("store: cleaning up a failed connection failed too", exc_info=True)

    def add(self, row: Row) -> bool:
        """Store one message in one transaction; False when it was already there."""
        with self._transaction() as cur:
            if isinstance(row, StatusRow):
                cur.execute(self._status_sql, (row.device, row.status, row.received, row.received))
                return True
            if isinstance(row, EventRow):
                cur.execute(
                    self._event_sql,
                    (
                        row.id,
                        row.device,
                        row.type,
                        row.detection,
                        row.incident,
                        row.label,
                        row.category,
                        row.score,
                        row.time,
                        row.received,
                        row.payload,
                    ),
                )
            else:
                cur.execute(self._stats_sql, (row.device, row.time, row.received, row.payload))
            stored = cur.rowcount == 1
            cur.execute(self._seen_sql, (row.device, row.received))
            return stored

    def close(self) -> None:
        """Close the connection (nothing is pending: every add committed)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None


WAL_CHECKPOINT_PAGES: Final = 256
WAL_KEEP_BYTES: Final = 1 << 20
OPEN_RETRY_S: Final = 10.0  # collectors starting together on one new file wait their turn


class _SqliteFile:
    """Connections to one SQLite file, and whether the path still names the file they opened.

    A connection keeps writing to a file deleted or moved away under it: every message would
    be acknowledged into a file no one can read again.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._identity: tuple[int, int] | None = None

    def connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=10.0, check_same_thread=False)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            # a WAL kept small: left at SQLite's default it held ~4 MB of commits, enough to
            # fill a small volume before any reached the database file
            conn.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
            conn.execute(f"PRAGMA journal_size_limit={WAL_KEEP_BYTES}")
            stat = self.path.stat()
        except (sqlite3.Error, OSError):
            conn.close()
            raise
        self._identity = (stat.st_dev, stat.st_ino)
        return conn

    def same(self) -> bool:
        try:
            stat = self.path.stat()
        except OSError:
            return False
        return (stat.st_dev, stat.st_ino) == self._identity


def vanishes(url: str) -> bool:
    """A ``--db`` that SQLite opens as its private temporary or in-memory database: gone at
    exit with every message the collector acknowledged into it."""
    path = url.removeprefix("sqlite://")
    return path in ("", ":memory:") or path.startswith("file:")


def sqlite_store(path: str | Path) -> SqlStore:
    """The embedded default: one SQLite file (WAL, so readers never block the collector)."""
    if vanishes(str(path)):
        raise StoreError(f"a database file path is needed, got {str(path)!r}", retryable=False)
    file = _SqliteFile(path)
    refusals = (
        sqlite3.IntegrityError,
        sqlite3.DataError,
        sqlite3.InterfaceError,
        sqlite3.ProgrammingError,
    )
    deadline = time.monotonic() + OPEN_RETRY_S
    while True:
        try:
            return SqlStore(file.connect, _SQLITE, (sqlite3.Error, OSError), refusals, file.same)
        except StoreError as exc:
            # a new file's schema is made under a lock SQLite does not wait for
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05 + 0.1 * random.random())  # noqa: S311 - jitter, not a secret


def postgres_store(url: str) -> SqlStore:
    """PostgreSQL through psycopg 3 (the ``[console]`` extra)."""
    try:
        import psycopg
    except ImportError as exc:
        raise StoreError(f"a PostgreSQL URL needs psycopg 3: {INSTALL_POSTGRES}") from exc

    def connect() -> Any:
        return psycopg.connect(url, connect_timeout=10)

    refusals = (psycopg.DataError, psycopg.IntegrityError)  # a dropped table is not one
    return SqlStore(connect, _POSTGRES, (psycopg.Error,), refusals)


def open_store(url: str) -> SqlStore:
    """``postgresql://...``, else a SQLite file: a path, or ``sqlite://`` + path."""
    if url.startswith(POSTGRES_SCHEMES):
        return postgres_store(url)
    return sqlite_store(url.removeprefix("sqlite://"))
