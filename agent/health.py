"""The agent's own health, one stats payload per stats interval, so an operator sees drops.

Rates are deltas of the sources' running counters between two snapshots; inference latency
percentiles come from the last few thousand windows; the SoC temperature is read from
/sys/class/thermal when the board exposes it (a Pi throttles at 80-85 °C).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import Counter, deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from agent.sources import SourceStats

logger = logging.getLogger(__name__)

THERMAL = Path("/sys/class/thermal")
LATENCY_SAMPLES = 4096


def soc_temperature(root: Path = THERMAL) -> float | None:
    """CPU/SoC temperature in °C from the first thermal zone (the Pi's cpu-thermal), or None."""
    zones = sorted(root.glob("thermal_zone*"))
    preferred = [
        z for z in zones if _read(z / "type") in ("cpu-thermal", "soc_thermal", "x86_pkg_temp")
    ]
    for zone in preferred + zones:
        text = _read(zone / "temp")
        if text and text.lstrip("-").isdigit():
            return int(text) / 1000.0
    return None


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


class SelfUsage:
    """This process's CPU percent since the previous call and resident bytes, as psutil's
    ``Process().cpu_percent(None)`` and ``memory_info().rss``, read without psutil: psutil
    costs 2.3 MB resident, so only the host source (which needs it) loads it."""

    def __init__(self) -> None:
        self._cpu = time.process_time()
        self._wall = time.monotonic()

    def cpu_percent(self) -> float:
        """CPU time of all threads over wall time since the last call, in percent of one core."""
        cpu, wall = time.process_time(), time.monotonic()
        busy, elapsed = cpu - self._cpu, wall - self._wall
        self._cpu, self._wall = cpu, wall
        return round(busy / elapsed * 100, 1) if elapsed > 0 else 0.0

    def rss_bytes(self) -> int:
        """Resident set size: /proc on Linux, psutil elsewhere."""
        try:
            pages = int(Path("/proc/self/statm").read_text().split()[1])
        except (OSError, IndexError, ValueError):
            import psutil

            return int(psutil.Process().memory_info().rss)
        return pages * os.sysconf("SC_PAGE_SIZE")


class Health:
    """Collects latency samples and turns counters into a stats payload per interval."""

    def __init__(self) -> None:
        self._process = SelfUsage()
        self._started = time.monotonic()
        self._lock = threading.Lock()
        self._latency: deque[float] = deque(maxlen=LATENCY_SAMPLES)
        self._last_time = self._started
        self._last_packets: dict[str, int] = {}
        self.queue_drops = 0
        self.source_restarts: Counter[str] = Counter()  # by source, since start

    def record_latency(self, seconds: float) -> None:
        """One window's inference time (called from the inference thread)."""
        with self._lock:
            self._latency.append(seconds)

    def snapshot(
        self,
        sources: Mapping[str, SourceStats],
        *,
        queue_depths: Mapping[str, int],
        sampling_ratio: float,
        active_models: Mapping[str, str],
    ) -> dict[str, Any]:
        """The ``iotids.stats/1`` figures since the previous snapshot (rates) or start (totals)."""
        now = time.monotonic()
        elapsed = max(now - self._last_time, 1e-6)
        self._last_time = now
        packets = {name: s.packets for name, s in sources.items()}
        rate = sum(packets[n] - self._last_packets.get(n, 0) for n in packets) / elapsed
        self._last_packets = packets
        malformed: Counter[str] = Counter()
        for stats in sources.values():
            malformed.update(stats.malformed)
        with self._lock:
            latency = np.asarray(self._latency, np.float64) * 1000.0
        return {
            "packets_per_s": round(rate, 1),
            "packets": sum(packets.values()),
            "readings": sum(s.readings for s in sources.values()),
            "drops": {
                "kernel": sum(s.drops for s in sources.values()),
                "queue": self.queue_drops,
            },
            "malformed": dict(malformed),
            "source_restarts": dict(self.source_restarts),
            "sampling_ratio": round(sampling_ratio, 4),
            "latency_ms_p50": _percentile(latency, 50),
            "latency_ms_p99": _percentile(latency, 99),
            "queue_depth": dict(queue_depths),
            "cpu_percent": self._process.cpu_percent(),
            "rss_bytes": self._process.rss_bytes(),
            "temperature_c": soc_temperature(),
            "uptime_s": round(now - self._started, 1),
            "active_model": dict(active_models),
        }


def _percentile(values: np.ndarray[Any, np.dtype[np.float64]], q: float) -> float | None:
    if values.size == 0:
        return None
    # np.percentile's linear method by hand: np.percentile imports numpy.ma (1.2 MB) on first use
    ordered = np.sort(values)
    rank = q / 100 * (ordered.size - 1)
    low = int(rank)
    frac = rank - low
    a, b = float(ordered[low]), float(ordered[min(low + 1, ordered.size - 1)])
    # numpy's lerp: from the nearer end, so the result stays inside [a, b]
    value = b - (b - a) * (1 - frac) if frac >= 0.5 else a + (b - a) * frac
    return round(value, 3)
