"""The one progress renderer: a redrawn bar on a terminal, throttled plain lines in a log,
nothing under ``-q`` (warnings only)."""

from __future__ import annotations

import io
import json
import logging
import os
import pty
import select
import sys
from pathlib import Path

import pytest

from agent.progress import DEFAULT_COLUMNS, Progress, columns

LOGGER = "agent.progress"


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_one_redrawn_line(caplog: pytest.LogCaptureFixture) -> None:
    terminal = _Terminal()
    with (
        caplog.at_level(logging.INFO, logger=LOGGER),
        Progress("reading x.pcap", 4 * 2**20, "B", stream=terminal) as bar,
    ):
        bar.update(2**20)
        bar.update(4 * 2**20, note="done")
    drawn = terminal.getvalue()
    assert drawn.startswith("\rreading x.pcap: [")
    assert drawn.endswith("\n")
    assert drawn.count("\n") == 1
    last = drawn.rstrip().split("\r")[-1]
    assert "100%" in last
    assert "4.0/4.0 MiB" in last
    assert not caplog.records  # on a terminal the bar is the progress, not log lines


def _read_all(fd: int) -> str:
    chunks = []
    while select.select([fd], [], [], 0.2)[0]:
        chunks.append(os.read(fd, 65536))
    return b"".join(chunks).decode()


def test_a_real_pty_without_a_size_still_gets_a_bar(caplog: pytest.LogCaptureFixture) -> None:
    # A pty that reports 0 columns (``script``, a serial console) drew an empty tqdm bar.
    leader, follower = pty.openpty()
    with (
        open(follower, "w", encoding="utf-8") as stream,
        caplog.at_level(logging.INFO, logger=LOGGER),
    ):
        assert os.get_terminal_size(follower).columns == 0
        assert columns(stream) == DEFAULT_COLUMNS
        with Progress("training", 3, "epochs", stream=stream) as bar:
            for epoch in range(1, 4):
                bar.update(epoch, note=f"loss {1 / epoch:.4f}")
        drawn = _read_all(leader)
    os.close(leader)
    assert "training: [" in drawn
    assert "3/3 epochs" in drawn
    lines = [line for line in drawn.replace("\r\n", "\n").split("\r") if line.strip()]
    assert all(len(line.rstrip("\n")) <= DEFAULT_COLUMNS - 1 for line in lines)


def test_a_log_gets_throttled_plain_lines(caplog: pytest.LogCaptureFixture) -> None:
    pipe = io.StringIO()
    with caplog.at_level(logging.INFO, logger=LOGGER):
        with Progress("replaying a.pcap", unit="packets", stream=pipe, every_s=0.0) as bar:
            bar.update(1200, note="3 events")
            bar.update(2400)
        with Progress("reading b.pcap", 100, "B", stream=pipe, every_s=3600.0) as quick:
            quick.update(100)  # a job shorter than one interval logs nothing
    lines = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert len(lines) == 2
    assert lines[0].startswith("replaying a.pcap: 1,200 packets,")
    assert lines[0].endswith("3 events")
    assert lines[1].startswith("replaying a.pcap: 2,400 packets,")
    assert pipe.getvalue() == ""  # no carriage returns in a log file


def test_quiet_shows_nothing(caplog: pytest.LogCaptureFixture) -> None:
    terminal = _Terminal()
    with (
        caplog.at_level(logging.WARNING, logger=LOGGER),
        Progress("training", 3, "epochs", stream=terminal, every_s=0.0) as bar,
    ):
        bar.update(3)
    assert terminal.getvalue() == ""
    assert not caplog.records


def test_a_log_line_during_a_bar_starts_on_a_clean_line() -> None:
    terminal = _Terminal()
    handler = logging.StreamHandler(terminal)
    root = logging.getLogger()
    root.addHandler(handler)
    level = logging.getLogger(LOGGER).level
    logging.getLogger(LOGGER).setLevel(logging.INFO)
    try:
        with Progress("reading captures", 2, "B", stream=terminal) as bar:
            bar.update(1)
            logging.getLogger("training.datasets").warning("a.pcap: 3 malformed frames")
            bar.update(2)
        assert handler.filters == []  # the bar's filter leaves with it
    finally:
        root.removeHandler(handler)
        logging.getLogger(LOGGER).setLevel(level)
    drawn = terminal.getvalue()
    before, after = drawn.split("a.pcap: 3 malformed frames\n")
    assert before.endswith("\r")  # the bar's line was blanked: the record starts at column 0
    assert after.startswith("\rreading captures: [")
    assert after.endswith("\n")


def _kinds(json_lines: str) -> list[tuple[str, str, float]]:
    events = [json.loads(line) for line in json_lines.splitlines()]
    return [(e["type"], e["label"], e["window_end"]) for e in events]


def test_a_replay_shows_its_share_of_the_capture(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    from agent.cli import main as iotids
    from tests.agent.flood_bundle import flood_kit

    kit = flood_kit(tmp_path)
    replay = [
        "agent", "replay", "--bundle", str(kit.bundle), "--trust-key", str(kit.public_key),
        "--capture", str(kit.capture), "--json",
    ]  # fmt: skip
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    monkeypatch.setenv("COLUMNS", "120")
    with caplog.at_level(logging.INFO, logger=LOGGER):
        assert iotids(replay) == 0
    events = capsys.readouterr().out
    drawn = terminal.getvalue().split("\n")[0].split("\r")
    assert drawn[1].startswith(f"replaying {kit.capture.name}: [")
    assert "100%" in drawn[-1]
    assert drawn[-1].rstrip().endswith("events")
    quiet = _Terminal()
    monkeypatch.setattr(sys, "stderr", quiet)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert iotids([*replay, "-q"]) == 0
    assert _kinds(capsys.readouterr().out) == _kinds(events)  # the same, progress or not
    assert "replaying" not in quiet.getvalue()
