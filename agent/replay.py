"""Offline replay: one capture through one bundle on a single thread (forensics, benchmarks).

The same reader, stepper, model slot and decision logic as the running agent, without its
threads or queue, so what a replay raises is what the gateway would have raised.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from agent.bundle import Bundle
from agent.calibration import SiteCalibration
from agent.decide import Event
from agent.inference import Debounce, ModelSlot, ScoreHook
from agent.pipeline import Pipeline
from agent.report import Sink
from agent.sources import SourceStats


@dataclass(frozen=True)
class ReplayResult:
    """What an offline replay saw and raised."""

    events: list[Event]
    source: SourceStats
    windows_scored: int
    bundle_id: str
    seconds: float

    @property
    def packets_per_s(self) -> float:
        """Decoded packets per wall-clock second, end to end."""
        return self.source.packets / self.seconds if self.seconds > 0 else 0.0


def replay_capture(
    bundle: Bundle,
    capture: str | Path,
    *,
    realtime: bool = False,
    debounce: Debounce | None = None,
    sinks: Sequence[Sink] = (),
    calibration: SiteCalibration | None = None,
    on_scores: ScoreHook | None = None,
    progress: bool = False,
) -> ReplayResult:
    """Single thread: capture -> steps -> windows -> model -> events (forensics, benchmarks).

    ``progress`` shows the share of the file replayed (agent.progress: a bar on a terminal, a
    line every few seconds in a log, nothing under ``-q``).
    """
    from agent.config import PcapOptions, SourceConfig
    from agent.progress import Progress
    from agent.sources.pcap import PcapSource

    step = bundle.manifest.step
    step_text = step.text
    options = PcapOptions(str(capture), realtime=realtime)
    source = PcapSource(SourceConfig("capture", "pcap", options, step_text))
    slot = ModelSlot(
        "replay",
        source.name,
        source.feature_set,
        source.step,
        bundle,
        debounce,
        calibration=calibration,
    )
    slot.on_scores = on_scores  # offline calibration collects the windows' scores
    pipeline = Pipeline({source.name: [slot]}, sinks)
    events: list[Event] = []
    began = time.perf_counter()
    last_ns: int | None = None
    size = Path(capture).stat().st_size if progress else 0
    bar = Progress(f"replaying {Path(capture).name}", size, "B") if progress else None
    try:
        while not source.finished:
            batch = source.read(timeout=1.0)
            if batch is not None and len(batch):
                events += pipeline.process(source.name, batch)
                # the last step's end: its time limit (time steps: their length; a packet
                # step without one ends at its start as far as the replay can tell)
                last_ns = int(batch.start_ns[-1]) + source.step.limit_ns
                if bar is not None:
                    packets = source.stats.packets
                    bar.update(source.file_read, note=f"{packets:,} packets, {len(events)} events")
    finally:
        source.close()
        if bar is not None:
            bar.close()
    events += pipeline.finish(last_ns)
    seconds = time.perf_counter() - began
    return ReplayResult(events, source.stats, slot.windows_scored, slot.bundle_id, seconds)
