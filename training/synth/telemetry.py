"""Synthetic sensor telemetry with injected attacks and faults, in the TON_IoT table shape.

Industrial: a load profile (shifts over the day plus set-point changes) drives the rotation
speed through a motor lag, speed drives temperature through a slower thermal lag on top of a
daily ambient cycle, pressure follows load; every sensor has noise. Smart home: door lock,
door, motion, light and camera states follow a daily routine (asleep, away at work, evenings).
Faults overwrite a window of rows and label them (``label`` 1, ``type`` the fault name).
A DoS on the sensor link keeps its rows with NaN readings (written ``nan``), so labels stay
aligned and the featurizer sees the readings go stale.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

logger = logging.getLogger(__name__)

F64 = npt.NDArray[np.float64]

KINDS = ("industrial", "smarthome")
SENSORS = {
    "industrial": ("temperature", "pressure", "rotation_speed"),
    "smarthome": ("door_lock", "door", "motion", "light", "camera"),
}
FAULTS = {
    "industrial": ("spoofing", "replay", "drift", "stuck_at", "jump", "dos"),
    "smarthome": ("spoofing", "replay", "stuck_at", "impossible_state", "dos"),
}
NORMAL = "normal"
DAY = 86_400.0
MORNING_START = 1_699_941_600  # 2023-11-14 06:00 UTC: short runs still see a day's activity
MIN_STEPS = 100
CSV_NAME = "telemetry.csv"
SCENARIO_JSON = "scenario.json"


class TelemetryError(ValueError):
    """A telemetry scenario value is out of range; the message names it."""


@dataclass(frozen=True)
class FaultSpec:
    """One injected attack or fault: rows in [start, stop) seconds, on ``sensor`` or all."""

    kind: str
    start: float
    stop: float
    sensor: str = ""  # "" = the fault's natural target(s)


@dataclass(frozen=True)
class TelemetryScenario:
    """A telemetry run: reproducible from its seed."""

    kind: str = "industrial"
    seed: int = 0
    duration: float = DAY
    step: float = 1.0
    start_time: int = MORNING_START
    faults: tuple[FaultSpec, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise TelemetryError(f"kind: must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if not self.step > 0:
            raise TelemetryError(f"step: must be > 0, got {self.step}")
        if not self.duration >= MIN_STEPS * self.step:
            raise TelemetryError(
                f"duration: must cover at least {MIN_STEPS} steps ({MIN_STEPS * self.step:g} s), "
                f"got {self.duration}"
            )
        for i, fault in enumerate(self.faults):
            if fault.kind not in FAULTS[self.kind]:
                valid = ", ".join(FAULTS[self.kind])
                raise TelemetryError(
                    f"faults[{i}].kind: must be one of {valid}, got {fault.kind!r}"
                )
            if not 0 <= fault.start < fault.stop <= self.duration:
                raise TelemetryError(
                    f"faults[{i}].stop: need 0 <= start < stop <= duration, got "
                    f"{fault.start}..{fault.stop}"
                )
            if fault.sensor and fault.sensor not in SENSORS[self.kind]:
                raise TelemetryError(f"faults[{i}].sensor: unknown sensor {fault.sensor!r}")

    @property
    def sensors(self) -> tuple[str, ...]:
        return SENSORS[self.kind]

    def with_default_faults(self) -> TelemetryScenario:
        """This scenario with a seeded schedule of every fault kind when it names none."""
        if self.faults:
            return self
        return dataclasses.replace(self, faults=default_faults(self.kind, self.duration, self.seed))

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2) + "\n"


def default_faults(kind: str, duration: float, seed: int) -> tuple[FaultSpec, ...]:
    """Every fault kind twice, in seeded order, in non-overlapping slots after the first 10%."""
    rng = np.random.default_rng([seed, 0xFA])
    kinds = list(FAULTS[kind]) * 2
    order = [kinds[i] for i in rng.permutation(len(kinds))]
    slot = 0.85 * duration / len(order)
    length = min(max(0.2 * slot, 1.0), 1800.0)
    faults = []
    for i, name in enumerate(order):
        start = 0.1 * duration + i * slot + rng.uniform(0, slot - length)
        faults.append(FaultSpec(name, round(start, 3), round(start + length, 3)))
    return tuple(faults)


@dataclass(frozen=True)
class TelemetryResult:
    """What ``generate_telemetry`` wrote."""

    path: Path
    timestamp: F64  # epoch seconds
    values: F64  # (rows, sensors); NaN where the link was down
    sensors: tuple[str, ...]
    label: npt.NDArray[np.uint8]
    type: tuple[str, ...]  # per row: "normal" or the fault name


def _lag(signal: F64, tau_steps: float, start: float) -> F64:
    """First-order lag (an RC filter): how motors and thermal masses follow their input."""
    alpha = 1.0 / max(tau_steps, 1.0)
    out = np.empty_like(signal)
    value = start
    for i, x in enumerate(signal.tolist()):
        value += alpha * (x - value)
        out[i] = value
    return out


def _hours(timestamp: F64) -> F64:
    return (timestamp % DAY) / 3600.0


def industrial(rng: np.random.Generator, timestamp: F64, step: float) -> F64:
    """Clean temperature (°C), pressure (bar) and rotation speed (rpm), coupled through load."""
    n = timestamp.size
    hours = _hours(timestamp)
    shift = np.where((hours >= 6) & (hours < 22), 0.65, 0.25)  # two shifts, a quiet night
    changes = rng.random(n) < step / 900.0  # a new set-point every ~15 min
    setpoint = rng.uniform(-0.25, 0.25, n)[
        np.maximum.accumulate(np.where(changes, np.arange(n), 0))
    ]
    wobble = _lag(rng.normal(0, 0.08, n), 30.0 / step, 0.0)
    load = np.clip(shift + setpoint + wobble, 0.05, 1.0)
    speed = _lag(600.0 + 2400.0 * load, 20.0 / step, 600.0 + 2400.0 * load[0])
    ambient = 21.0 + 4.0 * np.sin(2 * np.pi * (hours - 9.0) / 24.0)
    heat = _lag(speed, 240.0 / step, speed[0])
    temperature = ambient + 0.013 * heat
    pressure = _lag(1.5 + 4.0 * load, 10.0 / step, 1.5 + 4.0 * load[0])
    return np.stack(
        [
            temperature + rng.normal(0, 0.15, n),
            pressure + rng.normal(0, 0.03, n),
            speed + rng.normal(0, 6.0, n),
        ],
        axis=1,
    )


def _hold(events: npt.NDArray[np.bool_], steps: int) -> npt.NDArray[np.bool_]:
    """True for ``steps`` rows after each event (a PIR sensor's hold time, a light's timer)."""
    count = np.cumsum(events.astype(np.int64))
    before = (
        np.concatenate([np.zeros(steps, np.int64), count[:-steps]]) if steps < count.size else 0
    )
    return (count - before) > 0


def smarthome(rng: np.random.Generator, timestamp: F64, step: float) -> F64:
    """Clean door_lock, door, motion, light, camera states (0/1) from a daily routine."""
    n = timestamp.size
    hours = _hours(timestamp)
    away = (hours >= 8.5) & (hours < 17.5)
    awake = (hours >= 6.5) & (hours < 23.0)
    p_motion = np.where(away, 0.0002, np.where(awake, 0.04, 0.0008)) * step
    motion = _hold(rng.random(n) < p_motion, max(1, round(30 / step)))
    dark = (hours >= 17.0) | (hours < 7.5)
    light = _hold(motion & dark, max(1, round(120 / step)))
    door = np.zeros(n, dtype=np.bool_)
    unlocked = np.zeros(n, dtype=np.bool_)
    p_door = np.where(awake & ~away, 1 / 1800.0, 0.0) * step
    leave_or_return = np.abs(hours[:, None] - np.array([8.5, 17.5])[None, :]) < step / 3600.0 / 2
    starts = np.flatnonzero((rng.random(n) < p_door) | leave_or_return.any(axis=1))
    for s in starts.tolist():
        opens = s + max(1, round(rng.uniform(2, 6) / step))
        closes = opens + max(1, round(rng.uniform(4, 20) / step))
        unlocked[s : closes + max(1, round(5 / step))] = True
        door[opens:closes] = True
    armed = away | ~awake
    camera = _hold((motion | door) & armed, max(1, round(60 / step)))
    states = [~unlocked, door, motion, light, camera]
    return np.stack([s.astype(np.float64) for s in states], axis=1)


Injector = Callable[[np.random.Generator, F64, slice, list[int], FaultSpec], None]


def _spoofing(rng: np.random.Generator, v: F64, rows: slice, cols: list[int], f: FaultSpec) -> None:
    """Plausible readings that ignore the process: a calm value with noise, or random states."""
    n = rows.stop - rows.start
    for c in cols:
        history = v[: rows.start, c]
        if np.all(np.isin(history[~np.isnan(history)], (0.0, 1.0))):
            v[rows, c] = (rng.random(n) < 0.5).astype(np.float64)
        else:
            v[rows, c] = np.nanmedian(history) + rng.normal(0, np.nanstd(history) * 0.05, n)


def _replay(rng: np.random.Generator, v: F64, rows: slice, cols: list[int], f: FaultSpec) -> None:
    """Every sensor replays an earlier segment of the same length."""
    n = rows.stop - rows.start
    src = int(rng.integers(0, max(1, rows.start - n)))
    v[rows, :] = v[src : src + n, :]


def _drift(rng: np.random.Generator, v: F64, rows: slice, cols: list[int], f: FaultSpec) -> None:
    """A slow calibration drift: a ramp up to 5% of the sensor's level."""
    n = rows.stop - rows.start
    for c in cols:
        v[rows, c] += np.linspace(0, 0.05 * abs(np.nanmean(v[:, c])) + 1e-3, n)


