"""Hostile bundles pushed to a running agent over a real broker, with its peak RSS measured.

Shared by tests/e2e/test_bundle_security.py (which asserts) and benchmarks/bundle_pushes.py
(which prints the figure beside the board profiles' ``MemoryMax``).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.contract import DEFAULT_PREFIX, Topics
from agent.features.traffic import TRAFFIC_V1
from tests.agent.bundles import manifest_for, with_fields
from tests.agent.flood_bundle import FloodKit
from tests.agent.hostile_zips import archive, bomb, stored
from tests.broker import Broker, Probe
from tests.e2e.agent_process import AgentProcess

GIB = 1 << 30


def _signed(kit: FloodKit, signer: Any, model: Any, **fields: Any) -> bytes:
    manifest = with_fields(manifest_for(kit.model, TRAFFIC_V1, signer=signer), **fields)
    text = manifest.to_json()
    return archive(
        [stored("manifest.json", text), model, stored("manifest.sig", signer.sign(text))]
    )


def hostile_payloads(kit: FloodKit) -> list[tuple[str, bytes, str]]:
    """(case, payload, words its refusal must contain): zip bombs of ~1 MB that inflate to
    1 GiB while declaring 42 KB, and archives with too many, duplicate or nested members."""
    trusted: Any = kit.signer
    stranger = Ed25519PrivateKey.generate()
    sig = stored("manifest.sig", bytes(64))
    model = stored("model.tflite", kit.model)
    manifest = stored("manifest.json", manifest_for(kit.model, TRAFFIC_V1).to_json())
    return [
        ("manifest bomb", archive([bomb("manifest.json"), model, sig]), "corrupt archive"),
        (
            "model bomb, untrusted signer",
            _signed(kit, stranger, bomb("model.tflite")),
            "signed by untrusted key",
        ),
        (
            "model bomb, trusted signer, model_size 42 KB",
            _signed(kit, trusted, bomb("model.tflite"), model_size=42_000),
            "corrupt archive",
        ),
        (
            "model bomb declaring 1 GiB, trusted signer",
            _signed(kit, trusted, bomb("model.tflite", declared=GIB), model_size=42_000),
            "model.tflite declares",
        ),
        ("many members", archive([manifest, model, sig, stored("x", b"")]), "4 members"),
        ("duplicate names", archive([manifest, manifest, model]), "duplicate member"),
        ("nested path", archive([stored("a/manifest.json", b"{}"), model, sig]), "unexpected"),
        ("huge comment", archive([manifest, model, sig], comment=b"c" * 65_000), "comment"),
        ("over max_bundle_bytes", bytes(5 * 2**20), "larger than"),
    ]


@dataclass(frozen=True)
class PushResult:
    """What the agent answered and what it cost."""

    baseline_kb: int  # VmHWM before the first push (start-up, model, a detection running)
    peak_kb: int  # VmHWM after the last refusal
    refusals: list[dict[str, Any]]  # last_update of each push, in order
    stats: dict[str, Any]  # a stats message published after the pushes


def push_all(
    agent: AgentProcess, broker: Broker, payloads: list[tuple[str, bytes, str]], device: str
) -> PushResult:
    """Start ``agent``, wait until it detects, push every payload, collect answers and RSS."""
    topics = Topics.for_device(DEFAULT_PREFIX, device)
    with Probe(broker, [topics.model, topics.events, topics.stats]) as probe:
        agent.start()
        assert probe.wait_for(lambda m: m.topic == topics.events, 40), agent.log()
        baseline = agent.peak_rss_kb()
        for _, data, _ in payloads:
            probe.publish(topics.model_set, data)

        def updates() -> list[dict[str, Any]]:
            models = [json.loads(m.payload) for m in list(probe.seen) if m.topic == topics.model]
            return [m["last_update"] for m in models if "last_update" in m]

        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(updates()) < len(payloads):
            time.sleep(0.2)
        peak = agent.peak_rss_kb()
        seen = len(probe.seen)
        while time.monotonic() < deadline + 10:
            later = [m for m in probe.seen[seen:] if m.topic == topics.stats]
            if later:
                break
            time.sleep(0.2)
        assert later, agent.log()
    return PushResult(baseline, peak, updates(), json.loads(later[0].payload))


def memory_max_mb(profiles: Path) -> dict[str, int]:
    """``memory_max_mb`` of every board profile (systemd's ``MemoryMax`` for the agent)."""
    import tomllib

    return {
        path.stem: int(tomllib.loads(path.read_text())["service"]["memory_max_mb"])
        for path in sorted(profiles.glob("*.toml"))
    }
