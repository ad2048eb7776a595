"""The durable outbox: every message waits on disk until the broker acknowledges it.

One SQLite file in WAL mode. The MQTT publisher drains the ``outbox`` table in ``seq`` order and
deletes a row only when the broker ACKs it, so a broker outage, an agent restart or a SIGKILL
loses nothing; consumers de-duplicate by the event ``id`` (QoS 1 is at-least-once).

Bounded: when a put would exceed ``max_messages`` or ``max_bytes``, a message may only evict
rows that rank no higher than itself, oldest first: a ``stats`` row evicts only older stats, an
``event_update`` stats then older updates, and ``event_new`` / ``event_end`` / ``model`` /
``state`` rows evict stats, then updates, then (the hard cap: nothing cheaper is left) the oldest
of their own rank. A message that finds nothing it may evict is itself dropped, so a stats row
never costs an event. Every drop is counted per kind; the MQTT sink reports the counts.

``state`` rows are superseded: a new one replaces the queued ones (only the latest retained
state matters). Beside the queue the file keeps the detections that are open (the last event
payload of each) and the last event, written in the same transaction as that event's row, so
a restarted agent knows which detections a crash left open.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from agent.config import ConfigError, OutboxConfig

logger = logging.getLogger(__name__)

Kind = Literal["event_new", "event_update", "event_end", "stats", "model", "state"]
KINDS: Final[tuple[Kind, ...]] = (
    "event_new",
    "event_update",
    "event_end",
    "stats",
    "model",
    "state",
)

# What the cap sacrifices, cheapest first: stats, then updates, then (hard cap) the rest.
_RANKS: Final[tuple[tuple[str, ...], ...]] = (
    ("stats",),
    ("event_update",),
    ("event_new", "event_end", "model", "state"),
)
_RANK: Final[dict[str, int]] = {kind: i for i, kinds in enumerate(_RANKS) for kind in kinds}
_SUPERSEDED: Final = frozenset({"state"})
_WAL_PAGES: Final = 64  # checkpoint the WAL at this many pages (256 KiB at 4 KiB pages)
_WAL_LIMIT: Final = 1 << 20  # bytes the WAL file keeps after a checkpoint, at most
# The first 16 bytes of every SQLite 3 database file.
_SQLITE_MAGIC: Final = b"SQLite format 3\x00"

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    qos INTEGER NOT NULL,
    retain INTEGER NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS open_detections (
    detection TEXT PRIMARY KEY,
    payload BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS memo (
    key TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
"""


class OutboxError(Exception):
    """The outbox path cannot be used (a directory, no permission, not an SQLite file ...)."""


@dataclass(frozen=True)
class Track:
    """What an event row does to the open detections: opens/refreshes or closes ``detection``."""

    detection: str
    open: bool


@dataclass(frozen=True)
class Row:
    """One queued message, as stored."""

    seq: int
    kind: str
    topic: str
    payload: bytes
    qos: int
    retain: bool
    created: float


