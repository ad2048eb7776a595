"""The durable outbox: order, acks, caps and their drop order, survival of SIGKILL."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

from agent.config import OutboxConfig
from agent.report.outbox import Outbox
from tests.broker import REPO


def _open(tmp_path: Path, max_messages: int = 1000, max_bytes: int = 1_000_000) -> Outbox:
    return Outbox(tmp_path / "state" / "outbox.sqlite", max_messages, max_bytes)


def test_rows_come_back_in_order_and_leave_only_when_acked(tmp_path: Path) -> None:
    box = _open(tmp_path)
    seqs = [box.put("event_new", "t/events", f"e{i}".encode(), 1, False) for i in range(5)]
    assert seqs == sorted(seqs)
    rows = box.peek(10)
    assert [r.payload for r in rows] == [b"e0", b"e1", b"e2", b"e3", b"e4"]
    assert [r.seq for r in box.peek(2, after=seqs[1])] == seqs[2:4]
    box.ack(seqs[0])
    box.ack(seqs[0])  # a duplicate PUBACK is harmless
    assert box.depth() == 4
    assert box.size_bytes() == 8
    assert box.peek(1)[0].payload == b"e1"
    box.ack_many([seqs[1], seqs[3], seqs[0]])
    assert [r.payload for r in box.peek(10)] == [b"e2", b"e4"]
    assert (box.depth(), box.size_bytes()) == (2, 4)
    box.close()


def test_uses_wal_and_survives_reopen(tmp_path: Path) -> None:
    box = _open(tmp_path)
    box.put("model", "t/model", b"{}", 1, True)
    box.put("stats", "t/stats", b"s", 0, False)
    box.close()
    with sqlite3.connect(tmp_path / "state" / "outbox.sqlite") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    again = _open(tmp_path)
    rows = again.peek(10)
    assert [(r.kind, r.topic, r.retain, r.qos) for r in rows] == [
        ("model", "t/model", True, 1),
        ("stats", "t/stats", False, 0),
    ]
    assert again.depth() == 2
    again.close()


def test_count_cap_drops_stats_then_updates_then_oldest_detections(tmp_path: Path) -> None:
    box = _open(tmp_path, max_messages=4)
    box.put("event_new", "e", b"new0", 1, False)
    box.put("stats", "s", b"st0", 0, False)
    box.put("event_update", "e", b"up0", 1, False)
    box.put("stats", "s", b"st1", 0, False)
    box.put("event_end", "e", b"end0", 1, False)  # full: the oldest stats goes
    assert [r.payload for r in box.peek(10)] == [b"new0", b"up0", b"st1", b"end0"]
    box.put("event_new", "e", b"new1", 1, False)  # the other stats goes
    box.put("event_new", "e", b"new2", 1, False)  # no stats left: the update goes
    assert [r.payload for r in box.peek(10)] == [b"new0", b"end0", b"new1", b"new2"]
    box.put("event_end", "e", b"end1", 1, False)  # hard cap: the oldest detection goes
    assert [r.payload for r in box.peek(10)] == [b"end0", b"new1", b"new2", b"end1"]
    assert box.dropped() == {
        "event_new": 1,
        "event_update": 1,
        "event_end": 0,
        "stats": 2,
        "model": 0,
    }
    box.close()


def test_byte_cap_and_oversized_message(tmp_path: Path) -> None:
    box = _open(tmp_path, max_messages=100, max_bytes=100)
    for _ in range(3):
        box.put("stats", "s", b"x" * 30, 0, False)
    box.put("event_new", "e", b"y" * 30, 1, False)  # 120 bytes would not fit: one stats goes
    assert box.size_bytes() == 90
    assert box.dropped()["stats"] == 1
    assert box.put("event_new", "e", b"z" * 101, 1, False) == 0  # can never fit
    assert box.dropped()["event_new"] == 1
    assert box.depth() == 3
    box.close()


def test_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    box = _open(tmp_path)

    def write(tag: str) -> None:
        for i in range(50):
            box.put("event_update", "e", f"{tag}{i}".encode(), 1, False)

    threads = [threading.Thread(target=write, args=(t,), name=f"writer-{t}") for t in "abcd"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    payloads = [r.payload.decode() for r in box.peek(1000)]
    assert len(payloads) == 200
    for tag in "abcd":  # each writer's rows keep their order
        mine = [p for p in payloads if p.startswith(tag)]
        assert mine == [f"{tag}{i}" for i in range(50)]
    box.close()


_WRITER = """
import sys, time
from agent.config import OutboxConfig
from agent.report.outbox import Outbox
box = Outbox(sys.argv[1], 10_000, 10_000_000)
for i in range(int(sys.argv[2])):
    box.put("event_new", "iotids/gw/events", b'{"n": %d}' % i, 1, False)
print("written", flush=True)
time.sleep(600)
"""


def test_events_survive_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(path), "200"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "written"
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(10) == -signal.SIGKILL
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    box = Outbox(path, 10_000, 10_000_000)
    rows = box.peek(1000)
    assert [r.payload for r in rows] == [b'{"n": %d}' % i for i in range(200)]
    box.close()


def test_from_config_defaults_under_the_state_dir(tmp_path: Path) -> None:
    box = Outbox.from_config(OutboxConfig(max_messages=7), str(tmp_path / "state"))
    assert box.path == tmp_path / "state" / "outbox.sqlite"
    assert (box.max_messages, box.max_bytes) == (7, 50_000_000)
    assert box.path.exists()
    box.close()


def test_a_corrupt_outbox_file_is_moved_aside_and_the_agent_starts(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    garbage = b"not a database, an SD card ate it " * 200
    path.write_bytes(garbage)
    box = Outbox(path, 100, 100_000)
    try:
        seq = box.put("event_new", "t/events", b"{}", 1, False)
        assert [r.seq for r in box.peek(10)] == [seq]
    finally:
        box.close()
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("outbox.sqlite.corrupt-")]
    assert [p.read_bytes() for p in aside] == [garbage]  # kept for forensics, not deleted
