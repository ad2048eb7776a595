"""Live capture at line rate: the recvfrom source against the PACKET_MMAP ring, on a veth pair.

The benchmark makes a network namespace and a veth pair (root only), and a generator process in
the namespace sends a bounded burst of Ethernet frames of 64..1,500 bytes (UDP over IPv4, to a
MAC address nobody owns, so the host's stack drops them at once) through a raw socket. Each
source reads the burst; reported: frames captured per second of the burst, the kernel's drops
(``PACKET_STATISTICS``), frames the interface received, and the capture's CPU seconds. A
Python sender on a shared machine may be slower than the capture: then the rate shown is the
sender's, and ``capacity_per_core`` (frames per CPU-second of the capturing process) says what
the capture itself could take.
Run: ``python -m benchmarks.live_capture [--quick] [--frames N]``.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from benchmarks.rows import row as table_row

NAME = "live_capture"
TARGET = ">= 300,000 pkt/s, 0 drops (ring)"
RING_BYTES = 64 * 1024 * 1024  # the benchmark's ring; the default (buffer_bytes) is 8 MiB

SENDER = """
import socket, struct, sys, time
iface, count = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((iface, 0))
frames = []
for i in range(64):
    size = 64 + (i * 1436) // 63  # 64 .. 1,500 bytes
    udp = struct.pack("!HHHH", 40000 + i, 9000, size - 34, 0) + bytes(size - 42)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, size - 14, i, 0, 64, 17, 0,
                     bytes([10, 77, 0, 2]), bytes([10, 77, 0, 99]))
    ether = bytes.fromhex("020000000099" "020000000002" "0800")
    frames.append(ether + ip + udp)
send = s.send
began = time.perf_counter()
for i in range(count):
    send(frames[i & 63])
print(time.perf_counter() - began)
"""


def _row(case: str, metric: str, value: object, unit: str, target: str = "") -> dict[str, object]:
    return table_row(NAME, case, metric, value, unit, target)


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def _measure(kind: str, ns: str, host_if: str, peer_if: str, frames: int) -> dict[str, Any]:
    """One source reads one burst; the sender's wall time bounds the rate it can show."""
    from agent.config import parse_config
    from agent.sources import open_source

    table: dict[str, Any] = {"name": "lan", "kind": kind, "interface": host_if, "step": "1s"}
    if kind == "live-ring":
        table["buffer_bytes"] = RING_BYTES
    config = parse_config({"agent": {"device_id": "bench"}, "sources": [table]})
    source = open_source(config.sources[0], config)
    counter = Path(f"/sys/class/net/{host_if}/statistics/rx_packets")
    try:
        arrived0 = int(counter.read_text())
        usage0 = resource.getrusage(resource.RUSAGE_SELF)
        sender = subprocess.Popen(
            ["ip", "netns", "exec", ns, "python3", "-c", SENDER, peer_if, str(frames)],
            stdout=subprocess.PIPE,
            text=True,
        )
        began = time.perf_counter()
        quiet_since = None
        while True:
            before = source.stats.frames
            source.read(timeout=0.2)
            if sender.poll() is not None:
                if source.stats.frames == before:
                    quiet_since = quiet_since or time.perf_counter()
                    if time.perf_counter() - quiet_since > 0.5:
                        break
                else:
                    quiet_since = None
        wall = (quiet_since or time.perf_counter()) - began
        usage1 = resource.getrusage(resource.RUSAGE_SELF)
        send_s = float(sender.communicate()[0].strip() or "nan")
        arrived = int(counter.read_text()) - arrived0
    finally:
        source.close()
    cpu = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
    return {
        "captured": source.stats.frames,
        "drops": source.stats.drops,
        "arrived": arrived,
        "wall": wall,
        "send_s": send_s,
        "cpu": cpu,
    }


def run(quick: bool = False, frames: int | None = None) -> list[dict[str, object]]:
    """Both live sources on one burst each."""
    count = frames or (200_000 if quick else 2_000_000)
    if os.geteuid() != 0 or shutil.which("ip") is None:
        return [_row("live capture", "packets_per_s", "needs root and iproute2", "", TARGET)]
    tag = f"{os.getpid() % 100000}"
    ns, host_if, peer_if = f"iotb{tag}", f"iotb{tag}a", f"iotb{tag}b"
    rows: list[dict[str, object]] = []
    try:
        _ip("netns", "add", ns)
        _ip("link", "add", host_if, "type", "veth", "peer", "name", peer_if)
        _ip("link", "set", peer_if, "netns", ns)
        _ip("link", "set", host_if, "up")
        _ip("netns", "exec", ns, "ip", "link", "set", peer_if, "up")
        for kind in ("live", "live-ring"):
            m = _measure(kind, ns, host_if, peer_if, count)
            rate = m["captured"] / max(m["wall"], 1e-9)
            label = f"{kind}, burst of {count:,} frames 64-1500 B"
            target = TARGET if kind == "live-ring" else ""
            missed = kind == "live-ring" and (rate < 300_000 or m["drops"] > 0)
            rows += [
                _row(label, "packets_per_s", round(rate), "pkt/s", target),
                _row(label, "kernel_drops", m["drops"], "frames", "0" if target else ""),
                _row(label, "captured / arrived", f"{m['captured']:,} / {m['arrived']:,}", ""),
                _row(label, "sender_rate", round(count / m["send_s"]), "pkt/s"),
                _row(label, "capture_cpu_s_per_M", round(m["cpu"] / m["captured"] * 1e6, 2), "s"),
                # what one core could take if the sender were not the limit (CPU-bound estimate)
                _row(label, "capacity_per_core", round(m["captured"] / m["cpu"]), "pkt/s"),
            ]
            if missed:
                rows.append(_row(label, "target", "MISSED", "", target))
    finally:
        subprocess.run(["ip", "link", "del", host_if], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
    rows.append(_row("machine load", "loadavg_1min", round(os.getloadavg()[0], 2), ""))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a burst of 200,000 frames")
    parser.add_argument("--frames", type=int, help="frames per burst (default 2,000,000)")
    args = parser.parse_args()
    for row in run(args.quick, args.frames):
        value = f"{row['value']!s:>14}"
        print(f"{row['case']:<44} {row['metric']:<22} {value} {row['unit']:<6} {row['target']}")


if __name__ == "__main__":
    main()
