"""Choosing ``--transition-windows S`` on generated traffic, never on the captures reported on.

An attack on a gateway begins after the site's own traffic; training recordings hold one class
each, so the model never sees that transition unless ``--transition-windows`` makes copies of
it. This benchmark uses ``benchmarks.partial_windows``' generated captures and leave-kinds-out
folds (the events recipe with ``--partial-windows 1``) and replays each held-out kind twice: from
a stream's first packet, and spliced 0.1 s after the first ``AFTER_S`` of the held-out benign
capture (``benchmarks.capture_splice``). False alarms are counted on the held-out benign
capture and on ``SITE_SECONDS`` of another site's benign traffic (generator seed ``SITE_SEED``,
used by no other benchmark), before any calibration. The chosen share has the most first
alarms within target (mid-stream and from a stream's start together), then the fewest false
alarms, then the smallest share, as for the partial windows.
Run: ``python -m benchmarks.transition_windows [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.rows import print_rows
from benchmarks.rows import row as table_row

NAME = "transition_windows"
SHARES = (0.0, 1.0)
TRAIN_SEEDS = (0, 1, 2)
AFTER_S = 60.0
SITE_SEED, SITE_SECONDS = 777, 900.0
PARTIAL = 1.0


def _row(case: str, metric: str, value: object, unit: str, target: str = "") -> dict[str, object]:
    return table_row(NAME, case, metric, value, unit, target)


def run(quick: bool = False) -> list[dict[str, object]]:
    """Train each share on the same folds; replay from a stream's start, mid-stream, other site."""
    from benchmarks.partial_windows import SEEDS, generate
    from training.synth.scenario import ATTACK_KINDS, TrafficScenario
    from training.synth.traffic import generate_traffic

    began = time.perf_counter()
    seeds = TRAIN_SEEDS[:1] if quick else TRAIN_SEEDS
    results: dict[float, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="iotids-bench-transition-") as tmp:
        root = Path(tmp)
        train = generate(root / "train", SEEDS["train"], ATTACK_KINDS)
        held = generate(root / "held", SEEDS["held"], ATTACK_KINDS)
        site_s = 300.0 if quick else SITE_SECONDS
        generate_traffic(TrafficScenario(seed=SITE_SEED, duration=site_s), root / "site")
        site = root / "site" / "traffic.pcap"
        for share in SHARES:
            results[share] = [
                _one(root / f"t{share:g}-{seed}", share, seed, train, held, site, quick)
                for seed in seeds
            ]
    rows = [r for share in SHARES for r in _share_rows(share, results[share])]
    best = max(SHARES, key=lambda s: _rank(results[s], s))
    where = "benchmarks.events.TRANSITION"
    rows.append(_row("generated, leave-kinds-out", "chosen share", best, "", where))
    rows.append(_row("all shares", "train+replay", time.perf_counter() - began, "s"))
    return rows


def _one(
    folder: Path,
    share: float,
    seed: int,
    train: dict[str, Path],
    held: dict[str, Path],
    site: Path,
    quick: bool,
) -> dict[str, Any]:
    """Every fold trained with ``share``: the three replays' attacks and false alarms."""
    from agent.bundle import load_bundle, load_public_key
    from benchmarks.capture_splice import splice
    from benchmarks.events import link_captures, train_fold
    from benchmarks.partial_windows import STEP, folds
    from training.datasets.captures import ONSETS_FILE
    from training.events import evaluate_events

    found: dict[str, Any] = {"start": [], "mid": [], "alarms": 0, "benign_s": 0.0}
    kinds = tuple(k for k in train if k != "benign")
    for i, out in enumerate(folds(kinds, quick)):
        fold = folder / f"fold{i}"
        kept = [p for k, p in train.items() if k not in out]
        epochs = 8 if quick else 15
        bundle, public, _ = train_fold(kept, fold, STEP, "zeros", epochs, PARTIAL, seed, share)
        loaded = load_bundle(bundle, [load_public_key(public)])
        start = evaluate_events(
            loaded, link_captures([held[k] for k in ("benign", *out)], fold / "s")
        )
        (fold / "mid").mkdir()
        onsets = {}
        for kind in out:
            name = f"{kind}-after-benign.pcapng"
            onsets[name] = splice(held["benign"], AFTER_S, held[kind], fold / "mid" / name)
        (fold / "mid" / ONSETS_FILE).write_text(json.dumps(onsets), encoding="utf-8")
        mid = evaluate_events(loaded, fold / "mid")
        other = evaluate_events(loaded, link_captures([site], fold / "site"))
        for name, result in (("start", start), ("mid", mid)):
            found[name] += [a for c in result["captures"] for a in c["attacks"]]
        for result in (start, mid, other):
            found["alarms"] += sum(c["false_alarms"] for c in result["captures"])
            found["benign_s"] += sum(c["benign_seconds"] for c in result["captures"])
    return found


def _within(attacks: list[dict[str, Any]]) -> int:
    return sum(1 for a in attacks if a["within_target"])


def _rank(results: list[dict[str, Any]], share: float) -> tuple[int, int, float]:
    within = sum(_within(r["start"]) + _within(r["mid"]) for r in results)
    return (within, -sum(r["alarms"] for r in results), -share)


def _share_rows(share: float, results: list[dict[str, Any]]) -> list[dict[str, object]]:
    case = f"transition share {share:g}"
    rows = []
    for name, said in (("start", "from a stream's start"), ("mid", f"after {AFTER_S:g} s benign")):
        within = [_within(r[name]) for r in results]
        found = [sum(1 for a in r[name] if a["detected"]) for r in results]
        packets = [
            statistics.median(a["packets_to_alarm"] for a in r[name] if a["detected"])
            for r in results
        ]
        total = len(results[0][name])
        rows.append(
            _row(case, f"within target, {said}", " / ".join(map(str, within)), f"of {total}")
        )
        rows.append(_row(case, f"detected, {said}", " / ".join(map(str, found)), f"of {total}"))
        rows.append(
            _row(
                case, f"median packets to alarm, {said}", " / ".join(f"{p:g}" for p in packets), ""
            )
        )
    alarms = " / ".join(str(r["alarms"]) for r in results)
    hours = statistics.mean(r["benign_s"] for r in results) / 3600
    rows.append(_row(case, "false alarms (per seed)", alarms, f"in {hours:.2f} h each"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one fold, one seed, fewer epochs")
    args = parser.parse_args()
    print_rows(run(args.quick), 28, 44)


if __name__ == "__main__":
    main()
