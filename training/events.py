"""Event-level evaluation: labelled captures through the agent's own replay, per attack.

Each capture is replayed by :func:`agent.replay.replay_capture` (the gateway's reader, stepper,
model slot and decider; nothing re-implemented here) and its ``new`` events are matched to the
capture's ground truth:

* a folder of captures named as ``iotids train --dataset captures`` expects: the class is the
  file name before the first ``-``; a benign file is benign throughout, any other file is one
  attack from its first packet to its last (or from the packet the folder's ``onsets.json``
  names, when the capture opens with traffic that is not yet the attack);
* a folder written by ``iotids synth traffic`` (``traffic.pcap`` + ``packets.csv``): every
  packet is labelled, and each label's packets form attack intervals (a pause of more than
  ``SPLIT_GAP_S`` starts a new one).

An event is decided when the step that completed its window closed: a time step at its end, a
packet step at its last packet, a ``packets_or_time`` step at its N-th packet or its time
limit. From an attack's start to that moment the report counts seconds and the attack's own
packets. An event belongs to an attack when it is decided inside the attack or within one
window's span after it (the window still holds attack steps); an ``update`` that relabels an
open detection counts as an alarm too (see ``alarm_events``). Every other ``new`` event is a
false alarm, counted per hour of benign traffic.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from training.datasets.base import BENIGN_NAMES
from training.datasets.captures import (
    capture_files,
    folder_onsets,
    label_from_name,
    onset_time,
)

if TYPE_CHECKING:
    from agent.bundle import Bundle
    from agent.calibration import SiteCalibration
    from agent.decide import Event
    from agent.features.packets import PacketTable
    from agent.inference import Debounce

logger = logging.getLogger(__name__)

I64 = npt.NDArray[np.int64]
SPLIT_GAP_S = 10.0  # synthetic labels: a pause this long between one label's packets splits it
DENSE_PACKETS = 40  # the target: a dense attack's first alarm within 40 packets ...
DENSE_SECONDS = 1.0  # ... or 1 s of its start
MAX_DETECTIONS = 2  # ... and at most 2 detections per attack


@dataclass(frozen=True)
class Truth:
    """One capture's ground truth: attack intervals, and every attack packet's time per label."""

    capture: Path
    intervals: list[tuple[str, int, int]]  # (label, start_ns, end_ns), first to last packet
    attack_ts: dict[str, I64]  # label -> sorted timestamps of its packets
    first_ns: int
    last_ns: int


@dataclass
class AttackResult:
    """What the agent made of one attack interval."""

    capture: str
    label: str
    start_s: float  # seconds from the capture's first packet
    duration_s: float
    packets: int
    detected: bool
    detections: int  # ``new`` events credited to this attack
    incidents: int = 0  # the incidents of those (a recurrence counts with the one it recurs)
    seconds_to_alarm: float | None = None
    packets_to_alarm: int | None = None
    reported_label: str | None = None
    reported_category: str | None = None
    # seconds the attack's first DENSE_PACKETS packets span (None: it has fewer). Over
    # DENSE_SECONDS the attack opens as a trickle, not densely; the verdict stays the same.
    opening_s: float | None = None

    @property
    def within_target(self) -> bool:
        """First alarm within DENSE_PACKETS packets or DENSE_SECONDS of the attack's start."""
        if not self.detected:
            return False
        packets, seconds = self.packets_to_alarm or 0, self.seconds_to_alarm or 0.0
        return packets <= DENSE_PACKETS or seconds <= DENSE_SECONDS


@dataclass
class CaptureResult:
    """One replayed capture: its attacks, its false alarms and the detections for the plot."""

    capture: str
    packets: int
    seconds: float
    benign_seconds: float
    false_alarms: int
    false_alarm_incidents: int = 0  # a false alarm recurring is one incident to look at
    attacks: list[AttackResult] = field(default_factory=list)
    detections: list[tuple[float, float, str]] = field(default_factory=list)  # start, end, label


def is_benign(label: str) -> bool:
    return label.lower() in BENIGN_NAMES


def truth_of_capture(path: Path, ts_ns: I64, onset: int = 0) -> Truth:
    """A captures-folder file: benign throughout, or one attack from packet ``onset`` on.

    ``onset`` (from the folder's ``ONSETS_FILE``) counts the packets, in time order, that
    come before the attack itself; they are benign time, and the attack's clock starts after.
    """
    first, last = (int(ts_ns.min()), int(ts_ns.max())) if len(ts_ns) else (0, 0)
    label = label_from_name(path)
    if is_benign(label) or not len(ts_ns):
        return Truth(path, [], {}, first, last)
    onset_time(path.name, ts_ns, onset)  # refuses an onset past the last packet
    mine = np.sort(ts_ns)[onset:]
    return Truth(path, [(label, int(mine[0]), last)], {label: mine}, first, last)


