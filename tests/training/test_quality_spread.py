"""The training-quality benchmark's spread rows: every figure as mean ± std over seeds."""

from __future__ import annotations

from benchmarks.training_quality import _numeric, _row, _spread_rows


def test_every_numeric_figure_gets_mean_std_and_range() -> None:
    seeds = [
        _numeric([_row("c", "macro_f1", 0.60), _row("c", "classes_in_test", "10/10")]),
        _numeric([_row("c", "macro_f1", 0.62)]),
    ]
    assert seeds[0] == {"macro_f1": 0.60}  # strings are not figures
    (row,) = _spread_rows("c mean ± std", seeds)
    assert row["metric"] == "macro_f1"
    assert row["value"] == "0.6100 ± 0.0141"
    assert row["target"] == "2 seeds, range 0.6000..0.6200"


def test_a_figure_missing_from_one_seed_is_left_out() -> None:
    rows = _spread_rows("c", [{"a": 1.0, "b": 2.0}, {"a": 3.0}])
    assert [r["metric"] for r in rows] == ["a"]
