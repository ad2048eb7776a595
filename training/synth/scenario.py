"""Typed traffic scenarios: what the generator builds, loaded from JSON and checked field by field.

A scenario is the whole recipe of a run (seed, duration, benign devices, attacks), so the
``scenario.json`` written beside a pcap reproduces it byte for byte. Bad files raise one
:class:`ScenarioError` whose message names the field, e.g.
``attacks[2].intensity: must be > 0, got -5``. Every key but an attack's kind, start, stop and
intensity is optional::

    {"seed": 7, "duration": 120,
     "benign": {"mqtt_sensors": 4, "cameras": 1},
     "attacks": [{"kind": "syn_flood", "start": 30, "stop": 60, "intensity": 2000},
                 {"kind": "tcp_syn_scan", "start": 70, "stop": 110, "intensity": 2,
                  "label": "slow_scan", "hosts": 3}]}
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

ATTACK_KINDS = (
    "syn_flood",
    "udp_flood",
    "icmp_flood",
    "http_get_flood",
    "tcp_syn_scan",
    "udp_scan",
    "telnet_bruteforce",
    "ssh_bruteforce",
    "mqtt_connect_flood",
    "mqtt_bruteforce",
    "mqtt_publish_flood",
    "mqtt_slowdos",
    "arp_spoof",
)
BENIGN_LABEL = "benign"
DEFAULT_START_TIME = 1_700_000_000  # a fixed epoch second: the same seed gives the same bytes


class ScenarioError(ValueError):
    """A scenario field is missing, of the wrong type or out of range; the message names it."""


@dataclass(frozen=True)
class BenignSpec:
    """The gateway's everyday life: how many devices of each kind and how chatty they are."""

    mqtt_sensors: int = 6
    publish_interval: float = 5.0  # mean seconds between a sensor's PUBLISH messages
    keepalive: int = 30  # MQTT keep-alive seconds (idle sensors send PINGREQ)
    cameras: int = 1
    camera_fps: float = 25.0
    https_clients: int = 2
    ssh_admin: bool = True
    firmware_downloads: int = 1


@dataclass(frozen=True)
class AttackSpec:
    """One attack: its kind, active window (seconds from scenario start) and packets/s."""

    kind: str
    start: float
    stop: float
    intensity: float  # attack packets per second, replies included
    label: str = ""  # defaults to ``kind``
    target: str = ""  # defaults to the kind's natural victim (the broker, a camera...)
    port: int = 0  # destination port for kinds that hit one; 0 = the kind's default
    sources: int = 0  # attacking hosts for non-spoofed kinds; 0 = the kind's default
    hosts: int = 1  # scans: how many target hosts

    @property
    def name(self) -> str:
        """The label written into the ground truth."""
        return self.label or self.kind


@dataclass(frozen=True)
class TrafficScenario:
    """A whole traffic run: reproducible from its seed."""

    seed: int = 0
    duration: float = 300.0
    start_time: int = DEFAULT_START_TIME  # epoch seconds of the first step
    step: float = 1.0  # seconds per labelled step in steps.csv
    network: str = "192.168.50.0/24"  # the LAN; the gateway / broker is its first host
    benign: BenignSpec = field(default_factory=BenignSpec)
    attacks: tuple[AttackSpec, ...] = ()

    def label_names(self) -> tuple[str, ...]:
        """``benign`` then each attack label once, in scenario order: index = label id."""
        names = [BENIGN_LABEL]
        for attack in self.attacks:
            if attack.name not in names:
                names.append(attack.name)
        return tuple(names)

    def with_overrides(
        self, seed: int | None = None, duration: float | None = None
    ) -> TrafficScenario:
        """A copy with another seed and/or duration; attack windows scale with the duration."""
        result = self
        if seed is not None:
            result = dataclasses.replace(result, seed=seed)
        if duration is not None:
            if not duration > 0:
                raise ScenarioError(f"duration: must be > 0, got {duration}")
            k = duration / self.duration
            attacks = tuple(
                dataclasses.replace(a, start=round(a.start * k, 3), stop=round(a.stop * k, 3))
                for a in self.attacks
            )
            result = dataclasses.replace(result, duration=duration, attacks=attacks)
        return result

    def repeated(self, times: int, benign_tail: float = 0.0) -> TrafficScenario:
        """The attack sequence ``times`` over, back to back, then ``benign_tail`` s of benign.

        Training data for detectors: with one run per attack kind a block split can leave a
        kind out of training, and an attack-heavy timeline teaches too little everyday traffic.
        """
        if times < 1:
            raise ScenarioError(f"times: must be >= 1, got {times}")
        if benign_tail < 0:
            raise ScenarioError(f"benign_tail: must be >= 0, got {benign_tail}")
        attacks = tuple(
            dataclasses.replace(
                a, start=a.start + k * self.duration, stop=a.stop + k * self.duration
            )
            for k in range(times)
            for a in self.attacks
        )
        duration = self.duration * times + benign_tail
        return dataclasses.replace(self, duration=duration, attacks=attacks)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready form (what ``scenario.json`` holds)."""
        data = dataclasses.asdict(self)
        data["attacks"] = [dataclasses.asdict(a) for a in self.attacks]
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n"


def _number(path: str, value: Any, *, integer: bool = False) -> float:
    """``value`` as a number, or a ScenarioError naming ``path``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        kind = "an integer" if integer else "a number"
        raise ScenarioError(f"{path}: must be {kind}, got {value!r}")
    if integer and int(value) != value:
        raise ScenarioError(f"{path}: must be an integer, got {value!r}")
    return float(value)


