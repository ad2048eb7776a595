"""A fleet's reporting load on one real Mosquitto: 10, 100 and 1,000 gateways, a restart midway.

Each gateway is the agent's own reporting path (``MqttSink`` + durable outbox, see
``benchmarks.fleet_agents``), many per worker process, fed by recorded detections: every
gateway opens a detection every ``--attack-every`` seconds (``new``, ``update`` every 5 s,
``end``) and sends stats every ``--stats-interval`` seconds. A consumer with a persistent
MQTT 5 session subscribes to every gateway's events and stats. Halfway through, the broker is
stopped (SIGTERM, persistence saved) and started again on the same port.

Reported per fleet size: delivered events/s, end-to-end latency (queued on the gateway ->
received by the consumer; the restart's outage is in it) p50/p95/p99, loss of ``new`` /
``end`` / ``update`` events (target 0 for ``new`` and ``end``), Mosquitto's CPU (from
/proc/<pid>/stat: the average over the run and the busiest second, in % of one core, since
Mosquitto is single-threaded) and the agent side's memory per gateway (peak RSS growth of
the worker processes over their baseline, divided by their gateways). The machine's load
average is printed too: the figures are only as good as the cores were free.

Outboxes live in /dev/shm by default: on a real fleet each gateway has its own SD card, and
a thousand fsyncs per second on this machine's one disk would measure the disk, not MQTT.

Run: ``python -m benchmarks.fleet_load [--quick] [--gateways 10,100,1000] [--plot out.png]``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.fleet_agents import Plan, run_plan

NAME = "fleet load"
LOSS_TARGET = "0 (new, end)"
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Settings:
    """One run's knobs (the same for every fleet size)."""

    duration_s: float
    stats_interval_s: float
    attack_every_s: float
    attack_length_s: float
    gateways_per_worker: int
    restart: bool
    outage_s: float
    drain_timeout_s: float


def _cpu_ticks(pid: int) -> int:
    """utime + stime of ``pid`` in clock ticks (fields 14 and 15 of /proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


class CpuSampler:
    """Samples one process's CPU once a second: total ticks and the busiest second."""

    def __init__(self) -> None:
        self.ticks = 0
        self.busiest = 0.0
        self._pid = 0
        self._last = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="fleet-cpu", daemon=True)

    def follow(self, pid: int) -> None:
        """Measure ``pid`` from now on (after a restart the broker has a new pid)."""
        with self._lock:
            self._pid, self._last = pid, _cpu_ticks(pid)

    def sample(self) -> None:
        """Add the ticks since the last sample."""
        with self._lock:
            try:
                now = _cpu_ticks(self._pid)
            except (OSError, IndexError, ValueError):
                return  # the broker is down: nothing to add
            delta, self._last = now - self._last, now
            self.ticks += delta
            self.busiest = max(self.busiest, 100.0 * delta / CLK_TCK)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(1.0):
            self.sample()


