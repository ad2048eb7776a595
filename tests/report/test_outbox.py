"""The durable outbox: order, acks, caps and their drop order, survival of SIGKILL."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.config import ConfigError, OutboxConfig
from agent.report.outbox import Outbox, OutboxError, Track
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
        "state": 0,
    }
    box.close()


def test_a_stats_row_never_evicts_an_event_and_an_update_never_a_new(tmp_path: Path) -> None:
    box = _open(tmp_path, max_messages=3)
    box.put("event_new", "e", b"new0", 1, False)
    box.put("event_update", "e", b"up0", 1, False)
    box.put("event_end", "e", b"end0", 1, False)
    assert box.put("stats", "s", b"st0", 0, False) == 0  # nothing cheaper: the stats goes
    assert box.put("event_update", "e", b"up1", 1, False) > 0  # evicts the older update
    assert box.put("event_update", "e", b"up2", 1, False) > 0
    assert [r.payload for r in box.peek(10)] == [b"new0", b"end0", b"up2"]
    box.put("event_new", "e", b"new1", 1, False)  # the update goes before any detection
    assert [r.payload for r in box.peek(10)] == [b"new0", b"end0", b"new1"]
    assert box.put("event_update", "e", b"up3", 1, False) == 0  # only new/end left
    assert box.put("stats", "s", b"st1", 0, False) == 0
    assert [r.payload for r in box.peek(10)] == [b"new0", b"end0", b"new1"]
    assert box.dropped() == {
        "event_new": 0,
        "event_update": 4,
        "event_end": 0,
        "stats": 2,
        "model": 0,
        "state": 0,
    }
    box.close()


def test_a_long_outage_at_the_cap_keeps_every_new_and_end(tmp_path: Path) -> None:
    """24 h without a broker: stats every 10 s, an attack per hour with updates every 5 s."""
    cap = 600
    box = _open(tmp_path, max_messages=cap)
    produced = dict.fromkeys(("event_new", "event_update", "event_end", "stats"), 0)
    detections: list[bytes] = []
    for second in range(0, 24 * 3600, 5):
        in_attack = second % 3600 < 600  # a 10-minute attack at the top of every hour
        if second % 3600 == 0:
            kind = "event_new"
            detections.append(f"new{second}".encode())
        elif second % 3600 == 600:
            kind = "event_end"
            detections.append(f"end{second}".encode())
        else:
            kind = "event_update" if in_attack else ""
        if kind:
            box.put(kind, "e", f"{kind[6:]}{second}".encode(), 1, False)  # type: ignore[arg-type]
            produced[kind] += 1
        if second % 10 == 0:
            box.put("stats", "s", b"stats%d" % second, 0, False)
            produced["stats"] += 1
    rows = box.peek(cap + 1)
    kept = {kind: sum(r.kind == kind for r in rows) for kind in produced}
    dropped = box.dropped()
    print(  # the figures the report quotes
        f"\n24 h outage, cap {cap} messages: produced {produced}, kept {kept}, dropped {dropped}"
    )
    assert len(rows) == cap
    assert [r.payload for r in rows if r.kind in ("event_new", "event_end")] == detections
    assert dropped["event_new"] == dropped["event_end"] == 0
    assert dropped["stats"] == produced["stats"]  # stats went first, every one of them
    assert kept["event_update"] == cap - len(detections)  # the newest updates fill the rest
    assert all(kept[k] + dropped[k] == produced[k] for k in produced)
    box.close()


def test_a_state_row_replaces_the_queued_one(tmp_path: Path) -> None:
    box = _open(tmp_path)
    box.put("state", "t/state", b"s0", 1, True)
    box.put("event_new", "t/events", b"new", 1, False)
    box.put("state", "t/state", b"s1", 1, True)
    assert [r.payload for r in box.peek(10)] == [b"new", b"s1"]
    assert (box.depth(), box.dropped()["state"]) == (2, 0)  # superseded, not dropped
    box.close()


def test_open_detections_follow_their_events_across_a_reopen(tmp_path: Path) -> None:
    box = _open(tmp_path)
    assert (box.open_detections(), box.last_event()) == ({}, None)
    box.put("event_new", "e", b"a-new", 1, False, track=Track("a", open=True))
    box.put("event_new", "e", b"b-new", 1, False, track=Track("b", open=True))
    box.put("event_update", "e", b"a-up", 1, False, track=Track("a", open=True))
    box.put("event_end", "e", b"b-end", 1, False, track=Track("b", open=False))
    box.close()
    again = _open(tmp_path)
    assert again.open_detections() == {"a": b"a-up"}
    assert again.last_event() == b"b-end"
    again.close()


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


def _corrupt_sqlite(path: Path) -> bytes:
    """A real outbox file whose table pages an SD card then garbled (the header survives)."""
    box = Outbox(path, 1000, 1_000_000)
    for i in range(200):
        box.put("event_new", "t/events", b"x" * 200 + str(i).encode(), 1, False)
    box.close()
    data = bytearray(path.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    for at in range(page, len(data), page):  # every page but the first: the schema survives
        data[at + 8 : at + 64] = b"\xff" * 56
    path.write_bytes(bytes(data))
    return bytes(data)


def test_a_corrupt_outbox_file_is_moved_aside_and_the_agent_starts(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    garbled = _corrupt_sqlite(path)
    box = Outbox(path, 100, 100_000)
    try:
        seq = box.put("event_new", "t/events", b"{}", 1, False)
        assert [r.seq for r in box.peek(10)] == [seq]
    finally:
        box.close()
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("outbox.sqlite.corrupt-")]
    assert [p.read_bytes() for p in aside] == [garbled]  # kept for forensics, not deleted


def _tree(root: Path) -> dict[str, bytes | None]:
    return {
        str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None)
        for p in sorted(root.rglob("*"))
    }


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda p: p.mkdir(), "not a regular file"),
        (lambda p: p.write_bytes(b"[agent]\ndevice_id = 'gw'\n" * 50), "not an SQLite database"),
        (lambda p: (p.parent / "blocker").write_bytes(b"x"), "cannot create the folder"),
    ],
    ids=["directory", "not-sqlite", "parent-is-a-file"],
)
def test_an_unusable_outbox_path_is_one_error_and_nothing_is_touched(
    tmp_path: Path, make: Callable[[Path], object], reason: str
) -> None:
    path = tmp_path / "outbox.sqlite"
    make(path)
    if reason.startswith("cannot create"):
        path = tmp_path / "blocker" / "outbox.sqlite"
    before = _tree(tmp_path)
    with pytest.raises(OutboxError, match=reason):
        Outbox(path, 100, 100_000)
    assert _tree(tmp_path) == before
    with pytest.raises(ConfigError, match=r"^outbox\.path: "):
        Outbox.from_config(OutboxConfig(path=str(path)), str(tmp_path))
    assert _tree(tmp_path) == before


def test_an_unopenable_outbox_is_one_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^agent\.state_dir: cannot"):
        Outbox.from_config(OutboxConfig(), "/proc/iotids-no-such-dir")
