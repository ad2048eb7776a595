"""The durable outbox: every message waits on disk until the broker acknowledges it (issue 7).

One SQLite file in WAL mode, one table. The MQTT publisher drains it in ``seq`` order and deletes
a row only when the broker ACKs it, so a broker outage, an agent restart or a SIGKILL loses
nothing; consumers de-duplicate by the event ``id`` (QoS 1 is at-least-once).

Bounded: when a put would exceed ``max_messages`` or ``max_bytes`` the oldest ``stats`` rows go
first, then the oldest ``event_update`` rows; ``event_new`` / ``event_end`` / ``model`` rows are
dropped (oldest first) only when nothing cheaper is left, i.e. at the hard cap. Every drop is
counted per kind; the MQTT sink reports the counts in its stats payload.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from agent.config import OutboxConfig

logger = logging.getLogger(__name__)

Kind = Literal["event_new", "event_update", "event_end", "stats", "model"]
KINDS: Final[tuple[Kind, ...]] = ("event_new", "event_update", "event_end", "stats", "model")

# Cheapest first: what the cap sacrifices before anything else (issue 7: stats, then updates).
_DROP_ORDER: Final[tuple[tuple[str, ...], ...]] = (
    ("stats",),
    ("event_update",),
    KINDS,  # the hard cap: detections and model state go last, oldest first
)

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    qos INTEGER NOT NULL,
    retain INTEGER NOT NULL,
    created REAL NOT NULL
)
"""


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
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        try:
            self._db, count, size = _open(self.path)
        except sqlite3.DatabaseError as exc:
            # An SD card can corrupt the file; refusing to start would lose every detection
            # from now on to save none of the old ones. Keep it aside for forensics, start empty.
            aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
            logger.error("outbox: %s is unreadable (%s); moved to %s", self.path, exc, aside)
            for suffix in ("", "-wal", "-shm"):
                part = self.path.with_name(self.path.name + suffix)
                if part.exists():
                    part.replace(aside.with_name(aside.name + suffix))
            self._db, count, size = _open(self.path)
        self._count: int = count
        self._bytes: int = size
        self._dropped: dict[str, int] = dict.fromkeys(KINDS, 0)
        if count:
            logger.info("outbox: %d queued messages (%d bytes) from before restart", count, size)

    @classmethod
    def from_config(cls, config: OutboxConfig, state_dir: str) -> Outbox:
        """The outbox ``[outbox]`` describes (default path: ``<state_dir>/outbox.sqlite``)."""
        return cls(config.resolved_path(state_dir), config.max_messages, config.max_bytes)

    def put(self, kind: Kind, topic: str, payload: bytes, qos: int, retain: bool) -> int:
        """Queue a message durably and return its sequence number (0 when it cannot fit)."""
        if kind not in KINDS:
            raise ValueError(f"unknown outbox kind {kind!r} (valid: {', '.join(KINDS)})")
        size = len(payload)
        with self._lock:
            if size > self.max_bytes:
                self._dropped[kind] += 1
                logger.warning(
                    "outbox: dropped a %s of %d bytes (cap %d)", kind, size, self.max_bytes
                )
                return 0
            self._make_room(size)
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

    def peek(self, n: int, after: int = 0) -> list[Row]:
        """The oldest ``n`` rows with ``seq > after``, in order (nothing is removed)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, kind, topic, payload, qos, retain, created FROM outbox "
                "WHERE seq > ? ORDER BY seq LIMIT ?",
                (after, n),
            ).fetchall()
        return [Row(s, k, t, bytes(p), q, bool(r), c) for s, k, t, p, q, r, c in rows]

    def ack(self, seq: int) -> None:
        """Remove a row the broker has acknowledged (a no-op when already dropped)."""
        self.ack_many((seq,))

    def ack_many(self, seqs: Iterable[int]) -> None:
        """Remove several acknowledged rows in one transaction (one fsync, not one per row)."""
        seqs = tuple(seqs)  # materialise before taking the lock
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for seq in seqs:
                    row = self._db.execute(
                        "DELETE FROM outbox WHERE seq = ? RETURNING length(payload)", (seq,)
                    ).fetchone()
                    if row is not None:
                        self._count -= 1
                        self._bytes -= row[0]
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

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

    def _make_room(self, incoming: int) -> None:
        """Drop the cheapest oldest rows until one more message of ``incoming`` bytes fits."""
        for kinds in _DROP_ORDER:
            marks = ",".join("?" * len(kinds))
            while self._count + 1 > self.max_messages or self._bytes + incoming > self.max_bytes:
                row = self._db.execute(
                    f"DELETE FROM outbox WHERE seq = (SELECT min(seq) FROM outbox "  # noqa: S608
                    f"WHERE kind IN ({marks})) RETURNING kind, length(payload)",
                    kinds,
                ).fetchone()
                if row is None:
                    break
                self._count -= 1
                self._bytes -= row[1]
                self._dropped[row[0]] = self._dropped.get(row[0], 0) + 1
                logger.debug("outbox: full, dropped the oldest %s", row[0])


def _open(path: Path) -> tuple[sqlite3.Connection, int, int]:
    """Open (or create) the outbox database; returns it with its row count and payload bytes."""
    # One connection guarded by a lock: writes are tiny and rare, so threads never contend
    # for long, and one connection keeps the cached counts exact.
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        # FULL, not NORMAL: in WAL mode NORMAL survives a process crash (SIGKILL) but a power cut
        # can roll back the last commits, because the WAL is only fsynced at checkpoints. A
        # detection must survive a gateway losing power on an SD card, and events are a few per
        # minute (stats one per interval), so one fsync per commit costs nothing that matters.
        db.execute("PRAGMA synchronous=FULL")
        db.execute(_SCHEMA)
        count, size = db.execute(
            "SELECT count(*), coalesce(sum(length(payload)), 0) FROM outbox"
        ).fetchone()
    except sqlite3.DatabaseError:
        db.close()
        raise
    return db, int(count), int(size)
