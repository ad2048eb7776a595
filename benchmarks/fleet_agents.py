"""Many gateways' reporting path in one process, for ``benchmarks.fleet_load``.

Each simulated gateway is the agent's own :class:`agent.report.mqtt.MqttSink` over its own
durable :class:`agent.report.outbox.Outbox` (one SQLite file each), exactly as ``agent run``
builds them; only the detector in front is replaced by a recording: detection lifecycles
(``new``, an ``update`` every 5 s, ``end``) replayed on a schedule, and a stats payload every
stats interval. What each gateway queued is written to a JSON result file for the driver to
compare with what the consumer received.
"""

from __future__ import annotations

import heapq
import json
import logging
import random
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.config import HomeAssistantConfig, MqttConfig
from agent.report.mqtt import MqttSink
from agent.report.outbox import Outbox

logger = logging.getLogger(__name__)

UPDATE_EVERY_S = 5.0  # the agent's periodic update cadence (at most one per 5 s)

# A recording of what the agent's decider emits for three kinds of attack (fields as in the
# contract, figures from replays of the shared captures); replayed round-robin per gateway.
RECORDED: tuple[Mapping[str, Any], ...] = (
    {
        "label": "DDoS-SYN_Flood",
        "category": "ddos",
        "model": "cnn-ciciot-8",
        "source": "lan",
        "score": 0.97,
        "peak_score": 0.99,
        "evidence": {
            "packets": 48210,
            "bytes": 2892600,
            "top_sources": [{"address": "10.0.0.66", "packets": 48000}],
            "top_destinations": [{"address": "192.168.1.20", "packets": 48210}],
            "top_ports": [{"port": 80, "packets": 48210}],
        },
    },
    {
        "label": "Recon-PortScan",
        "category": "recon",
        "model": "cnn-ciciot-8",
        "source": "lan",
        "score": 0.88,
        "peak_score": 0.93,
        "evidence": {
            "packets": 1830,
            "bytes": 109800,
            "top_sources": [{"address": "192.168.1.77", "packets": 1830}],
            "top_destinations": [{"address": "192.168.1.20", "packets": 1830}],
            "top_ports": [{"port": 22, "packets": 90}, {"port": 23, "packets": 88}],
        },
    },
    {
        "label": "MQTT-SlowITe",
        "category": "dos",
        "model": "cnn-mqttset-8",
        "source": "lan",
        "score": 0.91,
        "peak_score": 0.95,
        "evidence": {
            "packets": 640,
            "bytes": 41200,
            "top_sources": [{"address": "192.168.1.90", "packets": 640}],
            "top_destinations": [{"address": "192.168.1.5", "packets": 640}],
            "top_ports": [{"port": 1883, "packets": 640}],
        },
    },
)


@dataclass(frozen=True)
class Plan:
    """What every gateway of one worker does."""

    host: str
    port: int
    devices: tuple[str, ...]
    outbox_dir: str
    duration_s: float
    stats_interval_s: float
    attack_every_s: float
    attack_length_s: float
    drain_timeout_s: float
    result_path: str
    seed: int


@dataclass
class _Gateway:
    device: str
    sink: MqttSink
    outbox: Outbox
    recording: int
    detection: str = ""
    opened: float = 0.0
    published: list[tuple[str, str, float]] = field(default_factory=list)  # (id, type, time)
    stats: int = 0