def _check_keys(path: str, data: Any, cls: type) -> dict[str, Any]:
    """``data`` as a dict whose keys are all fields of ``cls``."""
    where = f"{path}: " if path else ""
    if not isinstance(data, dict):
        raise ScenarioError(f"{where or 'scenario: '}must be a JSON object, got {data!r}")
    known = [f.name for f in fields(cls)]
    for key in data:
        if key not in known:
            prefix = f"{path}.{key}" if path else key
            raise ScenarioError(f"{prefix}: unknown key (known: {', '.join(known)})")
    return dict(data)


def _positive(path: str, value: Any, *, integer: bool = False, allow_zero: bool = False) -> float:
    number = _number(path, value, integer=integer)
    if number < 0 or (number == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ScenarioError(f"{path}: must be {bound}, got {value!r}")
    return number


def _benign(data: Any) -> BenignSpec:
    raw = _check_keys("benign", data, BenignSpec)
    values: dict[str, Any] = {}
    for key, value in raw.items():
        path = f"benign.{key}"
        if key == "ssh_admin":
            if not isinstance(value, bool):
                raise ScenarioError(f"{path}: must be true or false, got {value!r}")
            values[key] = value
        elif key in ("publish_interval", "camera_fps"):
            values[key] = _positive(path, value)
        else:
            values[key] = int(_positive(path, value, integer=True, allow_zero=key != "keepalive"))
    return BenignSpec(**values)


def _address(path: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ScenarioError(f"{path}: must be an IPv4 address string, got {value!r}")
    if value == "":
        return value
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        raise ScenarioError(f"{path}: must be an IPv4 address, got {value!r}") from None
    return value


def _attack(index: int, data: Any, duration: float) -> AttackSpec:
    path = f"attacks[{index}]"
    raw = _check_keys(path, data, AttackSpec)
    for required in ("kind", "start", "stop", "intensity"):
        if required not in raw:
            raise ScenarioError(f"{path}.{required}: missing")
    kind = raw["kind"]
    if kind not in ATTACK_KINDS:
        raise ScenarioError(f"{path}.kind: must be one of {', '.join(ATTACK_KINDS)}, got {kind!r}")
    start = _positive(f"{path}.start", raw["start"], allow_zero=True)
    stop = _number(f"{path}.stop", raw["stop"])
    if stop <= start:
        raise ScenarioError(f"{path}.stop: must be > start ({start:g}), got {raw['stop']!r}")
    if start >= duration:
        raise ScenarioError(
            f"{path}.start: must be < duration ({duration:g}), got {raw['start']!r}"
        )
    label = raw.get("label", "")
    if not isinstance(label, str) or label == BENIGN_LABEL or "," in label:
        raise ScenarioError(f"{path}.label: must be a name other than 'benign', got {label!r}")
    port = int(_positive(f"{path}.port", raw.get("port", 0), integer=True, allow_zero=True))
    if port > 65535:
        raise ScenarioError(f"{path}.port: must be <= 65535, got {port}")
    return AttackSpec(
        kind=kind,
        start=start,
        stop=min(stop, duration),
        intensity=_positive(f"{path}.intensity", raw["intensity"]),
        label=label,
        target=_address(f"{path}.target", raw.get("target", "")),
        port=port,
        sources=int(
            _positive(f"{path}.sources", raw.get("sources", 0), integer=True, allow_zero=True)
        ),
        hosts=int(_positive(f"{path}.hosts", raw.get("hosts", 1), integer=True)),
    )


def scenario_from_dict(data: Any) -> TrafficScenario:
    """Validate a decoded JSON scenario; every problem names its field."""
    raw = _check_keys("", data, TrafficScenario)
    defaults = TrafficScenario()
    seed = int(_positive("seed", raw.get("seed", defaults.seed), integer=True, allow_zero=True))
    duration = _positive("duration", raw.get("duration", defaults.duration))
    start_time = int(
        _positive("start_time", raw.get("start_time", defaults.start_time), integer=True)
    )
    step = _positive("step", raw.get("step", defaults.step))
    network = raw.get("network", defaults.network)
    try:
        net = ipaddress.IPv4Network(network)
    except (ValueError, TypeError):
        raise ScenarioError(
            f"network: must be an IPv4 network like 192.168.50.0/24, got {network!r}"
        ) from None
    if net.prefixlen > 24:
        raise ScenarioError(
            f"network: must hold at least 254 hosts (/24 or wider), got {network!r}"
        )
    attacks = raw.get("attacks", [])
    if not isinstance(attacks, list):
        raise ScenarioError(f"attacks: must be a list, got {attacks!r}")
    return TrafficScenario(
        seed=seed,
        duration=duration,
        start_time=start_time,
        step=step,
        network=str(net),
        benign=_benign(raw.get("benign", {})),
        attacks=tuple(_attack(i, a, duration) for i, a in enumerate(attacks)),
    )


def load_scenario(path: Path) -> TrafficScenario:
    """Read and validate a scenario JSON file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ScenarioError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    return scenario_from_dict(data)


def _attacks(*rows: tuple[str, float, float, float]) -> tuple[AttackSpec, ...]:
    return tuple(AttackSpec(kind, start, stop, rate) for kind, start, stop, rate in rows)


# Demo windows: 13 attack kinds, 12 s each, 5 s apart, so every class is in both halves.
_DEMO_TRAIN_ORDER = ATTACK_KINDS
_DEMO_TEST_ORDER = ATTACK_KINDS[1::2] + ATTACK_KINDS[0::2]
_DEMO_RATES = {
    "syn_flood": 1500.0,
    "udp_flood": 1200.0,
    "icmp_flood": 600.0,
    "http_get_flood": 400.0,
    "tcp_syn_scan": 300.0,
    "udp_scan": 150.0,
    "telnet_bruteforce": 150.0,
    "ssh_bruteforce": 120.0,
    "mqtt_connect_flood": 400.0,
    "mqtt_bruteforce": 80.0,
    "mqtt_publish_flood": 800.0,
    "mqtt_slowdos": 60.0,
    "arp_spoof": 30.0,
}


def _demo(order: tuple[str, ...], scale: float) -> tuple[AttackSpec, ...]:
    return tuple(
        AttackSpec(kind, 15.0 + 17.0 * i, 27.0 + 17.0 * i, _DEMO_RATES[kind] * scale)
        for i, kind in enumerate(order)
    )


PRESETS: dict[str, TrafficScenario] = {
    "default": TrafficScenario(
        seed=1,
        duration=300.0,
        attacks=_attacks(
            ("syn_flood", 30, 50, 2000),
            ("tcp_syn_scan", 60, 80, 200),
            ("mqtt_connect_flood", 90, 110, 300),
            ("udp_flood", 120, 135, 1500),
            ("mqtt_bruteforce", 150, 170, 40),
            ("arp_spoof", 180, 195, 20),
            ("http_get_flood", 205, 225, 500),
            ("icmp_flood", 235, 245, 800),
            ("ssh_bruteforce", 255, 280, 60),
        ),
    ),
    "mixed": TrafficScenario(
        seed=2,
        duration=300.0,
        attacks=_attacks(
            ("tcp_syn_scan", 20, 120, 100),
            ("syn_flood", 60, 90, 1500),
            ("mqtt_publish_flood", 100, 160, 600),
            ("telnet_bruteforce", 140, 240, 80),
            ("mqtt_slowdos", 150, 210, 40),
            ("udp_scan", 200, 260, 60),
            ("arp_spoof", 230, 280, 10),
            ("icmp_flood", 250, 270, 500),
        ),
    ),
    "benign": TrafficScenario(seed=3, duration=300.0),
    "lowslow": TrafficScenario(
        seed=4,
        duration=300.0,
        attacks=_attacks(
            ("tcp_syn_scan", 20, 140, 2.0),  # ~1 port/s (probe + reply)
            ("ssh_bruteforce", 150, 290, 1.6),  # ~1 login attempt per 10 s
            ("mqtt_bruteforce", 30, 150, 0.8),  # ~1 attempt per 10 s
            ("udp_scan", 160, 280, 1.5),
            ("arp_spoof", 100, 200, 0.2),
        ),
    ),
    "demo-train": TrafficScenario(seed=11, duration=240.0, attacks=_demo(_DEMO_TRAIN_ORDER, 1.0)),
    "demo-test": TrafficScenario(seed=12, duration=240.0, attacks=_demo(_DEMO_TEST_ORDER, 0.8)),
}


def preset(name: str) -> TrafficScenario:
    """A built-in scenario by name; the error lists the valid names."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ScenarioError(f"preset: must be one of {', '.join(PRESETS)}, got {name!r}") from None
