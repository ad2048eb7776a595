"""The TON_IoT loader on generated device files: no label artefacts reach the features.

The shared files spell one boolean two ways by class and log normal rows at a different
cadence than attack rows; either alone gives the label away. Fixtures are generated here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from agent.cli import main
from training.datasets import load

HEADER = "date,time,door_state,sphone_signal,label,type"


def _garage(
    path: Path, signals: list[str], times: list[str], bom: bool = True, crlf: bool = True
) -> Path:
    """A garage-door file: door open exactly when the phone signal is on, as in the shared one."""
    lines = [HEADER]
    for i, (signal, time) in enumerate(zip(signals, times, strict=True)):
        door = "open" if signal.strip().lower() in ("1", "true") else "closed"
        kind = "normal" if i < len(signals) // 2 else "ddos"
        lines.append(f"25-Apr-19,{time},{door},{signal},{int(kind != 'normal')},{kind}")
    newline = "\r\n" if crlf else "\n"
    path.write_text(("\ufeff" if bom else "") + newline.join(lines) + newline, encoding="utf-8")
    return path


def _pattern(n: int, seed: int = 0) -> list[int]:
    return np.random.default_rng(seed).integers(0, 2, n).tolist()


def _seconds_apart(n: int, step: int, start: int = 0) -> list[str]:
    return [f" {(start + i * step) // 3600:2d}:{(start + i * step) // 60 % 60:02d}:"
            f"{(start + i * step) % 60:02d} " for i in range(n)]  # fmt: skip


def test_boolean_spellings_give_identical_features(tmp_path: Path) -> None:
    bits = _pattern(40)
    times = _seconds_apart(40, 1)
    digits = _garage(tmp_path / "digits.csv", [str(b) for b in bits], times)
    # normal rows as the shared file writes them (padded words), attack rows as digits
    mixed_cells = [
        (f"{'true' if b else 'false'}  " if i < 20 else str(b)) for i, b in enumerate(bits)
    ]
    mixed = _garage(tmp_path / "mixed.csv", mixed_cells, times)
    words = _garage(tmp_path / "words.csv", ["TRUE" if b else "False" for b in bits], times)
    reference = load("ton-iot", str(digits))
    for other in (mixed, words):
        ds = load("ton-iot", str(other))
        assert ds.columns == reference.columns
        np.testing.assert_array_equal(ds.x, reference.x)
        assert ds.encoders["sphone_signal"] == {"kind": "number"}
    signal = reference.x[:, reference.columns.index("sphone_signal.value")]
    assert signal.tolist() == [float(b) for b in bits]


def test_no_feature_comes_from_the_row_timestamps(tmp_path: Path) -> None:
    bits = _pattern(40, seed=1)
    cells = [str(b) for b in bits]
    # normal rows many per second, attack rows a second or more apart: the shared files' cadence
    bursty = [" 10:00:00 "] * 20 + _seconds_apart(20, 5, start=36_001)
    steady = _seconds_apart(40, 1, start=3_600)
    a = load("ton-iot", str(_garage(tmp_path / "bursty.csv", cells, bursty)))
    b = load("ton-iot", str(_garage(tmp_path / "steady.csv", cells, steady, bom=False, crlf=False)))
    assert not [c for c in a.columns if "interval" in c or c.split(".")[0] in ("date", "time")]
    assert a.columns == b.columns
    np.testing.assert_array_equal(a.x, b.x)


def test_an_unreadable_time_does_not_drop_the_row(tmp_path: Path) -> None:
    cells = [str(b) for b in _pattern(10)]
    times = ["garbage", *_seconds_apart(9, 1)]
    ds = load("ton-iot", str(_garage(tmp_path / "t.csv", cells, times)))
    assert len(ds.x) == 10
    assert ds.dropped == {}


def test_shifted_rows_are_counted_and_skipped(tmp_path: Path) -> None:
    path = _garage(tmp_path / "t.csv", [str(b) for b in _pattern(10)], _seconds_apart(10, 1))
    with path.open("a", encoding="utf-8") as handle:
        handle.write("25-Apr-19,1:00:00,open\r\n25-Apr-19,1:00:00,open,1,1,ddos,extra,\x00\r\n")
    ds = load("ton-iot", str(path))
    assert len(ds.x) == 10
    assert ds.dropped == {"shifted_rows": 2}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"date,time,door_state\n25-Apr-19,1:00:00,open\n", "no label, type column"),
        (HEADER.encode() + b"\n", "no row with the header's 6 fields"),
        (b"", "no label, type column"),
        (b"\xff\xfe\x00garbage\x00\n\x81\x82", "not a readable UTF-8 CSV"),
        (HEADER.encode() + b'\n"' + b"x" * 200_000 + b'"\n', "not a readable UTF-8 CSV"),
    ],
    ids=["no-label", "header-only", "empty", "binary", "huge-field"],
)
def test_a_hostile_file_is_refused_naming_it(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message) as refused:
        load("ton-iot", str(path))
    assert str(refused.value).startswith(str(path))


@pytest.mark.tf
def test_iotids_train_refuses_a_hostile_file_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(b"\xff\xfe\x00garbage\x00\n\x81\x82")
    flags = ["--dataset", "ton-iot", "--path", str(path), "--model", "gru", "--out"]
    assert main(["train", *flags, str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert str(path) in err[0]


def test_normal_vs_normal_auc_is_what_blocks_alone_give() -> None:
    from training.telemetry_eval import _between_normal_runs

    y = np.array([0] * 6 + [1] * 3 + [0] * 6)
    block = np.array([0] * 6 + [1] * 3 + [2] * 6)
    alike = np.tile([0.1, 0.2, 0.3], 5).astype(np.float64)
    assert _between_normal_runs(alike, y, block) == 0.5
    # the second normal run scores lower: folded, so the direction does not matter
    shifted = np.where(block == 2, alike - 1.0, alike)
    assert _between_normal_runs(shifted, y, block) == 1.0
    assert np.isnan(_between_normal_runs(alike, y, np.where(block == 2, 0, block)))
