"""CPU-seconds per million packets, per stage, and what they mean on a Raspberry Pi.

Stages, each timed alone with ``time.process_time`` over the shared SYN-flood capture (the
busiest one): decoding (pcap bytes to a packet table), features (traffic-v1 steps; each
step's evidence keeps its packets and is summarised only when an event needs it), inference
(steps scaled, the int8 CNN on every window, XNNPACK, batches of up to 32) and decisions
(debounce), at 1-second and 20-packet steps; reporting is timed per event (an event to JSON),
since its cost follows events, not packets.

Pi figures are NOT measured: they scale this machine's figures by single-core speed ratios
(``PI_SLOWDOWN``), an assumption stated in every row.
Run: ``python -m benchmarks.cpu_budget [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.agent_replay import DATASETS, PACKET_WINDOW, WINDOW
from benchmarks.rows import row as table_row

NAME = "cpu_budget"
CAPTURE = "ddos_pcaps_stopddos/pkt.TCP.synflood.spoofed.pcap"
# Single-core slowdown against one core of this x86 machine. Assumed, from published
# single-core benchmark ratios (Geekbench 5 single-core: recent x86 server/desktop cores
# ~1,000-1,400, Pi 4 Cortex-A72 at 1.5 GHz ~250-300, Pi Zero 2 W Cortex-A53 at 1 GHz ~100-130),
# rounded to the pessimistic side. Vector-heavy stages (numpy, XNNPACK) may scale differently:
# NEON is 128-bit against AVX2's 256-bit. A Pi figure is this machine's times the factor.
PI_SLOWDOWN = {"Pi 4": 5.0, "Pi Zero 2 W": 12.0}


def _row(case: str, metric: str, value: object, unit: str, target: str = "") -> dict[str, object]:
    return table_row(NAME, case, metric, value, unit, target)


def _cpu(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """Least CPU-seconds of ``repeat`` runs of ``fn`` (and its last result)."""
    best = float("inf")
    result = None
    for _ in range(repeat):
        began = time.process_time()
        result = fn()
        best = min(best, time.process_time() - began)
    return best, result


def stages(bundle: Any, capture: Path, repeat: int) -> dict[str, float]:
    """CPU-seconds of each stage over the whole capture, and its packet count."""
    from agent.features.capture import read_capture
    from agent.features.steps import sliding_windows
    from agent.inference import ModelSlot
    from agent.sources.traffic_steps import TrafficStepper

    step = bundle.manifest.step
    decode_s, cap = _cpu(lambda: read_capture(capture), repeat)
    table = cap.packets

    def features() -> Any:
        stepper = TrafficStepper(step)
        first = stepper.push(table)
        last = stepper.flush()
        return np.concatenate((first.values, last.values))

    features_s, values = _cpu(features, repeat)
    slot = ModelSlot("bench", "cap", TRAFFIC_FEATURES(), step, bundle)
    window = bundle.manifest.window
    windows = sliding_windows(values, window)

    def inference() -> Any:
        # as the slot does: each step scaled once, the scaled windows cut from them; cold, or
        # the repeats would find their windows' answers remembered by the model
        bundle.model.forget()
        scaled = sliding_windows(bundle.manifest.scaler.transform(values), window)
        return slot._score(windows, scaled)[0]

    inference_s, scored = _cpu(inference, repeat)
    ends = np.arange(len(scored), dtype=np.int64) * 1_000_000

    def decisions() -> Any:
        slot._build_decider()
        numbers = np.arange(len(scored), dtype=np.int64)
        fused = slot.fused(scored, None, numbers, ends)  # what the slot hands its decider
        return slot.decider.observe_many(ends, fused, lambda k: _no_evidence)

    decisions_s, _ = _cpu(decisions, repeat)
    return {
        "packets": float(len(table)),
        "windows": float(len(windows)),
        "decoding": decode_s,
        "features": features_s,
        "inference": inference_s,
        "decisions": decisions_s,
    }


def _no_evidence() -> Any:
    from agent.decide import Evidence

    return Evidence()


def TRAFFIC_FEATURES() -> Any:
    from agent.features.traffic import TRAFFIC_V1

    return TRAFFIC_V1


def reporting_s_per_event(repeat: int = 2000) -> float:
    """CPU-seconds to turn one event with full evidence into its JSON payload."""
    from agent.decide import Event, Evidence

    evidence = Evidence(
        1000,
        64000,
        tuple((f"10.0.0.{i}", 100 - i) for i in range(5)),
        tuple((1000 + i, 100 - i) for i in range(5)),
        tuple((f"192.168.1.{i}", 100 - i) for i in range(5)),
    )
    event = Event(
        kind="new",
        id="x",
        model="m",
        source="s",
        label="ddos",
        category="dos",
        started_ns=1,
        time_ns=2,
        score=0.9,
        peak=0.9,
        windows=3,
        evidence=evidence,
        labels=(("ddos", 3),),
    )
    began = time.process_time()
    for _ in range(repeat):
        json.dumps(event.to_dict())
    return (time.process_time() - began) / repeat


def run(quick: bool = False) -> list[dict[str, object]]:
    """Per-stage CPU budget at 1 s and 20p steps, and the Pi rates it implies."""
    from agent.quiet import quiet_tensorflow

    capture = DATASETS / CAPTURE
    if not capture.exists():
        return [_row("cpu budget", "cpu_s_per_M_packets", f"{CAPTURE} missing", "")]
    quiet_tensorflow()
    from agent.features.traffic import TRAFFIC_V1
    from benchmarks import agent_replay as ar

    rows: list[dict[str, object]] = []
    labels = ("benign", "ddos", "scan", "bruteforce")
    maxima = ar._feature_maxima([capture])
    repeat = 1 if quick else 3
    with tempfile.TemporaryDirectory(prefix="iotids-bench-cpu-") as tmp:
        folder = Path(tmp)
        cases = (
            ("1 s steps, window 16", WINDOW, None),
            ("20p steps, window 8", PACKET_WINDOW, {"kind": "packets", "size": 20}),
        )
        for case, window, step in cases:
            path, public = ar._bundle(
                folder,
                f"cnn{window}",
                ar._cnn_int8(TRAFFIC_V1.width, len(labels), window),
                window=window,
                labels=labels,
                maxima=maxima,
                model_type="cnn",
                step=step,
            )
            found = stages(ar._load(path, public), capture, repeat)
            per_m = 1e6 / found["packets"]
            total = 0.0
            for stage in ("decoding", "features", "inference", "decisions"):
                value = found[stage] * per_m
                total += value
                rows.append(_row(f"{case}: {stage}", "cpu_s_per_M_packets", round(value, 2), "s"))
            rows.append(_row(f"{case}: all stages", "cpu_s_per_M_packets", round(total, 2), "s"))
            rows.append(
                _row(f"{case}: here, one core", "max_packets_per_s", round(1e6 / total), "")
            )
            for pi, factor in PI_SLOWDOWN.items():
                rate = 1e6 / (total * factor)
                rows.append(
                    _row(
                        f"{case}: {pi} (estimate, x{factor:g} slower core)",
                        "sampling_starts_above",
                        round(rate, -2),
                        "pkt/s",
                    )
                )
    per_event = reporting_s_per_event(200 if quick else 2000)
    rows.append(
        _row("reporting: one event to JSON", "cpu_us_per_event", round(per_event * 1e6, 1), "us")
    )
    rows.append(_row("machine load", "loadavg_1min", round(os.getloadavg()[0], 2), ""))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one run per stage")
    args = parser.parse_args()
    for row in run(args.quick):
        value = f"{row['value']!s:>12}"
        print(f"{row['case']:<54} {row['metric']:<22} {value} {row['unit']}")


if __name__ == "__main__":
    main()
