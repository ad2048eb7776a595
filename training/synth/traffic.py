"""Gateway traffic with ground truth: benign life plus the scenario's attacks, to pcap and CSV.

``synthesize`` builds the frames in memory (what tests and the demo inspect);
``generate_traffic`` also writes ``traffic.pcap``, ``packets.csv`` (a label per packet in file
order), ``steps.csv`` (a label per step) and ``scenario.json`` (the resolved scenario).
"""

from __future__ import annotations

import csv
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from training.synth.benign import benign_traffic
from training.synth.builders import BUILDERS
from training.synth.flows import Context, Network
from training.synth.frames import Frames, PayloadBook
from training.synth.pcap_writer import write_pcap
from training.synth.scenario import BENIGN_LABEL, TrafficScenario, scenario_from_dict

logger = logging.getLogger(__name__)

PCAP_NAME = "traffic.pcap"
PACKETS_CSV = "packets.csv"
STEPS_CSV = "steps.csv"
SCENARIO_JSON = "scenario.json"


@dataclass(frozen=True)
class SynthTraffic:
    """Frames in capture order, their payload templates and the label names (id = index)."""

    frames: Frames
    templates: npt.NDArray[np.uint8]
    label_names: tuple[str, ...]

    @property
    def labels(self) -> npt.NDArray[np.uint8]:
        """Per-packet label id, aligned with the pcap's packet order."""
        return self.frames.label


@dataclass(frozen=True)
class TrafficResult:
    """What ``generate_traffic`` wrote and the ground truth it holds."""

    out_dir: Path
    pcap: Path
    packets: int
    labels: npt.NDArray[np.uint8]  # per packet, pcap order; index into label_names
    label_names: tuple[str, ...]
    step_start: npt.NDArray[np.float64]  # epoch seconds
    step_labels: npt.NDArray[np.uint8]
    seconds: float  # wall time spent generating and writing

    @property
    def packets_per_second(self) -> float:
        return self.packets / self.seconds if self.seconds > 0 else float("inf")


def synthesize(
    scenario: TrafficScenario, done: Callable[[str], None] = lambda part: None
) -> SynthTraffic:
    """All frames of a scenario, time-ordered and cut to its duration; deterministic per seed.

    ``done`` is told each part (the benign traffic, each attack) as it is built.
    """
    names = scenario.label_names()
    book = PayloadBook(scenario.seed)
    ctx = Context(
        rng=np.random.default_rng(scenario.seed),
        net=Network(scenario.network),
        book=book,
        start_time=scenario.start_time,
        duration=scenario.duration,
    )
    parts = [benign_traffic(ctx, scenario.benign)]
    done("benign")
    for index, attack in enumerate(scenario.attacks):
        # a child stream per attack: editing one attack leaves the others' packets unchanged
        child = Context(
            np.random.default_rng([scenario.seed, index + 1]),
            ctx.net,
            book,
            ctx.start_time,
            ctx.duration,
        )
        parts.append(BUILDERS[attack.kind](child, attack, names.index(attack.name)))
        done(attack.name)
    frames = Frames.concat(parts).sorted_by_time()
    start_us = scenario.start_time * 1_000_000
    inside = (frames.ts_us >= start_us) & (frames.ts_us < start_us + round(scenario.duration * 1e6))
    return SynthTraffic(frames.take(inside), book.matrix(), names)


def step_labels(
    ts_us: npt.NDArray[np.int64],
    labels: npt.NDArray[np.uint8],
    start_time: int,
    duration: float,
    step: float,
    n_labels: int,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.uint8]]:
    """Per step: the attack label with most packets if any attack packet is in it, else benign."""
    step_us = round(step * 1e6)
    count = int(np.ceil(round(duration * 1e6) / step_us))
    index = (ts_us - start_time * 1_000_000) // step_us
    table = np.bincount(index * n_labels + labels, minlength=count * n_labels)
    table = table[: count * n_labels].reshape(count, n_labels)
    attack = table[:, 1:]
    chosen = np.zeros(count, dtype=np.uint8)
    if n_labels > 1:
        chosen = np.where(attack.sum(axis=1) > 0, attack.argmax(axis=1) + 1, 0).astype(np.uint8)
    starts: npt.NDArray[np.float64] = start_time + np.arange(count, dtype=np.float64) * (
        step_us / 1e6
    )
    return starts, chosen


def generate_traffic(scenario: TrafficScenario, out_dir: Path) -> TrafficResult:
    """Build the scenario and write pcap, packet / step labels and the scenario into ``out_dir``."""
    from agent.progress import Progress

    began = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    # parts: the benign traffic, each attack, then the pcap and its labels written
    with Progress("synth traffic", len(scenario.attacks) + 3, "parts") as bar:
        synth = synthesize(scenario, lambda part: bar.update(advance=1, note=part))
        frames = synth.frames
        pcap = out_dir / PCAP_NAME
        size = write_pcap(pcap, frames, synth.templates)
        bar.update(advance=1, note=PCAP_NAME)
        _write_packets_csv(out_dir / PACKETS_CSV, frames.ts_us, frames.label, synth.label_names)
        bar.update(advance=1, note=PACKETS_CSV)
    starts, chosen = step_labels(
        frames.ts_us,
        frames.label,
        scenario.start_time,
        scenario.duration,
        scenario.step,
        len(synth.label_names),
    )
    with (out_dir / STEPS_CSV).open("w", newline="", encoding="utf-8") as out:
        out.write("step_start,label\n")
        out.writelines(
            f"{s:.6f},{synth.label_names[c]}\n" for s, c in zip(starts, chosen, strict=True)
        )
    (out_dir / SCENARIO_JSON).write_text(scenario.to_json(), encoding="utf-8")
    seconds = time.perf_counter() - began
    logger.debug("wrote %d packets (%d bytes) to %s in %.2f s", len(frames), size, pcap, seconds)
    return TrafficResult(
        out_dir, pcap, len(frames), frames.label, synth.label_names, starts, chosen, seconds
    )


def _write_packets_csv(
    path: Path, ts_us: npt.NDArray[np.int64], labels: npt.NDArray[np.uint8], names: tuple[str, ...]
) -> None:
    sec = (ts_us // 1_000_000).tolist()
    usec = (ts_us % 1_000_000).tolist()
    name_of = [names[i] for i in labels.tolist()]
    with path.open("w", newline="", encoding="utf-8") as out:
        out.write("index,ts,label\n")
        out.writelines(
            f"{i},{s}.{u:06d},{n}\n"
            for i, (s, u, n) in enumerate(zip(sec, usec, name_of, strict=True))
        )


def read_labels(out_dir: Path) -> tuple[npt.NDArray[np.uint8], tuple[str, ...]]:
    """Per-packet label ids (pcap order) and label names from a ``generate_traffic`` directory."""
    scenario = scenario_from_dict(json.loads((out_dir / SCENARIO_JSON).read_text(encoding="utf-8")))
    names = scenario.label_names()
    ids = {name: i for i, name in enumerate(names)}
    with (out_dir / PACKETS_CSV).open(newline="", encoding="utf-8") as f:
        rows = csv.DictReader(f)
        labels = np.fromiter((ids[row["label"]] for row in rows), dtype=np.uint8)
    return labels, names


__all__ = [
    "BENIGN_LABEL",
    "SynthTraffic",
    "TrafficResult",
    "generate_traffic",
    "read_labels",
    "step_labels",
    "synthesize",
]
