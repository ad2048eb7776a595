"""Peak RSS of ``agent run`` while hostile bundles arrive on ``model/set`` through Mosquitto.

Nine pushes: zip bombs of ~1 MB that inflate to 1 GiB (in the manifest; in the model under an
untrusted and under a trusted signature), too many / duplicate / nested members, a long
comment, and a payload over ``agent.max_bundle_bytes``. The agent replays a SYN-flood capture
meanwhile. Its VmHWM is read from /proc before the first push and after the last refusal, and
printed beside the smallest board profile's ``MemoryMax``. Needs TensorFlow (the test model is
converted once) and /usr/sbin/mosquitto; uses the test suite's helpers.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _row(case: str, metric: str, value: object, unit: str, target: str = "") -> dict[str, object]:
    return {
        "benchmark": "bundle pushes",
        "case": case,
        "metric": metric,
        "value": value,
        "unit": unit,
        "target": target,
    }


def run(quick: bool = False) -> list[dict[str, object]]:
    """Push every hostile payload once to a running agent; RSS and refusals as rows."""
    from dataclasses import replace

    from tests.agent.flood_bundle import flood_kit
    from tests.agent.hostile_zips import zeros_deflated
    from tests.broker import Broker
    from tests.e2e.agent_process import AgentProcess, AgentSetup
    from tests.e2e.hostile_pushes import hostile_payloads, memory_max_mb, push_all

    del quick  # one pass is already short (~20 s)
    profiles = memory_max_mb(REPO / "firmware_configs" / "profiles")
    smallest = min(profiles, key=lambda name: profiles[name])
    with tempfile.TemporaryDirectory(prefix="iotids-bench-bundles-") as tmp:
        folder = Path(tmp)
        kit = flood_kit(folder / "kit")
        payloads = hostile_payloads(kit)
        broker = Broker(folder / "mosquitto", persistence=False)
        broker.start()
        setup = AgentSetup("gw-bench", kit.capture, kit.bundle, kit.public_key)
        agent = AgentProcess(replace(setup, stats_interval=1.0), broker, folder / "agent")
        try:
            result = push_all(agent, broker, payloads, "gw-bench")
            agent.terminate()
        finally:
            agent.close()
            broker.kill()
    refused = sum(r["result"] == "refused" for r in result.refusals)
    bomb = len(zeros_deflated()) / 2**20
    budget = ", ".join(f"{name} {mb}" for name, mb in sorted(profiles.items(), key=lambda p: p[1]))
    return [
        _row("before the pushes (replaying a flood)", "peak_rss", result.baseline_kb // 1024, "MB"),
        _row(
            f"after {len(payloads)} hostile pushes ({bomb:.1f} MB bombs -> 1 GiB)",
            "peak_rss",
            result.peak_kb // 1024,
            "MB",
            f"<= {profiles[smallest]} ({smallest} MemoryMax; {budget})",
        ),
        _row(
            "hostile pushes",
            "refused",
            f"{refused}/{len(payloads)}",
            "",
            f"{len(payloads)}/{len(payloads)}",
        ),
    ]


def main() -> None:
    for row in run():
        value = f"{row['value']!s:>8}"
        print(f"{row['case']:<52} {row['metric']:<10} {value} {row['unit']:<4} {row['target']}")


if __name__ == "__main__":
    main()
