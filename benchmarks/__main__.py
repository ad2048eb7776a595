"""Run every benchmark and print one table; also write it as JSON.

Each benchmark module exposes ``run(quick: bool) -> list[dict]`` whose rows carry
``benchmark``, ``case``, ``metric``, ``value``, ``unit`` and ``target``. Targets are
printed beside what was measured; nothing here fails because a target was missed. A
benchmark that raises becomes one ``error`` row (its traceback on stderr), the others still
run, and the exit status is 1.
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import sys
import time
import traceback
from pathlib import Path
from typing import Any

MODULES = (
    "benchmarks.feature_extraction",
    "benchmarks.synth_speed",
    "benchmarks.conversion",
    "benchmarks.agent_replay",
    "benchmarks.live_capture",
    "benchmarks.memory",
    "benchmarks.cpu_budget",
    "benchmarks.bundle_pushes",
    "benchmarks.detection",
    "benchmarks.incidents",
    "benchmarks.openset",
    "benchmarks.events",
    "benchmarks.partial_windows",
    "benchmarks.transition_windows",
    "benchmarks.unknown_edge",
    "benchmarks.cross_site",
    "benchmarks.training_quality",
    "benchmarks.tabular_cv",
    "benchmarks.fleet_load",
    "benchmarks.features_parallel",
    "benchmarks.multiworker",
    "benchmarks.telemetry",
)


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    import os

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
    }


def format_value(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 100 else f"{value:,.0f}"
    return str(value)


def print_table(rows: list[dict[str, Any]]) -> None:
    headers = ("benchmark", "case", "metric", "value", "unit", "target")
    cells = [[format_value(r.get(h, "")) for h in headers] for r in rows]
    widths = [
        max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(headers)
    ]
    line = " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    print(line)
    print("-+-".join("-" * w for w in widths))
    for c in cells:
        print(" | ".join(v.ljust(w) for v, w in zip(c, widths, strict=True)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--quick", action="store_true", help="smaller inputs, for a smoke run")
    parser.add_argument(
        "--only", action="append", default=[], help="run only these (module suffix)"
    )
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results.json"))
    args = parser.parse_args(argv)
    known = [name.rsplit(".", 1)[-1] for name in MODULES]
    unknown = [name for name in args.only if name not in known]
    if unknown:  # a misspelt name would run nothing and print an empty table
        parser.error(f"--only: no benchmark {', '.join(unknown)}; one of {', '.join(known)}")
    rows: list[dict[str, Any]] = []
    failed: list[str] = []
    for name in MODULES:
        if args.only and name.rsplit(".", 1)[-1] not in args.only:
            continue
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            rows.append({"benchmark": name, "case": "import", "metric": "error", "value": str(exc)})
            continue
        started = time.perf_counter()
        print(f"running {name} ...", file=sys.stderr, flush=True)
        try:
            rows.extend(module.run(quick=args.quick))
        except Exception as exc:  # one broken benchmark must not lose the others' rows
            traceback.print_exc()
            failed.append(name)
            rows.append(
                {"benchmark": name, "case": "run", "metric": "error", "value": _failure(exc)}
            )
        print(f"  {name} took {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
    print_table(rows)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"machine": machine(), "rows": rows}, indent=2, default=str))
    print(f"\nwritten: {args.json}")
    if failed:
        print(f"failed: {', '.join(failed)} (traceback above)", file=sys.stderr)
        return 1
    return 0


def _failure(exc: Exception) -> str:
    """An exception as one table cell."""
    text = f"{type(exc).__name__}: {exc}".splitlines()[0]
    return text if len(text) <= 120 else text[:117] + "..."


if __name__ == "__main__":
    sys.exit(main())
