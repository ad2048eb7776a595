"""One incident per attack: detections and events per minute under a sustained flood.

A model that names one attack by several labels in turn (a SYN flood read as ``syn_flood``, then
``mqtt_bruteforce``) used to open one detection per label and per flap. This replays sustained
floods and every shared attack capture through the agent's own replay path with the trained
int8 CNN of ``benchmarks.detection`` (1 s steps) and one trained the same way on 20-packet steps
(window 8, the README's capture recipe) — both on generated traffic, so every capture here is
traffic they never saw. Each replay runs twice: with the agent's defaults (incidents merge, go
dormant after a quiet period and resume on their main label within ``hold``, updates at most
every 5 s) and with the per-label policy (every label its own detection, ended by ``clear_m``
clean windows alone, updates every 5 windows). It prints
the detections (``new`` events) beside the target of at most 2 per attack capture, and for the
floods the events per minute of capture.

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
from typing import TYPE_CHECKING, Any

from benchmarks.detection import DATASETS, PLANS, train_bundle
from benchmarks.rows import row as table_row

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
    return table_row(NAME, case, metric, value, unit, target)


def loop_pcap(source: Path, seconds: float, out: Path) -> Path:
    """A classic pcap's records back to back, times shifted, for exactly ``seconds``."""
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
            if ts + shift - first >= seconds * 1e9:
                break
            sec, rest = divmod(ts + shift, 1_000_000_000)
            size = len(frame)
            chunks.append(struct.pack(order + "IIII", sec, rest // ns_per_frac, size, size) + frame)
        shift += span
    out.write_bytes(b"".join(chunks))
    return out


def train_packet_bundle(folder: Path, data: Path) -> tuple[Path, Path]:
    """The README's capture recipe (20-packet steps, window 8) on the same generated traffic."""
    from converters.bundle import pack
    from converters.signing import generate_keypair
    from training.config import load_config
    from training.train import train

    overrides: dict[str, Any] = {
        "dataset": "synthetic",
        "path": str(data),
        "model": "cnn",
        "out": str(folder / "model-20p"),
        "step": "20p",
        "window": 8,
        "epochs": 15,
        "patience": 4,
        "split": "blocks",
        "blocks": 60,
        "baseline_trees": 10,
        "verbose": 0,
    }
    train(load_config(None, overrides))
    private, public, _ = generate_keypair(folder / "signer-20p")
    bundle = folder / "traffic-cnn-20p.bundle"
    pack(folder / "model-20p", "int8", bundle, sign_key=private)
    return bundle, public


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


def _capture_minutes(capture: Path) -> float:
    """From the first packet to the last (packet steps have no fixed duration)."""
    from agent.features.capture import read_capture

    stamps = read_capture(capture).packets.ts_ns
    return float(stamps[-1] - stamps[0]) / 6e10 if len(stamps) > 1 else 0.0


def _replay(
    loaded: Bundle, capture: Path, before: bool
) -> tuple[int, int, float, list[str], float]:
    """(detections, events, events per minute, families, packets/s) of one replay."""
    from agent.inference import Debounce
    from agent.replay import replay_capture

    plan = PLANS["full"]
    debounce = Debounce(plan.raise_k, plan.raise_n)
    if before:  # every label its own detection, ended by clear_m windows alone
        debounce = dataclasses.replace(
            debounce, merge_horizon=0.0, quiet=0.0, update_s=0.0, hold=0.0
        )
    result = replay_capture(loaded, capture, debounce=debounce)
    minutes = _capture_minutes(capture)
    news = [e for e in result.events if e.kind == "new"]
    per_minute = round(len(result.events) / minutes, 1) if minutes > 0 else float("nan")
    families = sorted({e.category for e in news})
    return len(news), len(result.events), per_minute, families, result.packets_per_s


def replay_rows(
    case: str, loaded: Bundle, capture: Path, flood: bool = False
) -> list[dict[str, object]]:
    """Detections (and for floods events per minute) now, beside the per-label policy's."""
    old, _, old_rate, _, _ = _replay(loaded, capture, before=True)
    now, events, rate, families, speed = _replay(loaded, capture, before=False)
    verdict = " (no alarm)" if now == 0 else " (missed)" if now > 2 else ""
    rows = [
        _row(
            case,
            "detections",
            now,
            f"new events{verdict}; per-label policy {old}; families {', '.join(families) or '-'}",
            TARGET,
        )
    ]
    if flood:
        rows.append(
            _row(
                case,
                "events per minute",
                rate,
                f"/min ({events} events in {_capture_minutes(capture):.2f} min); "
                f"per-label policy {old_rate}",
            )
        )
        # the decider under a detected flood: its windows extend one open detection
        rows.append(_row(case, "replay packets/s", round(speed), "packets/s, one run"))
    return rows


def run(
    quick: bool = False, bundle: Path | None = None, trust_key: Path | None = None
) -> list[dict[str, object]]:
    """All rows; trains the detection benchmark's 1 s bundle and a 20-packet one unless given."""
    from agent.bundle import load_bundle, load_public_key

    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="iotids-bench-incidents-") as tmp:
        folder = Path(tmp)
        bundles: list[tuple[str, Path, Path]] = []
        if bundle is not None and trust_key is not None:
            bundles.append((bundle.stem, bundle, trust_key))
        else:
            trained = train_bundle(folder, PLANS["quick" if quick else "full"])
            bundles.append(("cnn 1 s", trained.bundle, trained.public_key))
            bundles.append(("cnn 20p", *train_packet_bundle(folder, folder / "train-data")))
        floods = [("generated syn_flood 60 s", generated_flood(folder))]
        if (DATASETS / SYN_FLOOD).exists():
            looped = loop_pcap(DATASETS / SYN_FLOOD, FLOOD_SECONDS, folder / "synflood-60s.pcap")
            floods.insert(0, ("shared SYN flood looped to 60 s", looped))
        for name, path, key in bundles:
            loaded = load_bundle(path, [load_public_key(key)])
            for case, capture in floods:
                rows += replay_rows(f"{name}: {case}", loaded, capture, flood=True)
            for relative in ATTACK_CAPTURES[: 3 if quick else None]:
                capture = DATASETS / relative
                if capture.exists():
                    rows += replay_rows(f"{name}: {capture.name}", loaded, capture)
                else:
                    rows.append(_row(f"{name}: {capture.name}", "detections", "missing", ""))
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
        print(f"{row['case']:<58} {row['metric']:<17} {text:>7} {row['target']:>5} {row['unit']}")


if __name__ == "__main__":
    main()