class Outbox:
    """A bounded, crash-safe FIFO of MQTT messages shared by the agent's threads."""

    def __init__(self, path: str | Path, max_messages: int, max_bytes: int) -> None:
        if max_messages < 1 or max_bytes < 1:
            raise ValueError(f"outbox caps must be >= 1, got {max_messages}, {max_bytes}")
        self.path = Path(path)
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        _check_path(self.path)
        try:
            self._db, count, size = _open(self.path)
        except _Corrupt as exc:
            # An SD card can corrupt the file; refusing to start would lose every detection
            # from now on to save none of the old ones. Keep it aside for forensics, start empty.
            # Only a real SQLite file that failed its check gets here: anything else the path
            # names (a directory, somebody's file) is refused before, untouched.
            aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
            logger.error("outbox: %s is corrupt (%s); moved to %s", self.path, exc, aside)
            for suffix in ("", "-wal", "-shm"):
                part = self.path.with_name(self.path.name + suffix)
                if part.is_file():
                    part.replace(aside.with_name(aside.name + suffix))
            self._db, count, size = _open(self.path)
        self._count: int = count
        self._bytes: int = size
        self._dropped: dict[str, int] = dict.fromkeys(KINDS, 0)
        if count:
            logger.info("outbox: %d queued messages (%d bytes) from before restart", count, size)

    @classmethod
    def from_config(cls, config: OutboxConfig, state_dir: str) -> Outbox:
        """The outbox ``[outbox]`` describes (default path: ``<state_dir>/outbox.sqlite``).

        A path that cannot be used is a ConfigError naming the key that chose it.
        """
        try:
            return cls(config.resolved_path(state_dir), config.max_messages, config.max_bytes)
        except OutboxError as exc:
            key = "outbox.path" if config.path else "agent.state_dir"
            raise ConfigError(f"{key}: {exc}") from None

    def put(
        self,
        kind: Kind,
        topic: str,
        payload: bytes,
        qos: int,
        retain: bool,
        *,
        track: Track | None = None,
    ) -> int:
        """Queue a message durably and return its sequence number (0 when it was dropped).

        With ``track`` the open detections and the last event change in the same transaction,
        whether or not the message itself fits.
        """
        if kind not in KINDS:
            raise ValueError(f"unknown outbox kind {kind!r} (valid: {', '.join(KINDS)})")
        size = len(payload)
        with self._lock:
            with self._transaction():
                if track is not None:
                    self._track(track, payload)
                seq = self._insert(kind, topic, payload, qos, retain)
            if seq == 0:
                self._dropped[kind] += 1
                # Stats are expected to go during a long outage: one warning per interval
                # would fill an SD card's journal with noise.
                logger.log(
                    logging.DEBUG if kind == "stats" else logging.WARNING,
                    "outbox: full, dropped a new %s of %d bytes (nothing cheaper to evict)",
                    kind,
                    size,
                )
        return seq

    def open_detections(self) -> dict[str, bytes]:
        """The last event payload of every detection that was open when it was written."""
        with self._lock:
            rows = self._db.execute("SELECT detection, payload FROM open_detections").fetchall()
        found: dict[str, bytes] = {}
        for detection, payload in rows:
            if isinstance(detection, str) and isinstance(payload, bytes):
                found[detection] = payload
            else:  # a flipped bit can turn a BLOB into TEXT and pass the integrity check
                logger.error("outbox: an open detection's record is damaged; skipped")
        return found

    def last_event(self) -> bytes | None:
        """The payload of the last tracked event (any type), None before the first one."""
        with self._lock:
            row = self._db.execute("SELECT value FROM memo WHERE key = 'last_event'").fetchone()
        if row is not None and not isinstance(row[0], bytes):
            logger.error("outbox: the last event's record is damaged; skipped")
            return None
        return None if row is None else row[0]

    def peek(self, n: int, after: int = 0) -> list[Row]:
        """The oldest ``n`` rows with ``seq > after``, in order (nothing is removed but a
        damaged row, which is dropped, counted under its kind and said in one line)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, kind, topic, payload, qos, retain, created FROM outbox "
                "WHERE seq > ? ORDER BY seq LIMIT ?",
                (after, n),
            ).fetchall()
            found = [Row(s, k, t, p, q, bool(r), c) for s, k, t, p, q, r, c in rows]
            damaged = {row.seq: why for row in found if (why := _damage(row))}
            if damaged:
                for row in found:
                    if row.seq in damaged:
                        logger.error(
                            "outbox: row %s is damaged (%s); dropped", row.seq, damaged[row.seq]
                        )
                        if row.kind in self._dropped:
                            self._dropped[row.kind] += 1
                with self._transaction():
                    for seq in damaged:
                        self._db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))
                self._reload_counts()
        return [row for row in found if row.seq not in damaged]

    def ack(self, seq: int) -> None:
        """Remove a row the broker has acknowledged (a no-op when already dropped)."""
        self.ack_many((seq,))

    def ack_many(self, seqs: Iterable[int]) -> None:
        """Remove several acknowledged rows in one transaction (one fsync, not one per row)."""
        seqs = tuple(seqs)  # materialise before taking the lock
        with self._lock, self._transaction():
            for seq in seqs:
                row = self._db.execute(
                    "DELETE FROM outbox WHERE seq = ? RETURNING length(payload)", (seq,)
                ).fetchone()
                if row is not None:
                    self._count -= 1
                    self._bytes -= row[0]

    def depth(self) -> int:
        """How many messages wait for the broker."""
        with self._lock:
            return self._count

    def size_bytes(self) -> int:
        """Total payload bytes waiting."""
        with self._lock:
            return self._bytes

    def dropped(self) -> dict[str, int]:
        """Messages dropped by the caps since this process opened the outbox, per kind."""
        with self._lock:
            return dict(self._dropped)

    def close(self) -> None:
        """Checkpoint and close the database (queued rows stay for the next start)."""
        with self._lock:
            self._db.close()

    def _track(self, track: Track, payload: bytes) -> None:
        """Open/refresh or close one detection and remember the event (inside a transaction)."""
        if track.open:
            self._db.execute(
                "INSERT OR REPLACE INTO open_detections (detection, payload) VALUES (?, ?)",
                (track.detection, payload),
            )
        else:
            self._db.execute("DELETE FROM open_detections WHERE detection = ?", (track.detection,))
        self._db.execute(
            "INSERT OR REPLACE INTO memo (key, value) VALUES ('last_event', ?)", (payload,)
        )

    def _insert(self, kind: Kind, topic: str, payload: bytes, qos: int, retain: bool) -> int:
        """Make room and insert one row (inside a transaction); 0 when it cannot fit."""
        size = len(payload)
        if size > self.max_bytes:
            return 0
        if kind in _SUPERSEDED:
            self._evict("DELETE FROM outbox WHERE kind = ? RETURNING kind, length(payload)", kind)
        if not self._make_room(kind, size):
            return 0
        cursor = self._db.execute(
            "INSERT INTO outbox (kind, topic, payload, qos, retain, created) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (kind, topic, payload, qos, int(retain), time.time()),
        )
        self._count += 1
        self._bytes += size
        seq = cursor.lastrowid
        assert seq is not None  # an INSERT always sets lastrowid
        return seq

    def _full(self, incoming: int) -> bool:
        return self._count + 1 > self.max_messages or self._bytes + incoming > self.max_bytes

    def _make_room(self, kind: Kind, incoming: int) -> bool:
        """Evict the oldest rows ranked no higher than ``kind``; False when it still cannot fit."""
        for kinds in _RANKS[: _RANK[kind] + 1]:
            marks = ",".join("?" * len(kinds))
            query = (
                f"DELETE FROM outbox WHERE seq = (SELECT min(seq) FROM outbox "  # noqa: S608
                f"WHERE kind IN ({marks})) RETURNING kind, length(payload)"
            )
            while self._full(incoming) and self._evict(query, *kinds, counted=True):
                pass
        return not self._full(incoming)

    def _evict(self, query: str, *args: str, counted: bool = False) -> bool:
        """Run one DELETE ... RETURNING kind, length; keep the counts; False if nothing went."""
        rows = self._db.execute(query, args).fetchall()
        for kind, length in rows:
            self._count -= 1
            self._bytes -= length
            if counted:
                self._dropped[kind] = self._dropped.get(kind, 0) + 1
                logger.debug("outbox: full, dropped the oldest %s", kind)
        return bool(rows)

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """One write transaction (the caller holds the lock). When any part fails, COMMIT too
        (a full disk fails it, not the statements before), it is rolled back and the cached
        counts and drop counts are what the file holds again: a put that never landed must not
        count toward the cap, or a full SD card would leave the outbox "full" of nothing."""
        dropped = dict(self._dropped)
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
            self._db.execute("COMMIT")
        except BaseException as exc:
            # SQLite rolls back on its own what it could not commit
            if self._db.in_transaction:
                with suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
            self._dropped = dropped
            self._reload_counts()
            if _is_full(exc):
                # The WAL itself may hold the space: below SQLite's checkpoint size (4 MB) on a
                # nearly full card no commit would ever reach a checkpoint to give it back.
                with suppress(sqlite3.Error):
                    self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            raise

    def _reload_counts(self) -> None:
        """Re-read the cached counts after a rolled-back transaction."""
        count, size = self._db.execute(
            "SELECT count(*), coalesce(sum(length(payload)), 0) FROM outbox"
        ).fetchone()
        self._count, self._bytes = int(count), int(size)


def _damage(row: Row) -> str:
    """Why a stored row cannot be published as it is ("" when it can): a flipped bit can turn
    a BLOB into TEXT or a topic's "/" into a wildcard and still pass SQLite's integrity check."""
    if row.kind not in KINDS:
        return "unknown kind"
    if not isinstance(row.payload, bytes):
        return "payload not bytes"
    if not isinstance(row.topic, str) or not row.topic or "+" in row.topic or "#" in row.topic:
        return "topic"
    if row.qos not in (0, 1, 2):
        return "qos"
    return ""


def _is_full(exc: BaseException | None) -> bool:
    """An SQLite error that says the disk (or the database's size limit) is full."""
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(exc, sqlite3.Error) and (code or 0) & 0xFF == sqlite3.SQLITE_FULL


def _probe_write(db: sqlite3.Connection) -> None:
    """Write once: a file SQLite can only read (its ``-shm`` a directory, say) opens and reads
    fine, and would then refuse every event. A full disk is let through (what is queued can
    still be sent, and the caps hold what fits once there is room)."""
    try:
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT OR REPLACE INTO memo (key, value) VALUES ('opened', ?)", (b"",))
        db.execute("COMMIT")
    except sqlite3.OperationalError as exc:
        if db.in_transaction:
            with suppress(sqlite3.Error):
                db.execute("ROLLBACK")
        if not _is_full(exc):
            raise
        logger.warning("outbox: the disk is full; queued messages are still sent")


class _Corrupt(Exception):
    """An SQLite outbox file that fails its integrity check: the one thing moved aside."""


def _check_path(path: Path) -> None:
    """Refuse, untouched, anything at ``path`` that is not an SQLite file (or nothing yet)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutboxError(
            f"cannot create the folder {path.parent}: {exc.strerror or exc}"
        ) from None
    if not path.parent.is_dir():
        raise OutboxError(f"{path.parent} is not a directory")
    if not path.exists() and not path.is_symlink():
        if not os.access(path.parent, os.W_OK | os.X_OK):
            raise OutboxError(f"cannot create {path}: {path.parent} is not writable")
        return
    check_existing(path)


def check_existing(path: Path) -> None:
    """Refuse, without touching it, an existing ``path`` that is not a writable SQLite file.

    ``validate-config`` calls this too, so it refuses what ``run`` would refuse.
    """
    if not path.exists() and not path.is_symlink():
        return
    if not path.is_file():
        raise OutboxError(f"{path} is not a regular file (a directory?); nothing was changed")
    try:
        with path.open("rb") as fh:
            head = fh.read(len(_SQLITE_MAGIC))
    except OSError as exc:
        raise OutboxError(f"cannot read {path}: {exc.strerror or exc}") from None
    if head and head != _SQLITE_MAGIC:
        raise OutboxError(f"{path} is not an SQLite database; nothing was changed")
    if not os.access(path, os.W_OK) or not os.access(path.parent, os.W_OK | os.X_OK):
        raise OutboxError(f"{path} (or its folder) is not writable")


def _open(path: Path) -> tuple[sqlite3.Connection, int, int]:
    """Open (or create) the outbox database; returns it with its row count and payload bytes."""
    # One connection guarded by a lock: writes are tiny and rare, so threads never contend
    # for long, and one connection keeps the cached counts exact.
    try:
        db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    except sqlite3.Error as exc:
        raise OutboxError(f"cannot open {path}: {exc}") from None
    try:
        check = db.execute("PRAGMA quick_check(1)").fetchone()
        if check is None or check[0] != "ok":
            raise _Corrupt(f"integrity check: {check[0] if check else 'no answer'}")
        db.execute("PRAGMA journal_mode=WAL")
        # FULL, not NORMAL: in WAL mode NORMAL survives a process crash (SIGKILL) but a power cut
        # can roll back the last commits, because the WAL is only fsynced at checkpoints. A
        # detection must survive a gateway losing power on an SD card, and events are a few per
        # minute (stats one per interval), so one fsync per commit costs nothing that matters.
        db.execute("PRAGMA synchronous=FULL")
        # A small WAL, given back after each checkpoint: at SQLite's default (1000 pages, 4 MB,
        # kept at its largest) a card with less free space fills with the WAL alone, and a full
        # disk fails every commit, so none reaches the checkpoint that would free it.
        db.execute(f"PRAGMA wal_autocheckpoint={_WAL_PAGES}")
        db.execute(f"PRAGMA journal_size_limit={_WAL_LIMIT}")
        db.executescript(_SCHEMA)
        _probe_write(db)
        count, size = db.execute(
            "SELECT count(*), coalesce(sum(length(payload)), 0) FROM outbox"
        ).fetchone()
    except _Corrupt:
        db.close()
        raise
    except sqlite3.DatabaseError as exc:
        db.close()
        code = getattr(exc, "sqlite_errorcode", None)
        if code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
            raise _Corrupt(str(exc)) from None
        raise OutboxError(f"cannot use {path}: {exc}") from None
    return db, int(count), int(size)
