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