def _rss_kb(key: str) -> int:
    """VmRSS or VmHWM of this process in kB, from /proc."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def _event(gateway: _Gateway, kind: str, now: float) -> None:
    base = RECORDED[gateway.recording % len(RECORDED)]
    event_id = uuid.uuid4().hex
    event = {
        **base,
        "id": event_id,
        "type": kind,
        "detection": gateway.detection,
        "start": gateway.opened,
        "end": now if kind == "end" else None,
    }
    gateway.sink.publish_event(event)
    gateway.published.append((event_id, kind, now))


def _stats(gateway: _Gateway, now: float, started: float) -> None:
    gateway.sink.publish_stats(
        {
            "packets_per_s": 850.0,
            "drops": 0,
            "malformed": {},
            "latency_ms_p50": 2.1,
            "latency_ms_p99": 7.9,
            "queue_depth": 0,
            "cpu_percent": 23.0,
            "rss_bytes": 61_000_000,
            "uptime_s": now - started,
        }
    )
    gateway.stats += 1


def _build(plan: Plan) -> list[_Gateway]:
    config = MqttConfig(
        host=plan.host,
        port=plan.port,
        # A fleet's gateways reconnect fast after a broker restart; the agent's defaults.
        replay_rate=50.0,
        drain_on_close=1.0,
        homeassistant=HomeAssistantConfig(enabled=False),
    )
    gateways = []
    for index, device in enumerate(plan.devices):
        outbox = Outbox(Path(plan.outbox_dir) / f"{device}.sqlite", 100_000, 50_000_000)
        gateways.append(_Gateway(device, MqttSink(config, device, outbox), outbox, index))
    return gateways


def _schedule(plan: Plan, gateways: Sequence[_Gateway], start: float) -> None:
    """Replay the recording on every gateway until the duration ends, then end what is open."""
    rng = random.Random(plan.seed)  # noqa: S311 - a reproducible schedule, not a secret
    heap: list[tuple[float, int, str]] = []
    for index in range(len(gateways)):
        heapq.heappush(heap, (start + rng.uniform(0, plan.stats_interval_s), index, "stats"))
        heapq.heappush(heap, (start + rng.uniform(0, plan.attack_every_s), index, "new"))
    stop_at = start + plan.duration_s
    while heap:
        due, index, action = heapq.heappop(heap)
        if due >= stop_at:
            break
        if (pause := due - time.time()) > 0:
            time.sleep(pause)
        gateway, now = gateways[index], time.time()
        if action == "stats":
            _stats(gateway, now, start)
            heapq.heappush(heap, (due + plan.stats_interval_s, index, "stats"))
        elif action == "new":
            gateway.detection, gateway.opened = uuid.uuid4().hex, now
            gateway.recording += 1
            _event(gateway, "new", now)
            next_update = min(UPDATE_EVERY_S, plan.attack_length_s)
            heapq.heappush(heap, (due + next_update, index, "update"))
        elif now - gateway.opened + UPDATE_EVERY_S <= plan.attack_length_s:
            _event(gateway, "update", now)
            heapq.heappush(heap, (due + UPDATE_EVERY_S, index, "update"))
        else:
            _event(gateway, "end", now)
            gateway.detection = ""
            heapq.heappush(heap, (due + plan.attack_every_s - plan.attack_length_s, index, "new"))
    for gateway in gateways:  # the run is over: every open detection gets its end
        if gateway.detection:
            _event(gateway, "end", time.time())
            gateway.detection = ""


def _drain(gateways: Sequence[_Gateway], timeout: float) -> float:
    """Wait until every outbox is empty; returns the seconds it took (or the timeout)."""
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        if all(g.outbox.depth() == 0 for g in gateways):
            break
        time.sleep(0.2)
    return time.monotonic() - began


def run_plan(plan: Plan, ready: Any = None) -> None:
    """Run one worker's gateways and write its result file; ``ready`` is set once connected."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # The broker restart is on purpose: every sink's "lost the connection" / "cannot connect"
    # would bury the table; delivery is judged by the consumer's counts instead.
    logging.getLogger("agent.report.mqtt").setLevel(logging.CRITICAL)
    baseline_kb = _rss_kb("VmRSS")
    gateways = _build(plan)
    start = time.time()
    for gateway in gateways:
        gateway.sink.start()
    connected_at = _until_connected(gateways, timeout=60.0)
    connected = sum(g.sink.connected for g in gateways)
    if ready is not None:
        ready.set()
    _schedule(plan, gateways, connected_at)
    drain_s = _drain(gateways, plan.drain_timeout_s)
    peak_kb = _rss_kb("VmHWM")
    left = sum(g.outbox.depth() for g in gateways)
    closer = [threading.Thread(target=g.sink.close) for g in gateways]
    for thread in closer:
        thread.start()
    for thread in closer:
        thread.join()
    for gateway in gateways:
        gateway.outbox.close()
    result = {
        "devices": len(gateways),
        "baseline_kb": baseline_kb,
        "peak_kb": peak_kb,
        "connected_s": connected_at - start,
        "connected": connected,
        "drain_s": drain_s,
        "left_in_outboxes": left,
        "failures": sum(g.sink.failures for g in gateways),
        "stats": sum(g.stats for g in gateways),
        "events": [e for g in gateways for e in g.published],
    }
    Path(plan.result_path).write_text(json.dumps(result))


def _until_connected(gateways: Sequence[_Gateway], timeout: float) -> float:
    """Wall time when every gateway had its CONNACK (or the timeout passed)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not all(g.sink.connected for g in gateways):
        time.sleep(0.1)
    return time.time()
