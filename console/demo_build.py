"""The demo's build stages: generate the scenarios, train both models, sign and verify bundles.

``console.demo`` runs them in order, then the agent against the test scenario; the plan, the
folder layout and the ground truth they share live here too.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

TELEMETRY_KIND = "industrial"
SEED_BASE = {"traffic_train": 11, "traffic_test": 12, "telemetry_train": 21, "telemetry_test": 22}


class DemoError(RuntimeError):
    """A stage failed; the message says which and why."""


@dataclass(frozen=True)
class DemoPlan:
    """How big each stage is: the full demo, or ``--quick`` for tests."""

    train_seconds: float  # training traffic; the preset's attack windows scale with it
    traffic_window: int  # CNN window in 1 s steps
    telemetry_window: int  # GRU window in 1 s steps
    epochs: int
    units: int
    telemetry_train_seconds: float
    telemetry_test_seconds: float
    baseline_trees: int  # the RandomForest reference every training report carries
    latency_runs: int  # invocations verify times per bundle
    agent_timeout: float  # seconds the agent may take to replay the test data
    replay_seconds: float  # wall time the replay is paced to (0: as fast as possible)
    train_repeats: int = 1  # the attack sequence this many times, then a benign stretch
    tuned: bool = False  # train the CNN with TRAFFIC_RECIPE (needs the repeats: enough data)


PLANS = {
    "full": DemoPlan(720.0, 4, 8, 40, 32, 7200.0, 3600.0, 30, 300, 90.0, 15.0, 3, True),
    "quick": DemoPlan(480.0, 4, 8, 20, 16, 7200.0, 3600.0, 10, 50, 60.0, 0.0),
}


@dataclass(frozen=True)
class Layout:
    """Where the demo writes everything under ``--out``."""

    root: Path

    def data(self, name: str) -> Path:
        """A generated scenario's folder."""
        return self.root / "data" / name

    def model(self, name: str) -> Path:
        """A training output folder (model, report, plots)."""
        return self.root / "models" / name

    def bundle(self, name: str) -> Path:
        """A signed bundle."""
        return self.root / "bundles" / f"{name}.bundle"

    @property
    def key(self) -> Path:
        """The signing key prefix (``.key`` private, ``.pub`` public)."""
        return self.root / "keys" / "demo"

    @property
    def state(self) -> Path:
        """The agent's state_dir (outbox, persisted bundles)."""
        return self.root / "agent-state"


# -- stage 1: data ----------------------------------------------------------------------------


@dataclass(frozen=True)
class RunTruth:
    """The test run's inputs and ground truth."""

    pcap: Path
    packets: int
    telemetry_csv: Path
    sensors: tuple[str, ...]
    attacks: tuple[tuple[str, float, float], ...]  # label, start, stop (Unix seconds)
    faults: tuple[tuple[str, float, float], ...]
    traffic_seconds: float = 0.0  # how long the test capture and telemetry span
    telemetry_seconds: float = 0.0

    def describe(self) -> str:
        """One line for the progress output."""
        return (
            f"test traffic {self.packets} packets with {len(self.attacks)} attacks, "
            f"test telemetry with {len(self.faults)} faults"
        )


def generate(layout: Layout, plan: DemoPlan, seed: int) -> RunTruth:
    """Training and test traffic (different seeds and attack order) and telemetry."""
    from training.synth.scenario import preset
    from training.synth.telemetry import TelemetryScenario, generate_telemetry
    from training.synth.traffic import generate_traffic

    train = preset("demo-train").with_overrides(
        seed=SEED_BASE["traffic_train"] + seed, duration=plan.train_seconds / plan.train_repeats
    )
    if plan.train_repeats > 1:
        train = train.repeated(plan.train_repeats, benign_tail=2 * plan.train_seconds)
    generate_traffic(train, layout.data("traffic-train"))
    test = preset("demo-test").with_overrides(seed=SEED_BASE["traffic_test"] + seed)
    traffic = generate_traffic(test, layout.data("traffic-test"))
    generate_telemetry(
        TelemetryScenario(
            kind=TELEMETRY_KIND,
            seed=SEED_BASE["telemetry_train"] + seed,
            duration=plan.telemetry_train_seconds,
        ),
        layout.data("telemetry-train"),
    )
    tele_scenario = TelemetryScenario(
        kind=TELEMETRY_KIND,
        seed=SEED_BASE["telemetry_test"] + seed,
        duration=plan.telemetry_test_seconds,
    ).with_default_faults()
    telemetry = generate_telemetry(tele_scenario, layout.data("telemetry-test"))
    t0, s0 = test.start_time, tele_scenario.start_time
    return RunTruth(
        pcap=traffic.pcap,
        packets=traffic.packets,
        telemetry_csv=telemetry.path,
        sensors=telemetry.sensors,
        attacks=tuple((a.name, t0 + a.start, t0 + a.stop) for a in test.attacks),
        faults=tuple((f.kind, s0 + f.start, s0 + f.stop) for f in tele_scenario.faults),
        traffic_seconds=test.duration,
        telemetry_seconds=tele_scenario.duration,
    )


