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


def test_every_seed_says_whether_the_model_reached_the_forest(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from benchmarks import training_quality

    scores = {0: (0.62, 0.61, 0.2), 1: (0.60, 0.61, 0.9)}  # model, forest, int8 loss (points)

    def fake_train(case: str, quick: bool, seed: int, **options: object) -> tuple[dict, float]:
        model, forest, loss = scores[seed]
        per_class = {"a": {"support": 20}}
        summary = {
            "model": {"macro_f1": model, "accuracy": 0.9, "per_class": per_class},
            "baseline": {"macro_f1": forest, "accuracy": 0.9},
            "windows": {"test": 20},
            "float_macro_f1": model,
            "int8_macro_f1": model - loss / 100,
        }
        return summary, 1.0

    monkeypatch.setattr(training_quality, "_train", fake_train)
    rows = training_quality._seeded("t", False, (0, 1))
    verdicts = {r["case"]: r for r in rows if r["metric"] == "model_ge_rf"}
    assert verdicts["t seed 0"]["value"] == "yes"
    assert verdicts["t seed 1"]["value"] == "no"
    assert "MISSED" in str(verdicts["t seed 1"]["target"])
    (summary,) = [r for r in rows if r["metric"] == "seeds_model_ge_rf"]
    assert summary["value"] == "1/2"
    assert "MISSED" in str(summary["target"])
    (int8,) = [r for r in rows if r["metric"] == "seeds_int8_within"]
    assert int8["value"] == "1/2"
    assert "MISSED" in str(int8["target"])


def test_out_of_fold_rows_say_each_seed_and_every_miss(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from benchmarks import tabular_cv

    scores = {0: (0.61, 0.6095, 0.60), 1: (0.60, 0.59, 0.605)}  # dnn, int8, forest

    def fake_scores(dataset: str, seed: int, options: dict) -> dict[str, float]:  # type: ignore[type-arg]
        dnn, int8, forest = scores[seed]
        return {"dnn": dnn, "int8": int8, "forest": forest, "rows": 100.0}

    monkeypatch.setattr(tabular_cv, "seed_scores", fake_scores)
    rows, summary = tabular_cv.scored_seeds("ciciot2023", [0, 1], {})
    by = {(r["case"], r["metric"]): r for r in rows}
    seed1 = "ciciot2023 out of fold, seed 1 (100 rows)"
    assert by[(seed1, "dnn - rf")]["value"] == -0.5
    assert by[(seed1, "dnn - rf")]["target"] == ">= 0 MISSED"
    assert by[(seed1, "int8 loss")]["target"] == "<= 0.5 MISSED"
    assert by[("ciciot2023 out of fold, seed 0 (100 rows)", "dnn - rf")]["target"] == ">= 0"
    total = by[("ciciot2023 out of fold, seeds 0 1", "seeds dnn >= rf")]
    assert (total["value"], total["target"]) == ("1/2", "all MISSED (worst -0.50 points)")
    assert "dnn >= rf on 1/2 seeds" in summary
