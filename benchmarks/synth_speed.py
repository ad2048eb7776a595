"""Generator speed: packets per second from scenario to pcap + ground-truth CSVs on disk.

The target is at least 1 million packets per minute (about 16,700 packets/s).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from training.synth.scenario import preset
from training.synth.traffic import generate_traffic

TARGET = ">= 16,667 pkt/s (1 M/min)"


def run(quick: bool = False) -> list[dict[str, object]]:
    """Time each preset's generation (pcap, packets.csv, steps.csv, scenario.json)."""
    rows: list[dict[str, object]] = []
    names = ("default",) if quick else ("default", "mixed", "demo-train")
    for name in names:
        with tempfile.TemporaryDirectory(prefix="iotids-bench-synth-") as tmp:
            result = generate_traffic(preset(name), Path(tmp))
        rows.append(
            {
                "benchmark": "synth_traffic",
                "case": f"preset {name} ({result.packets:,} packets)",
                "metric": "packets_per_s",
                "value": result.packets_per_second,
                "unit": "pkt/s",
                "target": TARGET,
            }
        )
    return rows


if __name__ == "__main__":
    from benchmarks.__main__ import print_table

    print_table(run(quick="--quick" in sys.argv))