def _percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) by nearest rank; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def run_size(n: int, settings: Settings, folder: Path) -> dict[str, Any]:
    """Run ``n`` gateways against a fresh broker; the measured figures of that run."""
    from benchmarks.fleet_consumer import Consumer
    from tests.broker import Broker

    broker = Broker(folder / "mosquitto", persistence=True)
    # The test broker logs every packet; at fleet rates that would measure logging.
    config = broker.config_path.read_text().replace("log_type all", "log_type warning")
    broker.config_path.write_text(config + "max_connections -1\n")
    broker.start()
    assert broker.process is not None
    cpu = CpuSampler()
    cpu.follow(broker.process.pid)
    cpu.start()
    consumer = Consumer(broker.host, broker.port)
    consumer.start()
    outboxes = Path(tempfile.mkdtemp(prefix="iotids-fleet-", dir=_outbox_root()))
    devices = [f"gw-{i:05d}" for i in range(n)]
    workers = max(1, -(-n // settings.gateways_per_worker))
    plans = [
        Plan(
            host=broker.host,
            port=broker.port,
            devices=tuple(devices[w::workers]),
            outbox_dir=str(outboxes),
            duration_s=settings.duration_s,
            stats_interval_s=settings.stats_interval_s,
            attack_every_s=settings.attack_every_s,
            attack_length_s=settings.attack_length_s,
            drain_timeout_s=settings.drain_timeout_s,
            result_path=str(folder / f"worker{w}.json"),
            seed=w,
        )
        for w in range(workers)
    ]
    load_before = os.getloadavg()[0]
    began = time.time()
    context = multiprocessing.get_context("spawn")
    readies = [context.Event() for _ in plans]
    processes = [
        context.Process(target=run_plan, args=(plan, ready))
        for plan, ready in zip(plans, readies, strict=True)
    ]
    for process in processes:
        process.start()
    restarted = False
    try:
        for ready in readies:  # every worker connected its gateways and started the schedule
            ready.wait(90.0)
        if settings.restart:
            time.sleep(settings.duration_s / 2)
            cpu.sample()
            broker.stop()
            time.sleep(settings.outage_s)
            broker.start()
            assert broker.process is not None
            cpu.follow(broker.process.pid)
            restarted = True
        for process in processes:
            process.join(timeout=settings.duration_s + settings.drain_timeout_s + 120)
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
                process.join()
        results = [
            json.loads(Path(p.result_path).read_text())
            for p in plans
            if Path(p.result_path).exists()
        ]
        consumer.settle(expected=sum(len(r["events"]) for r in results), timeout=30.0)
        cpu.sample()
        cpu.stop()
        consumer.close()
        broker.kill()
        shutil.rmtree(outboxes, ignore_errors=True)
    wall = time.time() - began
    return _figures(n, results, consumer, cpu, wall, load_before, restarted, len(plans))


def _figures(
    n: int,
    results: list[dict[str, Any]],
    consumer: Any,
    cpu: CpuSampler,
    wall: float,
    load_before: float,
    restarted: bool,
    workers: int,
) -> dict[str, Any]:
    published: dict[str, tuple[str, float]] = {}
    for result in results:
        for event_id, kind, stamp in result["events"]:
            published[event_id] = (kind, stamp)
    received = consumer.first_seen  # id -> receive time (first copy)
    lost = {kind: 0 for kind in ("new", "update", "end")}
    for event_id, (kind, _) in published.items():
        if event_id not in received:
            lost[kind] += 1
    latencies = [received[i] - published[i][1] for i in published if i in received]
    first = min((stamp for _, stamp in published.values()), default=0.0)
    last = max(received.values(), default=first)
    delivered = sum(1 for i in published if i in received)
    baseline = sum(r["baseline_kb"] for r in results)
    peak = sum(r["peak_kb"] for r in results)
    return {
        "gateways": n,
        "workers": workers,
        "worker_results": len(results),
        "events_published": len(published),
        "events_delivered": delivered,
        "events_per_s": delivered / (last - first) if last > first else 0.0,
        "stats_published": sum(r["stats"] for r in results),
        "stats_received": consumer.stats,
        "duplicates": consumer.duplicates,
        "lost": lost,
        "latency_ms": {
            q: 1000 * _percentile(latencies, p)
            for q, p in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))
        },
        "broker_cpu_avg_pct": 100.0 * cpu.ticks / CLK_TCK / wall,
        "broker_cpu_peak_pct": cpu.busiest,
        "agent_kb_per_gateway": (peak - baseline) / n,
        "connected": sum(r["connected"] for r in results),
        "connect_s": max((r["connected_s"] for r in results), default=float("nan")),
        "drain_s": max((r["drain_s"] for r in results), default=float("nan")),
        "left_in_outboxes": sum(r["left_in_outboxes"] for r in results),
        "sink_failures": sum(r["failures"] for r in results),
        "restarted": restarted,
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
        "wall_s": wall,
    }


def _outbox_root() -> str | None:
    shm = "/dev/shm"  # noqa: S108 - mkdtemp makes a private folder inside it
    return shm if os.access(shm, os.W_OK) else None


def rows(figures: list[dict[str, Any]]) -> list[dict[str, object]]:
    """The figures as the benchmark suite's rows, targets beside them."""
    out: list[dict[str, object]] = []

    def add(case: str, metric: str, value: object, unit: str, target: str = "") -> None:
        out.append(
            {
                "benchmark": NAME,
                "case": case,
                "metric": metric,
                "value": value,
                "unit": unit,
                "target": target,
            }
        )

    for f in figures:
        case = f"{f['gateways']} gateways" + (", broker restart" if f["restarted"] else "")
        lost_new_end = f["lost"]["new"] + f["lost"]["end"]
        missed = " (MISSED)" if lost_new_end else ""
        add(case, "gateways connected", f"{f['connected']}/{f['gateways']}", "", "all")
        add(case, "events delivered", f"{f['events_delivered']}/{f['events_published']}", "")
        add(case, "lost new+end", lost_new_end, "events", LOSS_TARGET + missed)
        add(case, "lost update", f["lost"]["update"], "events")
        add(case, "delivered events/s", f["events_per_s"], "1/s")
        for q in ("p50", "p95", "p99"):
            add(case, f"end-to-end latency {q}", f["latency_ms"][q], "ms")
        add(case, "broker CPU avg", f["broker_cpu_avg_pct"], "% of a core")
        add(case, "broker CPU busiest second", f["broker_cpu_peak_pct"], "% of a core", "< 100")
        add(case, "agent memory per gateway", f["agent_kb_per_gateway"] / 1024, "MB")
        add(case, "duplicates received", f["duplicates"], "messages")
        add(
            case, "machine load avg (1 min)", f"{f['load_before']:.2f} -> {f['load_after']:.2f}", ""
        )
    return out


