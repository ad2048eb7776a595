"""`python -m benchmarks`: one broken benchmark is an error row, not the loss of the table."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest

from benchmarks import __main__ as bench


def _module(name: str, run: object) -> types.ModuleType:
    module = types.ModuleType(name)
    module.run = run  # type: ignore[attr-defined]
    return module


def test_a_raising_benchmark_is_one_error_row_and_exit_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(quick: bool) -> list[dict[str, object]]:
        raise ValueError("expected 5 scores, got 4")

    def fine(quick: bool) -> list[dict[str, object]]:
        return [{"benchmark": "fine", "case": "c", "metric": "m", "value": 1.5, "target": "t"}]

    monkeypatch.setitem(sys.modules, "benchmarks.fake_broken", _module("fake_broken", broken))
    monkeypatch.setitem(sys.modules, "benchmarks.fake_fine", _module("fake_fine", fine))
    monkeypatch.setattr(bench, "MODULES", ("benchmarks.fake_broken", "benchmarks.fake_fine"))
    out = tmp_path / "results.json"

    assert bench.main(["--json", str(out)]) == 1

    rows = json.loads(out.read_text())["rows"]
    assert rows[0] == {
        "benchmark": "benchmarks.fake_broken",
        "case": "run",
        "metric": "error",
        "value": "ValueError: expected 5 scores, got 4",
    }
    assert rows[1]["benchmark"] == "fine"
    printed = capsys.readouterr()
    assert "ValueError: expected 5 scores, got 4" in printed.out  # the table's cell
    assert "Traceback" in printed.err
    assert "failed: benchmarks.fake_broken" in printed.err


def test_all_benchmarks_running_exit_0(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fine(quick: bool) -> list[dict[str, object]]:
        return [{"benchmark": "fine", "case": "c", "metric": "m", "value": 2, "target": ""}]

    monkeypatch.setitem(sys.modules, "benchmarks.fake_fine", _module("fake_fine", fine))
    monkeypatch.setattr(bench, "MODULES", ("benchmarks.fake_fine",))
    assert bench.main(["--json", str(tmp_path / "r.json")]) == 0


@pytest.mark.tf
@pytest.mark.slow
def test_cpu_budget_decides_as_the_slot_does(tmp_path: Path) -> None:
    """A classifier with benign and attack labels decides over its own ``unknown`` too: the CPU
    budget's decision stage must feed the decider what the slot feeds it (it once raised)."""
    pytest.importorskip("tensorflow")
    from agent.features.traffic import TRAFFIC_V1
    from benchmarks import agent_replay as ar
    from benchmarks.cpu_budget import stages
    from tests.agent.bundles import flood_frames, pcap_bytes

    frames, _ = flood_frames(calm_s=3, flood_s=1, calm_after_s=2, flood_rate=400)
    capture = tmp_path / "flood.pcap"
    capture.write_bytes(pcap_bytes(frames))
    labels = ("benign", "ddos")
    path, public = ar._bundle(
        tmp_path,
        "cnn4",
        ar._cnn_int8(TRAFFIC_V1.width, len(labels), 4),
        window=4,
        labels=labels,
        maxima=ar._feature_maxima([capture]),
        model_type="cnn",
    )

    found = stages(ar._load(path, public), capture, 1)

    assert found["packets"] == len(frames)
    assert found["windows"] == 3  # 6 one-second steps, windows of 4
    assert all(found[s] > 0 for s in ("decoding", "features", "inference", "decisions"))


def test_only_with_a_name_it_does_not_know_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        bench.main(["--only", "incident_hold", "--json", str(tmp_path / "r.json")])
    assert stopped.value.code == 2
    assert (
        "--only: no benchmark incident_hold; one of feature_extraction" in capsys.readouterr().err
    )
    assert not (tmp_path / "r.json").exists()
