"""Packets per second from capture file to feature windows, and the peak RSS it takes.

The path measured is the agent's: ``iter_capture`` chunks -> ``TrafficFeaturizer.push`` ->
``WindowBuffer.push`` (1-s steps, 16-step windows), single process. Small files are repeated
until at least ``min_s`` seconds have been timed. Peak RSS is measured per case in a fresh
subprocess (interpreter and numpy included), so one case's memory does not hide another's.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from agent.features.capture import iter_capture, read_capture
from agent.features.packets import PacketTable
from agent.features.steps import StepSpec
from agent.features.traffic import TRAFFIC_V1, TrafficFeaturizer, WindowBuffer, featurize

DATASETS = Path(
    os.environ.get("IOTIDS_DATASETS", Path(__file__).resolve().parents[2] / "shared" / "datasets")
)
TARGET = ">= 500000"
WINDOW = 16


def captures(root: Path = DATASETS) -> list[Path]:
    """Every shared pcap / pcapng capture, in a stable order."""
    return sorted(p for p in root.glob("*/*") if p.suffix in (".pcap", ".pcapng"))


def to_windows(paths: list[Path], step: StepSpec) -> tuple[int, int]:
    """Read and featurize the files into windows once; returns (packets, windows)."""
    packets = windows = 0
    for path in paths:
        featurizer = TrafficFeaturizer(step)
        buffer = WindowBuffer(WINDOW, width=TRAFFIC_V1.width)
        for chunk in iter_capture(path):
            packets += len(chunk.packets)
            windows += buffer.push(featurizer.push(chunk.packets)).shape[0]
        windows += buffer.push(featurizer.flush()).shape[0]
    return packets, windows


def throughput(paths: list[Path], step: StepSpec, min_s: float) -> float:
    """End-to-end packets per second, repeating the files until ``min_s`` has passed."""
    to_windows(paths, step)  # warm the page cache and numpy's dispatch
    total, started = 0, time.perf_counter()
    while True:
        total += to_windows(paths, step)[0]
        elapsed = time.perf_counter() - started
        if elapsed >= min_s:
            return total / elapsed


def featurizer_only(tables: list[PacketTable], step: StepSpec, min_s: float) -> float:
    """Packets per second of the batch featurizer alone on already-decoded tables."""
    total, started = 0, time.perf_counter()
    while True:
        for t in tables:
            featurize(t, step)
            total += len(t)
        elapsed = time.perf_counter() - started
        if elapsed >= min_s:
            return total / elapsed


def peak_rss_mib(paths: list[Path]) -> float:
    """Peak RSS (MiB) of a fresh process that takes ``paths`` to windows once."""
    repo = Path(__file__).resolve().parents[1]
    argv = [sys.executable, "-m", "benchmarks.feature_extraction", "--rss", *map(str, paths)]
    done = subprocess.run(argv, cwd=repo, capture_output=True, text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def _row(case: str, metric: str, value: float, unit: str, target: str = "") -> dict[str, object]:
    return {
        "benchmark": "feature_extraction",
        "case": case,
        "metric": metric,
        "value": value,
        "unit": unit,
        "target": target,
    }


def run(quick: bool = False) -> list[dict[str, object]]:
    """One throughput and one peak-RSS row per capture, then the whole set together."""
    paths = captures()
    min_s = 0.2 if quick else 1.0
    step = StepSpec()
    rows: list[dict[str, object]] = []
    for path in paths:
        rows.append(
            _row(path.name, "packets_per_s", throughput([path], step, min_s), "pkt/s", TARGET)
        )
        rows.append(_row(path.name, "peak_rss", peak_rss_mib([path]), "MiB"))
    everything = f"all {len(paths)} captures"
    rows.append(
        _row(everything, "packets_per_s", throughput(paths, step, 2 * min_s), "pkt/s", TARGET)
    )
    rows.append(_row(everything, "peak_rss", peak_rss_mib(paths), "MiB"))
    packet_step = StepSpec("packets", 100)
    rate = throughput(paths, packet_step, 2 * min_s)
    rows.append(_row(f"{everything}, 100-packet steps", "packets_per_s", rate, "pkt/s", TARGET))
    tables = [read_capture(p).packets for p in paths]
    rate = featurizer_only(tables, step, 2 * min_s)
    rows.append(_row(f"{everything}, featurizer only", "packets_per_s", rate, "pkt/s"))
    return rows


def _rss_child(paths: list[Path]) -> None:
    """The subprocess side of :func:`peak_rss_mib`: run once, print the peak RSS in MiB."""
    to_windows(paths, StepSpec())
    print(_peak_rss_kib() / 1024)


def _peak_rss_kib() -> float:
    """This process's peak RSS: VmHWM on Linux (ru_maxrss would carry the parent's from fork)."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return float(line.split()[1])
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def main(argv: list[str] | None = None) -> int:
    """Print the table (or, with ``--rss``, be the measuring subprocess)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.feature_extraction")
    parser.add_argument("--quick", action="store_true", help="shorter timings")
    parser.add_argument("--rss", nargs="+", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rss:
        _rss_child(args.rss)
        return 0
    from benchmarks.__main__ import print_table

    print_table(run(quick=args.quick))
    return 0


if __name__ == "__main__":
    sys.exit(main())
