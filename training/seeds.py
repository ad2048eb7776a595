"""``iotids train --seeds N``: the same training with N seeds, their spread, and the best kept.

Seeds are ``seed, seed + 1, ... seed + N - 1``; each run writes its own model directory under
``OUT/seeds/seed-<s>/``. The run with the best validation score is copied to ``OUT`` (what
``iotids convert`` reads): a classifier's highest validation macro-F1, an anomaly model's lowest
validation loss; without validation windows, the first seed. Never the test split, so the figures
reported on it stay honest. ``OUT/metrics.json`` is the kept run's, plus ``seeds``: the seeds, the
kept one, how it was chosen and the mean and sample std of every numeric test metric over the
runs; ``OUT/report.md`` gains the same table.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from training.config import TrainConfig

logger = logging.getLogger(__name__)

Runner = Callable[[TrainConfig], dict[str, Any]]
SELECTED_BY = (
    "highest validation macro-F1 (classifier) or lowest validation loss (anomaly, or a "
    "classifier whose validation split is small), else the first seed"
)


def validation_score(summary: Mapping[str, Any]) -> float:
    """Higher is better: best validation macro-F1, else minus the lowest validation loss.

    A run that stopped on its validation loss (a small validation split, where macro-F1 is
    noise) is also kept by its loss.
    """
    history = summary.get("history") or {}
    if history.get("val_macro_f1") and summary.get("early_stopping") != "val_loss":
        return float(max(history["val_macro_f1"]))
    if history.get("val_loss"):
        return -float(min(history["val_loss"]))
    return -math.inf


def _finite(value: float) -> float | None:
    """JSON has no infinities: a run without validation scores None."""
    return value if math.isfinite(value) else None


def flat_metrics(metrics: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, float]]:
    """Every numeric leaf of a metrics dict as ``a.b.c`` -> value (lists are left out)."""
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from flat_metrics(value, name + ".")
        elif isinstance(value, int | float) and not isinstance(value, bool):
            yield name, float(value)


def spread(summaries: list[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """Mean, sample std (0 for one run) and range of each metric the runs all report."""
    per_run = [
        dict(flat_metrics({"model": s.get("model", {}), "baseline": s.get("baseline", {})}))
        for s in summaries
    ]
    names = [n for n in per_run[0] if all(n in run for run in per_run)]
    out: dict[str, dict[str, float]] = {}
    for name in names:
        values = np.array([run[name] for run in per_run], np.float64)
        std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        out[name] = {
            "mean": round(float(values.mean()), 6),
            "std": round(std, 6),
            "min": round(float(values.min()), 6),
            "max": round(float(values.max()), 6),
        }
    return out


def train_seeds(config: TrainConfig, runner: Runner) -> dict[str, Any]:
    """Train ``config.seeds`` seeds, keep the best on validation in ``config.out``."""
    root = Path(config.out)
    seeds = [config.seed + i for i in range(config.seeds)]
    runs: list[tuple[int, Path, dict[str, Any]]] = []
    for seed in seeds:
        folder = root / "seeds" / f"seed-{seed}"
        logger.info("seed %d of %s -> %s", seed, seeds, folder)
        runs.append((seed, folder, runner(replace(config, seed=seed, seeds=1, out=str(folder)))))
    best_seed, best_folder, best = max(runs, key=lambda run: validation_score(run[2]))
    for item in best_folder.iterdir():
        target = root / item.name
        if item.is_dir():
            shutil.copytree(item, target, dirs_exist_ok=True)
        else:
            shutil.copy2(item, target)
    figures = spread([summary for _, _, summary in runs])
    summary = {
        **best,
        "seeds": {
            "seeds": seeds,
            "kept": best_seed,
            "selected_by": SELECTED_BY,
            "validation": {seed: _finite(validation_score(s)) for seed, _, s in runs},
            "spread": figures,
        },
    }
    (root / "metrics.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    with (root / "report.md").open("a", encoding="utf-8") as report:
        report.write("\n" + seeds_section(seeds, best_seed, figures) + "\n")
    return summary


def seeds_section(seeds: list[int], kept: int, figures: Mapping[str, Mapping[str, float]]) -> str:
    """The report's table of every metric's mean ± std over the seeds."""
    lines = [
        f"## {len(seeds)} seeds ({', '.join(map(str, seeds))}); kept seed {kept}",
        "",
        f"Kept by {SELECTED_BY}; the figures above are the kept run's.",
        "",
        "| metric (test split) | mean ± std | min | max |",
        "|---|---|---|---|",
    ]
    for name, f in figures.items():
        lines.append(
            f"| {name} | {f['mean']:.4f} ± {f['std']:.4f} | {f['min']:.4f} | {f['max']:.4f} |"
        )
    return "\n".join(lines)
