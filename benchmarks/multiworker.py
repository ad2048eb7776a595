"""``iotids train --cluster-spec``: one TensorFlow worker against two on loopback, same data.

The shared MQTTset captures are featurized once (``iotids features DIR --out``, ``20p/1s``
steps), then a CNN (window 8, padded) is trained on the recordings by one worker and by a
cluster of two worker processes on this machine (gRPC over loopback), for each seed. Reported
per run: wall seconds from start to every worker's exit (TensorFlow's start-up included),
the seconds of the epochs alone, test macro-F1 and accuracy, the steps each worker read (each
reads only its recordings) and the busiest worker's peak RSS; the load average is printed,
since two workers on a machine whose two cores are shared cannot run twice as fast. The
targets: the same macro-F1 within 0.05, and two workers faster than one.
Run: ``python -m benchmarks.multiworker [--quick]``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.rows import row

REPO = Path(__file__).resolve().parents[1]
DATASETS = Path(os.environ.get("IOTIDS_DATASETS", REPO.parent / "shared" / "datasets"))
CAPTURES = DATASETS / "mqttset_reduced_pcap"
NAME = "training across workers"
F1_TOLERANCE = 0.05


def _free_ports(count: int) -> list[int]:
    """Loopback ports nothing listens on right now."""
    import socket

    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _features(tmp: Path) -> Path:
    """The captures' steps as ``iotids features`` writes them (one .npz per capture)."""
    from agent.features.batch import CAPTURE_SUFFIXES, run_folder

    folder, out = tmp / "captures", tmp / "features"
    folder.mkdir()
    for capture in sorted(CAPTURES.iterdir()):
        if capture.suffix in CAPTURE_SUFFIXES:
            (folder / capture.name).symlink_to(capture)
    run_folder(folder, "20p/1s", 8, out, 1, None)
    return out


def _command(features: Path, out: Path, spec: str, seed: int, epochs: int) -> list[str]:
    """``iotids train`` on the recordings, quiet, with the chief's summary as JSON."""
    return [
        sys.executable, "-m", "agent.cli", "-q", "train", "--dataset", "features",
        "--path", str(features), "--model", "cnn", "--window", "8", "--padding", "zeros",
        "--epochs", str(epochs), "--seed", str(seed), "--cluster-spec", spec,
        "--out", str(out / "model"), "--json",
    ]  # fmt: skip


def _cluster(features: Path, out: Path, workers: int, seed: int, epochs: int) -> dict[str, Any]:
    """Train on a cluster of ``workers`` local processes; the chief's summary and wall time."""
    spec = json.dumps({"worker": [f"127.0.0.1:{p}" for p in _free_ports(workers)]})
    env = {**os.environ, "PYTHONPATH": str(REPO), "CUDA_VISIBLE_DEVICES": "-1"}
    started = time.perf_counter()
    processes = [
        subprocess.Popen(
            [*_command(features, out, spec, seed, epochs), "--worker-index", str(index)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for index in range(workers)
    ]
    outputs = [p.communicate(timeout=1800) for p in processes]
    seconds = time.perf_counter() - started
    for p, (_, stderr) in zip(processes, outputs, strict=True):
        if p.returncode != 0:
            raise RuntimeError(f"a worker failed ({p.returncode}): {stderr[-500:]}")
    summary: dict[str, Any] = json.loads(outputs[0][0])
    summary["wall_seconds"] = seconds
    return summary


def run(quick: bool = False) -> list[dict[str, object]]:
    """1 and 2 workers on the same recordings, per seed."""
    if not CAPTURES.is_dir():
        return [row(NAME, "MQTTset captures", "skipped", f"{CAPTURES} absent", "")]
    rows: list[dict[str, object]] = []
    seeds, epochs = ((0,), 3) if quick else ((0, 1), 15)
    with tempfile.TemporaryDirectory(prefix="iotids-bench-multiworker-") as tmp:
        features = _features(Path(tmp))
        for seed in seeds:
            results = {}
            for workers in (1, 2):
                load = os.getloadavg()[0]
                result = _cluster(features, Path(tmp) / f"s{seed}-{workers}", workers, seed, epochs)
                results[workers] = result
                case = f"MQTTset 20p/1s, cnn, seed {seed}, {workers} worker{'s' * (workers > 1)}"
                table = result["workers"]
                rows += [
                    row(
                        NAME, case, "wall seconds (start-up included)", result["wall_seconds"], "s"
                    ),
                    row(NAME, case, "fit seconds (epochs alone)", result["train_seconds"], "s"),
                    row(NAME, case, "test macro-F1", result["model"]["macro_f1"], ""),
                    row(NAME, case, "test accuracy", result["model"]["accuracy"], ""),
                    row(NAME, case, "epochs run", len(result["history"]["loss"]), ""),
                    row(
                        NAME,
                        case,
                        "steps read per worker",
                        " / ".join(str(w["steps_read"]) for w in table),
                        "steps",
                        "each < all" if workers > 1 else "",
                    ),
                    row(
                        NAME,
                        case,
                        "busiest worker peak RSS",
                        max(w["peak_rss_kb"] for w in table) / 1024,
                        "MiB",
                    ),
                    row(NAME, case, "load average before", f"{load:.2f}", ""),
                ]
            gap = abs(results[2]["model"]["macro_f1"] - results[1]["model"]["macro_f1"])
            speedup = results[1]["wall_seconds"] / results[2]["wall_seconds"]
            case = f"MQTTset 20p/1s, cnn, seed {seed}: 2 workers vs 1"
            rows += [
                row(NAME, case, "macro-F1 difference", gap, "", f"<= {F1_TOLERANCE}"),
                row(NAME, case, "speed-up", speedup, "x", "> 1"),
            ]
    return rows


if __name__ == "__main__":
    import argparse

    from benchmarks.__main__ import print_table

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    print_table(run(parser.parse_args().quick))