def _stuck(rng: np.random.Generator, v: F64, rows: slice, cols: list[int], f: FaultSpec) -> None:
    for c in cols:
        v[rows, c] = v[rows.start, c]


def _jump(rng: np.random.Generator, v: F64, rows: slice, cols: list[int], f: FaultSpec) -> None:
    """A sudden offset of 15–25% of the sensor's level."""
    for c in cols:
        v[rows, c] += rng.choice([-1.0, 1.0]) * rng.uniform(0.15, 0.25) * abs(np.nanmean(v[:, c]))


def _dos(rng: np.random.Generator, v: F64, rows: slice, cols: list[int], f: FaultSpec) -> None:
    v[rows, :] = np.nan


def _impossible(
    rng: np.random.Generator, v: F64, rows: slice, cols: list[int], f: FaultSpec
) -> None:
    """The door opens while the lock reports locked (forged door / lock events)."""
    lock, door = SENSORS["smarthome"].index("door_lock"), SENSORS["smarthome"].index("door")
    v[rows, lock] = 1.0
    n = rows.stop - rows.start
    pulses = np.zeros(n, dtype=np.bool_)
    pulses[:: max(2, n // 4)] = True
    v[rows, door] = _hold(pulses, max(1, n // 8)).astype(np.float64)


INJECTORS: dict[str, Injector] = {
    "spoofing": _spoofing,
    "replay": _replay,
    "drift": _drift,
    "stuck_at": _stuck,
    "jump": _jump,
    "dos": _dos,
    "impossible_state": _impossible,
}
DEFAULT_TARGET = {
    "industrial": {
        "spoofing": "temperature",
        "drift": "pressure",
        "stuck_at": "rotation_speed",
        "jump": "temperature",
    },
    "smarthome": {"spoofing": "motion", "stuck_at": "camera"},
}


def synthesize_telemetry(
    scenario: TelemetryScenario,
) -> tuple[F64, F64, npt.NDArray[np.uint8], list[str]]:
    """Timestamps, readings (rows, sensors), labels and types for a scenario."""
    scenario = scenario.with_default_faults()
    rng = np.random.default_rng(scenario.seed)
    n = round(scenario.duration / scenario.step)
    timestamp: F64 = scenario.start_time + np.arange(n, dtype=np.float64) * scenario.step
    model = industrial if scenario.kind == "industrial" else smarthome
    values = model(rng, timestamp, scenario.step)
    label = np.zeros(n, dtype=np.uint8)
    types = [NORMAL] * n
    for fault in scenario.faults:
        rows = slice(int(fault.start / scenario.step), int(np.ceil(fault.stop / scenario.step)))
        target = fault.sensor or DEFAULT_TARGET[scenario.kind].get(fault.kind, "")
        cols = [scenario.sensors.index(target)] if target else list(range(len(scenario.sensors)))
        INJECTORS[fault.kind](rng, values, rows, cols, fault)
        label[rows] = 1
        types[rows] = [fault.kind] * (rows.stop - rows.start)
    return timestamp, values, label, types


def _cell(value: float, binary: bool) -> str:
    if value != value:  # NaN: the link was down
        return "nan"
    return str(int(value)) if binary else f"{value:.3f}"


def generate_telemetry(scenario: TelemetryScenario, out_dir: Path) -> TelemetryResult:
    """Write ``telemetry.csv`` (timestamp, sensors..., label, type) and ``scenario.json``."""
    scenario = scenario.with_default_faults()
    timestamp, values, label, types = synthesize_telemetry(scenario)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / CSV_NAME
    binary = scenario.kind == "smarthome"
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write(",".join(["timestamp", *scenario.sensors, "label", "type"]) + "\n")
        for ts, row, lab, typ in zip(
            timestamp.tolist(), values.tolist(), label.tolist(), types, strict=True
        ):
            cells = ",".join(_cell(v, binary) for v in row)
            out.write(f"{ts:.3f},{cells},{lab},{typ}\n")
    (out_dir / SCENARIO_JSON).write_text(scenario.to_json(), encoding="utf-8")
    logger.debug("wrote %d telemetry rows (%d labelled) to %s", len(types), int(label.sum()), path)
    return TelemetryResult(path, timestamp, values, scenario.sensors, label, tuple(types))


def scenario_from_args(**values: Any) -> TelemetryScenario:
    """A scenario from CLI values, dropping the ones left unset."""
    return TelemetryScenario(**{k: v for k, v in values.items() if v is not None})
