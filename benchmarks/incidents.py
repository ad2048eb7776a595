"""One incident per attack: detections and events per minute under a sustained flood.

A model that names one attack by several labels in turn (a SYN flood read as ``syn_flood``, then
``mqtt_bruteforce``) used to open one detection per label and per flap. This replays sustained
floods and every shared attack capture through the agent's own replay path with the trained
int8 CNN of ``benchmarks.detection`` (trained on generated traffic, so every capture here is
traffic it never saw), twice: incident merging on (the default ``merge_horizon``) and off
(``merge_horizon = 0``: every label its own detection). It prints the detections (``new``
events), all events and events per minute of capture beside the target of at most 2 detections
per attack capture.

Floods: the shared spoofed SYN-flood capture looped to 60 s (its 24 s back to back, times
shifted), and a generated 60 s ``syn_flood`` over benign traffic (a seed the model never saw).
Run: ``python -m benchmarks.incidents [--quick] [--bundle B --trust-key K]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import struct
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from benchmarks.detection import DATASETS, PLANS, train_bundle

if TYPE_CHECKING:
    from agent.bundle import Bundle

NAME = "incidents"
TARGET = "<= 2"
FLOOD_SECONDS = 60.0
SYN_FLOOD = "ddos_pcaps_stopddos/pkt.TCP.synflood.spoofed.pcap"
ATTACK_CAPTURES = (
    "ddos_pcaps_stopddos/pkt.TCP.synflood.spoofed.pcap",
    "ddos_pcaps_stopddos/amp.TCP.syn.optionallyACK.optionallysamePort.pcapng",
    "ddos_pcaps_stopddos/amp.UDP.snmp.src161.pcapng",
    "portscan_pcap_ppa/synscan.pcapng",
    "mqttset_reduced_pcap/bruteforce-train.pcapng",
    "mqttset_reduced_pcap/flood-train.pcap",
    "mqttset_reduced_pcap/malariados-train.pcap",
    "mqttset_reduced_pcap/malformed-train.pcap",
    "mqttset_reduced_pcap/slowite-train.pcap",
)
_PCAP_MAGIC = {b"\xd4\xc3\xb2\xa1": ("<", 1_000), b"\xa1\xb2\xc3\xd4": (">", 1_000)}
_PCAP_MAGIC |= {b"\x4d\x3c\xb2\xa1": ("<", 1), b"\xa1\xb2\x3c\x4d": (">", 1)}


def _row(case: str, metric: str, value: object, unit: str, target: str = "") -> dict[str, object]:
    return {
        "benchmark": NAME,
        "case": case,
        "metric": metric,
        "value": value,
        "unit": unit,
        "target": target,
    }


def loop_pcap(source: Path, seconds: float, out: Path) -> Path:
    """A classic pcap's records back to back, times shifted, until ``seconds`` are covered."""
    data = source.read_bytes()
    order, ns_per_frac = _PCAP_MAGIC[data[:4]]
    records: list[tuple[int, bytes]] = []
    at = 24
    while at + 16 <= len(data):
        sec, frac, incl, _ = struct.unpack(order + "IIII", data[at : at + 16])
        records.append((sec * 1_000_000_000 + frac * ns_per_frac, data[at + 16 : at + 16 + incl]))
        at += 16 + incl
    first, last = records[0][0], records[-1][0]
    span = max(1, last - first) + (last - first) // max(1, len(records))  # one mean gap apart
    chunks = [data[:24]]
    shift = 0
    while shift < seconds * 1e9:
        for ts, frame in records:
            sec, rest = divmod(ts + shift, 1_000_000_000)
            size = len(frame)
            chunks.append(struct.pack(order + "IIII", sec, rest // ns_per_frac, size, size) + frame)
        shift += span
    out.write_bytes(b"".join(chunks))
    return out


def generated_flood(folder: Path) -> Path:
    """60 s of a generated SYN flood over benign traffic, a seed the model never saw."""
    from training.synth.scenario import AttackSpec, preset
    from training.synth.traffic import generate_traffic

    scenario = dataclasses.replace(
        preset("benign"),
        seed=4242,
        duration=FLOOD_SECONDS + 20,
        attacks=(AttackSpec("syn_flood", 10.0, 10.0 + FLOOD_SECONDS, 1500.0),),
    )
    return generate_traffic(scenario, folder / "generated-syn-flood").pcap


def replay_rows(case: str, loaded: Bundle, capture: Path, merge: bool) -> list[dict[str, object]]:
    """Detections, events and events per minute of one replay."""
    from agent.app import replay_capture
    from agent.inference import Debounce

    plan = PLANS["full"]
    debounce = Debounce(plan.raise_k, plan.raise_n)
    if not merge:
        debounce = dataclasses.replace(debounce, merge_horizon=0.0)
    result = replay_capture(loaded, capture, debounce=debounce)
    minutes = result.source.steps * loaded.manifest.step.size_ns / 6e10
    news = [e for e in result.events if e.kind == "new"]
    families = sorted({e.category for e in news})
    mode = "merging on" if merge else "merging off"
    per_minute = round(len(result.events) / minutes, 1) if minutes > 0 else float("nan")
    detections = len(news)
    verdict = "" if detections <= 2 else " (missed)"
    return [
        _row(
            f"{case}, {mode}",
            "detections",
            detections,
            f"new events{verdict}; families {', '.join(families) or '-'}",
            TARGET,
        ),
        _row(
            f"{case}, {mode}",
            "events per minute",
            per_minute,
            f"/min ({len(result.events)} events over {minutes:.1f} min)",
        ),
    ]


def run(
    quick: bool = False, bundle: Path | None = None, trust_key: Path | None = None
) -> list[dict[str, object]]:
    """All rows; trains the detection benchmark's bundle unless one is given."""
    from agent.bundle import load_bundle, load_public_key

    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="iotids-bench-incidents-") as tmp:
        folder = Path(tmp)
        if bundle is None or trust_key is None:
            trained = train_bundle(folder, PLANS["quick" if quick else "full"])
            bundle, trust_key = trained.bundle, trained.public_key
        loaded = load_bundle(bundle, [load_public_key(trust_key)])
        floods = [("generated syn_flood 60 s", generated_flood(folder))]
        if (DATASETS / SYN_FLOOD).exists():
            looped = loop_pcap(DATASETS / SYN_FLOOD, FLOOD_SECONDS, folder / "synflood-60s.pcap")
            floods.insert(0, ("shared SYN flood looped to 60 s", looped))
        else:
            rows.append(_row("shared SYN flood", "detections", "capture missing", ""))
        for case, capture in floods:
            for merge in (False, True):
                rows += replay_rows(case, loaded, capture, merge)
        for relative in ATTACK_CAPTURES[: 3 if quick else None]:
            capture = DATASETS / relative
            if not capture.exists():
                rows.append(_row(capture.name, "detections", "capture missing", ""))
                continue
            rows += replay_rows(capture.name, loaded, capture, merge=True)[:1]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller training, fewer captures")
    parser.add_argument("--bundle", type=Path, help="a signed bundle to use instead of training")
    parser.add_argument("--trust-key", type=Path, help="the bundle's public key")
    args = parser.parse_args()
    for row in run(args.quick, args.bundle, args.trust_key):
        value = row["value"]
        text = f"{value:.1f}" if isinstance(value, float) else str(value)
        print(f"{row['case']:<46} {row['metric']:<18} {text:>8} {row['unit']} {row['target']}")


if __name__ == "__main__":
    main()
