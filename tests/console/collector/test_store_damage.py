"""The SQLite store when its file is damaged, removed, shared at open or on a small volume."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from console.collector.store import WAL_KEEP_BYTES, StoreError, open_store
from tests.console.collector.test_store import _event


def test_a_damaged_file_is_the_database_failing_not_a_message_refused(tmp_path: Path) -> None:
    # refused messages are acknowledged and skipped: these would have been lost for good
    path = tmp_path / "fleet.db"
    store = open_store(str(path))
    store.add(_event("e1"))
    store.close()
    original = path.read_bytes()
    path.write_bytes(b"\xff" * 100 + original[100:])
    with pytest.raises(StoreError) as failed:
        store.add(_event("e2"))
    assert failed.value.retryable
    path.write_bytes(original)
    assert store.add(_event("e2")) is True
    store.close()


def test_a_file_removed_under_the_store_is_made_anew_not_written_unseen(tmp_path: Path) -> None:
    path = tmp_path / "fleet.db"
    store = open_store(str(path))
    store.add(_event("e1"))
    for suffix in ("", "-wal", "-shm"):
        (tmp_path / f"fleet.db{suffix}").unlink(missing_ok=True)
    with pytest.raises(StoreError, match="removed or replaced") as failed:
        store.add(_event("e2"))
    assert failed.value.retryable
    assert store.add(_event("e2")) is True  # a new file, with its tables
    store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT id FROM events").fetchall() == [("e2",)]


def test_a_file_replaced_by_a_directory_fails_until_the_path_is_free(tmp_path: Path) -> None:
    path = tmp_path / "fleet.db"
    store = open_store(str(path))
    store.add(_event("e1"))
    os.rename(path, tmp_path / "moved.db")
    path.mkdir()
    for _ in range(2):
        with pytest.raises(StoreError) as failed:
            store.add(_event("e2"))
        assert failed.value.retryable
    path.rmdir()
    assert store.add(_event("e2")) is True
    store.close()


def _open(path: str, start: Any, failures: Any) -> None:
    start.wait()
    try:
        open_store(path).close()
    except StoreError as exc:
        failures.put(str(exc))


def test_collectors_opening_one_new_file_at_once_all_open_it(tmp_path: Path) -> None:
    # a new file's schema is made under a lock SQLite's busy timeout does not cover
    fork = multiprocessing.get_context("fork")
    failures = fork.Queue()
    for round_ in range(15):
        start = fork.Barrier(3)
        path = str(tmp_path / f"new-{round_}.db")
        openers = [fork.Process(target=_open, args=(path, start, failures)) for _ in range(3)]
        for opener in openers:
            opener.start()
        for opener in openers:
            opener.join(30)
    found = []
    while not failures.empty():
        found.append(failures.get())
    assert found == []


def test_the_write_ahead_log_stays_small(tmp_path: Path) -> None:
    # SQLite's default kept ~4 MB of commits in it, enough to fill a small volume by itself
    path = tmp_path / "fleet.db"
    store = open_store(str(path))
    for i in range(3000):
        store.add(_event(f"e{i}"))
    wal = tmp_path / "fleet.db-wal"
    assert wal.stat().st_size <= WAL_KEEP_BYTES + 64 * 4096
    store.close()


@pytest.mark.parametrize("url", ["", "sqlite://", ":memory:", "file::memory:"])
def test_a_database_that_would_vanish_at_exit_is_refused(url: str) -> None:
    with pytest.raises(StoreError, match="a database file path is needed"):
        open_store(url)
