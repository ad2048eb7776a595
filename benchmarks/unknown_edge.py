"""Choosing the classifier's own ``unknown`` edge on generated traffic, never on shared captures.

A classifier bundle without a benign model raises ``unknown`` where it gives benign at most
``1 - edge`` and no attack class is confident (``agent.classifier_unknown``). This replays
``benchmarks.partial_windows``' data — one generated capture per attack kind from its first
packet and a benign capture, generator seeds 701 (training) / 702 (replayed), 3 leave-kinds-out
folds, the events recipe at ``--partial-windows 1``, model seeds 0-2 — and one hour of another
site's benign traffic (the open-set benchmark's ``site_scenario``, seed 502) through each of the
nine models, for every edge in ``EDGES`` and without the label. The chosen edge has the most
attacks within the first-alarm target, then the fewest false alarms (the training network's
benign and the other site's together), then the highest edge.
Run: ``python -m benchmarks.unknown_edge [--quick] [--keep DIR]`` (``--keep``: data and models
reused).
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.rows import row as table_row

NAME = "unknown_edge"
EDGES = (0.8, 0.9, 0.95)
SITE_SEED, SITE_SECONDS = 502, 3600.0
MODEL_SEEDS = (0, 1, 2)


def _row(case: str, metric: str, value: object, unit: str, target: str = "") -> dict[str, object]:
    return table_row(NAME, case, metric, value, unit, target)


def prepare(
    root: Path, quick: bool = False
) -> tuple[dict[str, Path], Path, list[tuple[int, tuple[str, ...], Path]]]:
    """Generated captures, the other site's hour, and the nine trained fold models (reused)."""
    from benchmarks import partial_windows as pw
    from benchmarks.events import train_fold
    from benchmarks.openset import site_scenario
    from training.synth.scenario import ATTACK_KINDS
    from training.synth.traffic import generate_traffic

    if not (root / "train").exists():
        pw.generate(root / "train", pw.SEEDS["train"], ATTACK_KINDS)
        pw.generate(root / "held", pw.SEEDS["held"], ATTACK_KINDS)
    site = root / "site" / "traffic.pcap"
    if not site.exists():
        seconds = SITE_SECONDS / 4 if quick else SITE_SECONDS
        generate_traffic(site_scenario(SITE_SEED, seconds), root / "site")
    train = {p.name.split("-s")[0]: p for p in (root / "train").glob("*.pcap")}
    held = {p.name.split("-s")[0]: p for p in (root / "held").glob("*.pcap")}
    models = []
    for seed in MODEL_SEEDS[:1] if quick else MODEL_SEEDS:
        for i, out in enumerate(pw.folds(tuple(ATTACK_KINDS), quick=False)):
            fold = root / "models" / f"seed{seed}" / f"fold{i}"
            if not (fold / "cnn.bundle").exists():
                kept = [p for k, p in train.items() if k not in out]
                train_fold(kept, fold, pw.STEP, "zeros", 15, 1.0, seed)
            models.append((seed, out, fold))
    return held, site, models


def measure(
    edge: float, held: dict[str, Path], site: Path, models: list[tuple[int, tuple[str, ...], Path]]
) -> dict[str, Any]:
    """First alarms within target and false alarms of the nine models at one edge."""
    from agent.bundle import load_bundle, load_public_key
    from agent.inference import Debounce
    from benchmarks.detection import PLANS
    from benchmarks.events import link_captures
    from training.events import evaluate_events

    plan = PLANS["full"]
    debounce = Debounce(plan.raise_k, plan.raise_n, unknown_edge=edge)
    found = {"within": 0, "total": 0, "alarms": 0, "site_alarms": 0}
    hours = {"benign_h": 0.0, "site_h": 0.0}
    for _, out, fold in models:
        bundle = load_bundle(fold / "cnn.bundle", [load_public_key(fold / "signer.pub")])
        replays = fold / "replay"
        if not replays.exists():
            link_captures([held[k] for k in ("benign", *out)], replays)
            (fold / "site").mkdir()
            (fold / "site" / "benign-site.pcap").symlink_to(site)
        for c in evaluate_events(bundle, replays, debounce)["captures"]:
            found["alarms"] += c["false_alarms"]
            hours["benign_h"] += c["benign_seconds"] / 3600
            found["total"] += len(c["attacks"])
            found["within"] += sum(1 for a in c["attacks"] if a["within_target"])
        for c in evaluate_events(bundle, fold / "site", debounce)["captures"]:
            found["site_alarms"] += c["false_alarms"]
            hours["site_h"] += c["benign_seconds"] / 3600
    return {**found, **hours}


def run(quick: bool = False, keep: Path | None = None) -> list[dict[str, object]]:
    """Every edge and none on the same models; the chosen edge beside the one the agent uses."""
    from agent.classifier_unknown import EDGE

    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="iotids-bench-unknown-") as tmp:
        held, site, models = prepare(keep or Path(tmp), quick)
        results = {edge: measure(edge, held, site, models) for edge in (math.inf, *EDGES)}
    rows = []
    for edge, r in results.items():
        case = "no classifier unknown" if math.isinf(edge) else f"edge {edge:g}"
        rows.append(_row(case, "within target", f"{r['within']} of {r['total']}", "attacks"))
        rows.append(
            _row(
                case,
                "false alarms",
                r["alarms"] + r["site_alarms"],
                f"new events: {r['alarms']} in {r['benign_h']:.2f} h training network's benign, "
                f"{r['site_alarms']} in {r['site_h']:.1f} h another site's",
            )
        )
    best = max(
        EDGES,
        key=lambda e: (results[e]["within"], -results[e]["alarms"] - results[e]["site_alarms"], e),
    )
    verdict = "" if best == EDGE else f" (the agent uses {EDGE:g}: differs)"
    rows.append(_row("generated, leave-kinds-out", "chosen edge", best, verdict, f"{EDGE:g}"))
    rows.append(_row("all edges", "train+replay", round(time.perf_counter() - began, 1), "s"))
    return rows


def main() -> None:
    from benchmarks.__main__ import print_table

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="model seed 0, 15 min of the site")
    parser.add_argument("--keep", type=Path, help="a folder for the data and models, reused")
    args = parser.parse_args()
    print_table(run(args.quick, args.keep))


if __name__ == "__main__":
    main()
