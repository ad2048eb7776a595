"""Hostile CSV files and labels through ``iotids train``: one line naming the file or the label,
exit 2, never a traceback or a hang; a label reaches the bundle and the gateway's events."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import pytest

from agent.cli import main

HEADER = "a,b,label\n"


def _rows(labels: tuple[str, ...] = ("benign", "dos"), n: int = 40) -> str:
    return "".join(f"{i % 7},{i % 5},{labels[i % len(labels)]}\n" for i in range(n))


def _train(path: Path, out: Path) -> int:
    flags = ["--dataset", "csv", "--path", str(path), "--model", "dnn", "--out", str(out)]
    return main(["train", *flags, "--epochs", "1", "--units", "4", "--quiet"])


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (HEADER.encode() + _rows().encode() + b"1,2,\xff\n", "not a readable UTF-8 CSV"),
        (gzip.compress((HEADER + _rows()).encode()), "not a readable UTF-8 CSV"),
        ((HEADER + "1," + "9" * 200_000 + ",dos\n").encode(), "field larger than field limit"),
        (HEADER.encode(), "no row with the header's 3 fields"),
        (("a,a,label\n" + _rows()).encode(), "column 'a' appears twice"),
        ((HEADER + _rows(("benign", ""))).encode(), "empty label"),
        ((HEADER + _rows(("benign", "\x1b[31mred"))).encode(), r"'\x1b[31mred' has control"),
        ((HEADER + _rows(("benign", '"a\nb"'))).encode(), "has control characters"),
        ((HEADER + _rows(("benign", "x" * 10_000))).encode(), "is 10000 characters"),
        ((HEADER + _rows(("benign",))).encode(), "one class only ('benign')"),
    ],
)
def test_a_hostile_csv_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], body: bytes, message: str
) -> None:
    data = tmp_path / "data.csv"
    data.write_bytes(body)
    assert _train(data, tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert message in err


def test_a_fifo_or_folder_named_like_a_csv_is_skipped_not_waited_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "a.csv").write_text(HEADER + _rows(), encoding="utf-8")
    (folder / "b.csv").mkdir()
    os.mkfifo(folder / "c.csv")  # reading it would block forever
    assert _train(folder, tmp_path / "out") == 0


def test_an_out_that_is_a_file_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data.csv"
    data.write_text(HEADER + _rows(), encoding="utf-8")
    (tmp_path / "out").write_text("x")
    assert _train(data, tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "Not a directory" in err


def test_a_mapping_rule_label_with_control_characters_is_refused(tmp_path: Path) -> None:
    from training.config import ConfigError, load_config

    mapping = tmp_path / "map.toml"
    mapping.write_text('[[rule]]\nglob = "*"\nlabel = "a\\u001b[2Jb"\n', encoding="utf-8")
    base = {"dataset": "captures", "path": ".", "model": "cnn", "out": "o"}
    with pytest.raises(ConfigError, match=r"rule\[0\]\.label: label 'a\\x1b\[2Jb' has control"):
        load_config(None, {**base, "mapping": str(mapping)})
