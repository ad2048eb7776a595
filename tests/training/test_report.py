"""Training report plots."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")

from training.report import plot_history


def _png_width(path: Path) -> int:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    return int(struct.unpack(">I", header[16:20])[0])


def test_history_plot_has_a_panel_for_validation_macro_f1(tmp_path: Path) -> None:
    base = {"loss": [1.0, 0.5], "val_loss": [1.1, 0.6], "accuracy": [0.5, 0.8]}
    two, three = tmp_path / "two.png", tmp_path / "three.png"
    plot_history(base, two)
    plot_history({**base, "val_macro_f1": [0.4, 0.7]}, three)
    assert _png_width(three) == pytest.approx(_png_width(two) * 3 / 2, rel=0.02)
