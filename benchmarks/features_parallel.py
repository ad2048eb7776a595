"""``iotids features DIR`` on 1 and 2 worker processes (and Ray, when installed): the speed-up.

The folder is the shared datasets' captures, each linked 120 times (2 with ``--quick``) into a
temporary folder (nothing is copied), so the workers' start-up matters less. Reported: seconds
(start-up included: the pool's interpreters, or ``ray.init``), packets/s, the speed-up over one
worker (the single-process path) and the peak RSS of the busiest worker, which holds one
capture's steps at a time. Two workers on a machine whose two cores other jobs share cannot
reach 2x; the load average is printed.
Run: ``python -m benchmarks.features_parallel [--quick]``.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
from pathlib import Path
from typing import Any

from agent.features.batch import CAPTURE_SUFFIXES, run_folder

REPO = Path(__file__).resolve().parents[1]
DATASETS = Path(os.environ.get("IOTIDS_DATASETS", REPO.parent / "shared" / "datasets"))
NAME = "features on workers"


def _row(case: str, metric: str, value: object, unit: str, target: str = "") -> dict[str, object]:
    return {"benchmark": NAME, "case": case, "metric": metric, "value": value, "unit": unit,
            "target": target}  # fmt: skip


def _folder(tmp: Path, repeat: int) -> Path:
    folder = tmp / "captures"
    folder.mkdir()
    captures = sorted(p for p in DATASETS.rglob("*") if p.suffix in CAPTURE_SUFFIXES)
    for r in range(repeat):
        for capture in captures:
            (folder / f"{r}-{capture.parent.name}-{capture.name}").symlink_to(capture)
    return folder


def run(quick: bool = False) -> list[dict[str, object]]:
    """1 and 2 local workers (and Ray with 2 when installed) over the same folder."""
    if not DATASETS.is_dir():
        return [_row("shared captures", "skipped", f"{DATASETS} absent", "")]
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="iotids-bench-batch-") as tmp:
        folder = _folder(Path(tmp), 2 if quick else 120)
        engines: list[tuple[str, int, str | None]] = [
            ("processes", 1, None),
            ("processes", 2, None),
        ]
        if importlib.util.find_spec("ray") is not None:
            engines.append(("ray local", 2, "local"))
        base: dict[str, Any] | None = None
        for label, workers, ray in engines:
            load = os.getloadavg()[0]
            result = run_folder(folder, "20p/1s", 8, None, workers, ray)
            base = base or result
            plural = "s" if workers > 1 else ""
            case = f"{label}, {workers} worker{plural}, {result['captures']} captures"
            speedup = base["seconds"] / result["seconds"]
            same = [r["digest"] for r in result["results"]] == [
                r["digest"] for r in base["results"]
            ]
            rows += [
                _row(case, "seconds", result["seconds"], "s"),
                _row(case, "packets/s", result["packets_per_s"], "1/s"),
                _row(case, "speed-up over 1 worker", speedup, "x", f"{workers} (ideal)"),
                _row(case, "busiest worker peak RSS", result["worker_peak_rss_kb"] / 1024, "MiB"),
                _row(case, "steps identical to 1 worker", same, "", "True"),
                _row(case, "load average before", f"{load:.2f}", ""),
            ]
    return rows


if __name__ == "__main__":
    import argparse

    from benchmarks.__main__ import print_table

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    print_table(run(parser.parse_args().quick))
