"""One row of the benchmark table: every benchmark module reports its figures this way."""

from __future__ import annotations


def row(
    benchmark: str, case: str, metric: str, value: object, unit: str, target: str = ""
) -> dict[str, object]:
    """A measured ``value`` of ``metric`` in ``case``, with the target printed beside it."""
    return {
        "benchmark": benchmark,
        "case": case,
        "metric": metric,
        "value": value,
        "unit": unit,
        "target": target,
    }


def print_rows(rows: list[dict[str, object]], case_width: int = 50, metric_width: int = 32) -> None:
    """A benchmark's rows as aligned lines (``python -m benchmarks.<name>`` run alone)."""
    for r in rows:
        value = r["value"]
        text = f"{value:.3f}" if isinstance(value, float) else str(value)
        case, metric = f"{r['case']:<{case_width}}", f"{r['metric']:<{metric_width}}"
        print(f"{case} {metric} {text} {r['unit']} {r['target']}")