def truth_of_synthetic(folder: Path) -> Truth:
    """An ``iotids synth traffic`` folder: intervals from the per-packet labels."""
    with (folder / "packets.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    ts = np.array([_ns(r["ts"]) for r in rows], np.int64)
    labels = np.array([r["label"] for r in rows], dtype=object)
    intervals: list[tuple[str, int, int]] = []
    attack_ts: dict[str, I64] = {}
    for label in sorted(set(labels.tolist())):
        if is_benign(label):
            continue
        mine = np.sort(ts[labels == label])
        attack_ts[label] = mine
        cuts = np.nonzero(np.diff(mine) > SPLIT_GAP_S * 1e9)[0]
        starts = np.concatenate(([0], cuts + 1))
        ends = np.concatenate((cuts, [len(mine) - 1]))
        intervals += [
            (label, int(mine[s]), int(mine[e])) for s, e in zip(starts, ends, strict=True)
        ]
    intervals.sort(key=lambda item: item[1])
    first, last = (int(ts.min()), int(ts.max())) if len(ts) else (0, 0)
    return Truth(folder / "traffic.pcap", intervals, attack_ts, first, last)


def _ns(text: str) -> int:
    seconds, _, fraction = text.partition(".")
    return int(seconds) * 1_000_000_000 + int((fraction + "000000000")[:9])


def decided_ns(bundle: Bundle, table: PacketTable, events: list[Event]) -> list[int]:
    """When each event's window was complete: the close of the step that ended it."""
    from agent.features.traffic import featurize

    step = bundle.manifest.step
    steps = featurize(table, step)
    if not len(steps) or not len(table):
        return [e.time_ns for e in events]
    ends = np.cumsum(steps.packets)
    clock = np.maximum.accumulate(table.ts_ns.astype(np.int64))  # the featurizer's clock
    last_ts = clock[np.clip(ends - 1, 0, len(clock) - 1)]
    if step.kind == "time":
        close = steps.start_ns + step.size_ns
    elif step.kind == "packets":
        close = last_ts
    else:
        full = steps.packets >= int(step.size)
        close = np.where(full, last_ts, steps.start_ns + step.limit_ns)
    shift = step.size_ns if step.kind == "time" else 0
    out = []
    for event in events:
        k = int(np.searchsorted(steps.start_ns, event.time_ns - shift, side="right")) - 1
        out.append(int(close[min(max(k, 0), len(close) - 1)]))
    return out


def alarm_events(events: list[Event]) -> list[Event]:
    """``new`` events, and ``update`` events that change their detection's label.

    An open detection that takes another attack's label (one incident per attack: the decider
    may update rather than open) is the agent reporting that attack; an update keeping its
    label is not a new alarm, so an alarm open before an attack does not count as its
    detection.
    """
    label: dict[str, str] = {}
    out = []
    for event in events:
        if event.kind == "new" or (event.kind == "update" and label.get(event.id) != event.label):
            out.append(event)
        label[event.id] = event.label
    return out


def evaluate_capture(
    bundle: Bundle,
    truth: Truth,
    debounce: Debounce | None = None,
    calibration: SiteCalibration | None = None,
) -> CaptureResult:
    """Replay one capture through the agent and score its events against ``truth``."""
    from agent.features.capture import read_capture
    from agent.replay import replay_capture

    table = read_capture(truth.capture).packets
    replay = replay_capture(bundle, truth.capture, debounce=debounce, calibration=calibration)
    alarms = alarm_events(replay.events)
    ends = {e.id: e.ended_ns or e.time_ns for e in replay.events if e.kind == "end"}
    decided = decided_ns(bundle, table, alarms)
    limit = bundle.manifest.step.limit_ns or 1_000_000_000
    grace = bundle.manifest.window * limit
    t0 = truth.first_ns
    result = CaptureResult(
        truth.capture.name if truth.capture.name != "traffic.pcap" else truth.capture.parent.name,
        int(replay.source.packets),
        (truth.last_ns - t0) / 1e9,
        0.0,
        0,
    )
    is_new = np.array([e.kind == "new" for e in alarms], bool)
    credited = np.zeros(len(alarms), bool)
    for label, start, end in truth.intervals:
        hits = [i for i, d in enumerate(decided) if start <= d <= end + grace]
        credited[hits] = True
        attack = AttackResult(
            result.capture,
            label,
            (start - t0) / 1e9,
            (end - start) / 1e9,
            int(((truth.attack_ts[label] >= start) & (truth.attack_ts[label] <= end)).sum()),
            bool(hits),
            int(is_new[hits].sum()) if hits else 0,
            len({alarms[i].incident_id for i in hits if is_new[i]}),
            opening_s=opening_seconds(truth.attack_ts[label], start, end),
        )
        if hits:
            first = min(hits, key=lambda i: decided[i])
            attack.seconds_to_alarm = round(max(decided[first] - start, 0) / 1e9, 6)
            mine = truth.attack_ts[label]
            attack.packets_to_alarm = int(((mine >= start) & (mine <= decided[first])).sum())
            attack.reported_label = alarms[first].label
            attack.reported_category = alarms[first].category
        result.attacks.append(attack)
    result.benign_seconds = (truth.last_ns - t0 - _covered(truth, grace)) / 1e9
    result.false_alarms = int((~credited & is_new).sum())
    false = np.flatnonzero(~credited & is_new)
    result.false_alarm_incidents = len({alarms[i].incident_id for i in false})
    result.detections = [
        ((e.time_ns - t0) / 1e9, (ends.get(e.id, e.time_ns) - t0) / 1e9, e.label)
        for e in alarms
        if e.kind == "new"
    ]
    return result


def opening_seconds(ts_ns: I64, start: int, end: int) -> float | None:
    """Seconds from an attack's first packet to its DENSE_PACKETS-th (None: fewer packets)."""
    lo = int(np.searchsorted(ts_ns, start, side="left"))
    hi = int(np.searchsorted(ts_ns, end, side="right"))
    if hi - lo < DENSE_PACKETS:
        return None
    return round(int(ts_ns[lo + DENSE_PACKETS - 1] - ts_ns[lo]) / 1e9, 6)


def opening_phrase(seconds: float | None) -> str:
    """An attack's opening for a reader: a trickle when its first packets outlast the target."""
    if seconds is None:
        return f"- (under {DENSE_PACKETS})"
    return f"{seconds:.3f}" + (" (trickle)" if seconds > DENSE_SECONDS else "")


def _covered(truth: Truth, grace: int) -> int:
    """Nanoseconds inside some attack or its grace after it (overlaps counted once)."""
    total, reach = 0, truth.first_ns
    for _, start, end in sorted(truth.intervals, key=lambda item: item[1]):
        stop = min(end + grace, truth.last_ns)
        begin = max(start, reach)
        if stop > begin:
            total += stop - begin
            reach = stop
    return total


def truths(path: str | Path) -> list[Truth]:
    """The ground truth of every capture under ``path`` (synthetic folders included)."""
    from agent.features.capture import read_capture

    root = Path(path)
    if (root / "packets.csv").exists() and (root / "traffic.pcap").exists():
        return [truth_of_synthetic(root)]
    found = []
    if root.is_dir():
        for sub in sorted(p for p in root.iterdir() if p.is_dir()):
            if (sub / "packets.csv").exists() and (sub / "traffic.pcap").exists():
                found.append(truth_of_synthetic(sub))
        if found and not any(root.glob("*.pcap*")):
            return found
    files = capture_files(root)
    onsets = folder_onsets(root, files)
    for file in files:
        packets = read_capture(file, progress=True).packets
        ts = packets.ts_ns.astype(np.int64)
        found.append(truth_of_capture(file, ts, onsets.get(file.name, 0)))
    return found


def evaluate_events(
    bundle: Bundle,
    path: str | Path,
    debounce: Debounce | None = None,
    calibration: SiteCalibration | None = None,
) -> dict[str, Any]:
    """Every capture under ``path`` replayed and scored; the JSON document of the report.

    With a site ``calibration`` the agent decides as it would on that site (its thresholds in
    force): whether calibrating on a site's traffic still leaves these attacks detected.
    """
    from agent.inference import Debounce
    from agent.progress import Progress

    found = truths(path)
    captures = []
    with Progress("replaying captures", len(found), "captures") as bar:
        for truth in found:
            bar.update(note=Path(truth.capture).name)
            captures.append(evaluate_capture(bundle, truth, debounce, calibration))
            bar.update(advance=1)
    result = summarize(bundle, captures)
    used = asdict(debounce or Debounce())
    result["debounce"] = {k: v if v != float("inf") else None for k, v in used.items()}
    result["calibration"] = calibration.to_dict() if calibration is not None else None
    return result


def summarize(bundle: Bundle, captures: list[CaptureResult]) -> dict[str, Any]:
    """Per-capture results and the totals the targets are judged on."""
    attacks = [a for c in captures for a in c.attacks]
    found = [a for a in attacks if a.detected]
    hours = sum(c.benign_seconds for c in captures) / 3600
    alarms = sum(c.false_alarms for c in captures)
    m = bundle.manifest

    def median(values: list[float]) -> float | None:
        return float(np.median(values)) if values else None

    return {
        "bundle": m.bundle_id,
        "step": m.step.to_dict(),
        "window": m.window,
        "padding": m.padding,
        "captures": [
            asdict(c)
            | {"attacks": [asdict(a) | {"within_target": a.within_target} for a in c.attacks]}
            for c in captures
        ],
        "summary": {
            "attacks": len(attacks),
            "detected": len(found),
            "detection_rate": len(found) / len(attacks) if attacks else None,
            "median_packets_to_alarm": median([float(a.packets_to_alarm or 0) for a in found]),
            "median_seconds_to_alarm": median([float(a.seconds_to_alarm or 0) for a in found]),
            "within_target": sum(a.within_target for a in attacks),
            "max_detections_per_attack": max((a.detections for a in attacks), default=0),
            "max_incidents_per_attack": max((a.incidents for a in attacks), default=0),
            "attacks_over_detection_target": sum(a.detections > MAX_DETECTIONS for a in attacks),
            "benign_hours": round(hours, 6),
            "false_alarms": alarms,
            "false_alarm_incidents": sum(c.false_alarm_incidents for c in captures),
            "false_alarms_per_hour": alarms / hours if hours > 0 else None,
        },
    }
