"""Bundles are written atomically: a failed write leaves neither a bundle nor a temp file."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from converters.bundle import write_bundle


def test_write_is_atomic_and_stored(tmp_path: Path) -> None:
    out = tmp_path / "b.bundle"
    write_bundle(out, b"{}", b"model", b"s" * 64)
    with zipfile.ZipFile(out) as archive:
        assert archive.namelist() == ["manifest.json", "model.tflite", "manifest.sig"]
        assert {i.compress_type for i in archive.infolist()} == {zipfile.ZIP_STORED}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.bundle"]


def test_failed_rename_leaves_nothing_behind(tmp_path: Path) -> None:
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep").write_text("a directory cannot be replaced by a file")
    with pytest.raises(OSError, match="taken"):
        write_bundle(out, b"{}", b"model", None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]