# -- stage 2: training ------------------------------------------------------------------------


def train_all(layout: Layout, plan: DemoPlan, seed: int) -> str:
    """The CNN on traffic and the GRU anomaly model on telemetry; one line of test figures."""
    from agent.quiet import quiet_tensorflow

    quiet_tensorflow()
    parts = []
    for name, data, model, window in (
        ("traffic-cnn", "traffic-train", "cnn", plan.traffic_window),
        ("telemetry-gru", "telemetry-train", "gru-anomaly", plan.telemetry_window),
    ):
        metrics = _train(layout.data(data), model, layout.model(name), window, plan, seed)
        parts.append(f"{name} macro-F1 {metrics['model']['macro_f1']:.3f}")
    return ", ".join(parts)


# The traffic recipe the detection benchmark measured (benchmarks/detection.py):
# the attack sequence repeated with a benign stretch after it, contiguous blocks so the model
# sees windows that cross from benign into an attack, those onset windows weighted, and
# per-label thresholds calibrated on benign validation windows. It needs the repeated data:
# --quick (too little of it) trains plainly.
TRAFFIC_RECIPE: dict[str, Any] = {
    "split": "blocks",
    "blocks": 60,
    "onset_weight": 7.0,
    "calibrate_thresholds": True,
    "target_fpr": 0.001,
    "threshold_floor": 0.6,
}


def _train(data: Path, model: str, out: Path, window: int, plan: DemoPlan, seed: int) -> Any:
    """One ``iotids train`` run through its public functions; metrics.json's content."""
    from training.config import ConfigError, load_config
    from training.train import train

    overrides = {
        "dataset": "synthetic",
        "path": str(data),
        "model": model,
        "out": str(out),
        "window": window,
        "epochs": plan.epochs,
        "units": plan.units,
        # the demo's validation split holds a few dozen windows: its macro-F1 plateaus early
        # and noisily, so early stopping would cut training short (measured: 13/13 attacks
        # detected with all epochs, 8/13 with patience 8)
        "patience": plan.epochs,
        "seed": seed,
        "baseline_trees": plan.baseline_trees,
        "verbose": 0,
    }
    if model == "cnn" and plan.tuned:
        overrides |= TRAFFIC_RECIPE
    try:
        return train(load_config(None, overrides))
    except (ConfigError, ValueError, FileNotFoundError) as exc:
        raise DemoError(f"training {model} on {data} failed: {exc}") from exc


# -- stage 3: bundles -------------------------------------------------------------------------


def bundles(layout: Layout, plan: DemoPlan) -> dict[str, dict[str, Any]]:
    """Key pair, int8 bundles, and each bundle's verify report distilled for the summary."""
    import numpy as np

    from converters.bundle import pack
    from converters.signing import generate_keypair
    from converters.verify import verify

    layout.key.parent.mkdir(parents=True, exist_ok=True)
    generate_keypair(layout.key)
    private, public = layout.key.with_suffix(".key"), layout.key.with_suffix(".pub")
    models: dict[str, dict[str, Any]] = {}
    for name in ("traffic-cnn", "telemetry-gru"):
        bundle = layout.bundle(name)
        bundle.parent.mkdir(parents=True, exist_ok=True)
        try:
            pack(layout.model(name), "int8", bundle, sign_key=private)
        except (ValueError, OSError) as exc:
            raise DemoError(f"converting {name} failed: {exc}") from exc
        with np.load(layout.model(name) / "data" / "test.npz", allow_pickle=False) as npz:
            data = (np.asarray(npz["x"], np.float32), np.asarray(npz["y"]).astype(int))
        report = verify(bundle, [public], data, latency_runs=plan.latency_runs)
        bundle.with_suffix(".verify.json").write_text(json.dumps(report, indent=2) + "\n")
        failed = [b["name"] for b in report["budgets"] if not b["ok"]]
        if any(b != "macro-F1 drop" for b in failed):
            raise DemoError(f"{bundle} failed verification: {', '.join(failed)}")
        if failed:
            logger.warning("%s: int8 lost more macro-F1 than the budget allows", name)
        models[name] = _model_summary(report)
    return models


def _model_summary(report: Mapping[str, Any]) -> dict[str, Any]:
    """What the summary shows of one verify report (figures of the int8 model on test data)."""
    quantized = report["metrics"]["quantized"]
    return {
        "bundle_id": report["bundle_id"],
        "bundle_bytes": report["file_size"],
        "model_bytes": report["model_size"],
        "latency_us_p50": report["latency_us"]["p50"],
        "latency_us_p99": report["latency_us"]["p99"],
        "macro_f1": quantized["macro_f1"],
        "test_windows": quantized["n"],
        "per_class": quantized["per_class"],
        "verify_ok": report["ok"],
    }
