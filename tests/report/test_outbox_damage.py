"""The outbox under a full disk and with damaged records: counts stay what the file holds,
a damaged row is dropped with one line, and a file SQLite can only read is refused at open."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.report.outbox import Outbox, OutboxError, Track
from tests.broker import Broker, Probe
from tests.report.conftest import SinkFactory, sink_config


class _FullDisk:
    """The outbox's connection, failing COMMIT as a full disk does (the statements before it
    pass: SQLite writes the WAL at commit)."""

    def __init__(self, db: sqlite3.Connection, statement: str = "COMMIT") -> None:
        self.db = db
        self.statement = statement
        self.full = True

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        if self.full and sql.startswith(self.statement):
            raise sqlite3.OperationalError("database or disk is full")
        return self.db.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.db, name)


def _rows(box: Outbox) -> int:
    return int(box._db.execute("SELECT count(*) FROM outbox").fetchone()[0])


def test_puts_that_never_landed_do_not_fill_the_cap(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox.sqlite", 10, 1_000_000)
    disk = _FullDisk(box._db)
    box._db = disk  # type: ignore[assignment]
    for _ in range(30):  # three caps' worth of stats while the disk is full
        with pytest.raises(sqlite3.OperationalError, match="full"):
            box.put("stats", "t/stats", b"s" * 100, 0, False)
    assert (box.depth(), box.size_bytes(), _rows(box)) == (0, 0, 0)
    assert box.dropped()["stats"] == 0
    disk.full = False  # room again: a new detection is queued, not dropped as "full"
    assert box.put("event_new", "t/events", b"new", 1, False, track=Track("d", True)) > 0
    assert (box.depth(), _rows(box)) == (1, 1)
    assert box.open_detections() == {"d": b"new"}


def test_an_ack_that_cannot_be_written_keeps_the_row_and_its_count(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox.sqlite", 10, 1_000_000)
    seq = box.put("event_new", "t/events", b"new", 1, False)
    disk = _FullDisk(box._db)
    box._db = disk  # type: ignore[assignment]
    with pytest.raises(sqlite3.OperationalError):
        box.ack_many([seq])
    assert (box.depth(), box.size_bytes(), _rows(box)) == (1, 3, 1)
    disk.full = False
    box.ack_many([seq])
    assert (box.depth(), _rows(box)) == (0, 0)


@contextlib.contextmanager
def _small_tmpfs(where: Path) -> Iterator[Path]:
    where.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", str(where)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip("needs root and a tmpfs mount for a real full disk")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def _fill(folder: Path) -> Path:
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    for chunk in (65536, 4096, 1):
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, b"\0" * chunk)
    os.close(fd)
    return filler


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_a_real_full_disk_leaves_the_outbox_usable_once_there_is_room(tmp_path: Path) -> None:
    with _small_tmpfs(tmp_path / "mnt") as mnt:
        box = Outbox(mnt / "outbox.sqlite", 100, 10**9)
        filler = _fill(mnt)
        failed = 0
        for _ in range(150):
            try:
                box.put("stats", "t/stats", b"s" * 300, 0, False)
            except sqlite3.Error:
                failed += 1
        assert failed > 100  # the disk really was full
        assert box.depth() == _rows(box)
        filler.unlink()
        assert box.put("event_new", "t/events", b"new", 1, False) > 0
        assert box.depth() == _rows(box)
        box.close()


def _stored(box: Outbox) -> list[int]:
    return [box.put("event_new", "t/events", f"e{i}".encode(), 1, False) for i in range(3)]


def test_a_row_whose_payload_turned_to_text_is_dropped_with_one_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    box = Outbox(tmp_path / "outbox.sqlite", 10, 1_000_000)
    seqs = _stored(box)
    # one flipped bit in a record's header turns a BLOB into TEXT of the same length and
    # still passes PRAGMA quick_check
    box._db.execute("UPDATE outbox SET payload = CAST(payload AS TEXT) WHERE seq = ?", (seqs[1],))
    box._db.execute("UPDATE outbox SET topic = 't/+' WHERE seq = ?", (seqs[2],))
    with caplog.at_level(logging.ERROR, logger="agent.report.outbox"):
        rows = box.peek(10)
    assert [r.payload for r in rows] == [b"e0"]
    assert box.dropped()["event_new"] == 2
    assert (box.depth(), _rows(box)) == (1, 1)
    lines = [r.getMessage() for r in caplog.records]
    assert any(f"row {seqs[1]} is damaged (payload not bytes)" in line for line in lines)
    assert any(f"row {seqs[2]} is damaged (topic)" in line for line in lines)


def test_a_damaged_open_detection_is_skipped_and_the_rest_kept(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    box = Outbox(path, 10, 1_000_000)
    box.put("event_new", "t/events", b"a", 1, False, track=Track("a", True))
    box.put("event_new", "t/events", b"b", 1, False, track=Track("b", True))
    box._db.execute(
        "UPDATE open_detections SET payload = CAST(payload AS TEXT) WHERE detection='a'"
    )
    box._db.execute("UPDATE memo SET value = CAST(value AS TEXT)")
    box.close()
    again = Outbox(path, 10, 1_000_000)
    assert again.open_detections() == {"b": b"b"}
    assert again.last_event() is None


def test_an_outbox_sqlite_can_only_read_is_refused_at_open(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    Outbox(path, 10, 1_000_000).close()
    (tmp_path / "outbox.sqlite-shm").mkdir()  # SQLite then opens the file read-only
    with pytest.raises(OutboxError, match=r"readonly|read-only|cannot use"):
        Outbox(path, 10, 1_000_000)


@pytest.mark.broker
def test_acks_on_a_full_disk_are_one_line_and_the_rows_leave_once_there_is_room(
    broker: Callable[..., Broker], sinks: SinkFactory, caplog: pytest.LogCaptureFixture
) -> None:
    mosq = broker()
    with Probe(mosq, ["iotids/gw-1/events"]) as probe, caplog.at_level(logging.INFO):
        sink, box = sinks(sink_config(mosq))
        disk = _FullDisk(box._db, "DELETE FROM outbox WHERE seq")  # an ack needs the disk
        box._db = disk  # type: ignore[assignment]
        sink.start()
        sink.publish_event({"type": "new", "detection": "d-1", "label": "syn_flood"})
        assert probe.wait_for(lambda m: m.topic.endswith("/events"), 10) is not None
        time.sleep(3.0)  # the publisher retries every second
        # delivered, not yet deleted: kept, not lost
        assert "event_new" in [row.kind for row in box.peek(10)]
        said = [r for r in caplog.records if "the outbox cannot be used" in r.getMessage()]
        assert len(said) == 1
        assert not any(r.exc_info for r in caplog.records)  # no traceback
        disk.full = False
        again = "the outbox is usable again"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not (
            box.depth() == 0 and any(again in r.getMessage() for r in caplog.records)
        ):
            time.sleep(0.1)
        assert box.depth() == 0
        assert any(again in r.getMessage() for r in caplog.records)


@pytest.mark.broker
def test_events_the_disk_refuses_wait_in_memory_and_arrive_in_order(
    broker: Callable[..., Broker], sinks: SinkFactory, caplog: pytest.LogCaptureFixture
) -> None:
    mosq = broker()
    with Probe(mosq, ["iotids/gw-1/events"]) as probe, caplog.at_level(logging.INFO):
        sink, box = sinks(sink_config(mosq))
        sink.start()
        disk = _FullDisk(box._db)
        box._db = disk  # type: ignore[assignment]
        sink.publish_event({"type": "new", "detection": "d-1", "label": "syn_flood"})
        sink.publish_stats({"windows": 1})  # a stats row the full disk refuses is just dropped
        sink.publish_event({"type": "end", "detection": "d-1", "label": "syn_flood"})
        time.sleep(1.5)
        assert probe.wait_for(lambda m: m.topic.endswith("/events"), 0.5) is None
        disk.full = False  # room again: the publisher stores and sends them, in order
        deadline = time.monotonic() + 10
        events = [m for m in probe.seen if m.topic.endswith("/events")]
        while time.monotonic() < deadline and len(events) < 2:
            time.sleep(0.1)
            events = [m for m in probe.seen if m.topic.endswith("/events")]
        kinds = [json.loads(m.payload)["type"] for m in events]
        assert kinds[:2] == ["new", "end"]
        lines = [r.getMessage() for r in caplog.records]
        assert sum("holding messages in memory" in line for line in lines) == 1
        assert any("the held messages are queued" in line for line in lines)