def ceiling_rows(ceiling: dict[str, Any]) -> list[dict[str, object]]:
    """The broker's flat-out figures (``benchmarks.fleet_ceiling``) as rows."""
    case = f"Mosquitto flat out, {ceiling['messages']:,} QoS 1 events from C clients"
    return [
        {"benchmark": NAME, "case": case, "metric": metric, "value": value, "unit": unit,
         "target": ""}
        for metric, value, unit in (
            ("messages through the broker", ceiling["messages_per_s"], "1/s"),
            ("broker CPU", ceiling["broker_cpu_pct"], "% of a core"),
            ("at a full core (scaled, estimate)", ceiling["implied_ceiling"], "1/s"),
            ("machine load avg (1 min)", f"{ceiling['load']:.2f}", ""),
        )
    ]  # fmt: skip


def plot(figures: list[dict[str, Any]], path: Path) -> bool:
    """Events/s, latency percentiles and broker CPU against fleet size; False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    sizes = [f["gateways"] for f in figures]
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    axes[0].plot(sizes, [f["events_per_s"] for f in figures], "o-")
    axes[0].set_title("delivered events/s")
    for q in ("p50", "p95", "p99"):
        axes[1].plot(sizes, [f["latency_ms"][q] for f in figures], "o-", label=q)
    axes[1].set_title("end-to-end latency (ms, restart included)")
    axes[1].set_yscale("log")
    axes[1].legend()
    axes[2].plot(sizes, [f["broker_cpu_avg_pct"] for f in figures], "o-", label="average")
    axes[2].plot(sizes, [f["broker_cpu_peak_pct"] for f in figures], "o-", label="busiest second")
    axes[2].set_title("Mosquitto CPU (% of one core)")
    axes[2].legend()
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("gateways")
        ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def settings_for(quick: bool, duration: float | None = None) -> Settings:
    """Short runs for ``--quick`` (CI); a minute per size otherwise."""
    return Settings(
        duration_s=duration or (20.0 if quick else 60.0),
        stats_interval_s=10.0,
        attack_every_s=20.0 if quick else 30.0,
        attack_length_s=12.0,
        # paho's network loop uses select(), which cannot watch descriptors above 1023; each
        # gateway holds ~6 (socket, paho's wake-up pair, the outbox's db/wal/shm), so more than
        # ~160 per process leaves the rest silently unconnected.
        gateways_per_worker=125,
        restart=True,
        outage_s=2.0,
        drain_timeout_s=120.0,
    )


def measure(sizes: list[int], settings: Settings) -> list[dict[str, Any]]:
    """Run every fleet size in turn, each against a fresh broker."""
    figures = []
    with tempfile.TemporaryDirectory(prefix="iotids-bench-fleet-") as tmp:
        for n in sizes:
            folder = Path(tmp) / f"n{n}"
            folder.mkdir()
            figures.append(run_size(n, settings, folder))
    return figures


def run(quick: bool = False) -> list[dict[str, object]]:
    """The benchmark suite's entry: 10 and 100 gateways quick, up to 1,000 otherwise."""
    from benchmarks.fleet_ceiling import measure as ceiling

    sizes = [10, 100] if quick else [10, 100, 1000]
    figures = rows(measure(sizes, settings_for(quick)))
    return figures + ceiling_rows(ceiling(messages=10_000 if quick else 25_000))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 and 100 gateways, 20 s each")
    parser.add_argument("--gateways", help="comma-separated fleet sizes (default 10,100,1000)")
    parser.add_argument("--duration", type=float, help="seconds of load per size")
    parser.add_argument("--plot", type=Path, help="write the plot (PNG) here")
    parser.add_argument("--json", type=Path, help="write the raw figures here")
    args = parser.parse_args()
    sizes = (
        [int(s) for s in args.gateways.split(",")]
        if args.gateways
        else ([10, 100] if args.quick else [10, 100, 1000])
    )
    settings = settings_for(args.quick, args.duration)
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()} before the run")
    figures = measure(sizes, settings)
    from benchmarks.__main__ import print_table
    from benchmarks.fleet_ceiling import measure as ceiling

    flat_out = ceiling(messages=10_000 if args.quick else 25_000)
    print_table(rows(figures) + ceiling_rows(flat_out))
    if args.json:
        args.json.write_text(json.dumps({"fleet": figures, "ceiling": flat_out}, indent=2))
    if args.plot:
        print(f"plot: {args.plot}" if plot(figures, args.plot) else "plot: needs matplotlib")


if __name__ == "__main__":
    main()
