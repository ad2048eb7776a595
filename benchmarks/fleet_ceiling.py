"""Where one Mosquitto tops out on this machine: C clients publishing flat out, one subscriber.

The fleet benchmark's Python gateways cannot offer enough load to saturate the broker on two
shared cores, so this drives it with Mosquitto's own C tools instead: ``publishers``
``mosquitto_pub -l -q 1`` processes, each sending ``messages`` event-sized JSON lines on its
own gateway's events topic, and one ``mosquitto_sub -q 1`` on ``iotids/+/events`` that exits
after the last message. Measured: messages/s through the broker (published and delivered once
each) and the broker's CPU from /proc/<pid>/stat. When the broker is below a full core the
clients were the limit, and ``implied_ceiling`` scales the rate to 100 % of one core (an
estimate, labelled so).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

CLK_TCK = os.sysconf("SC_CLK_TCK")
PUB = shutil.which("mosquitto_pub") or "/usr/bin/mosquitto_pub"
SUB = shutil.which("mosquitto_sub") or "/usr/bin/mosquitto_sub"


def _ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def _line(n: int) -> str:
    return json.dumps(
        {
            "schema": "iotids.event/1",
            "id": f"{n:032x}",
            "type": "update",
            "detection": "d" * 32,
            "label": "DDoS-SYN_Flood",
            "category": "ddos",
            "score": 0.97,
            "evidence": {"packets": 48210, "top_ports": [{"port": 80, "packets": 48210}]},
            "padding": "x" * 300,  # ~600 bytes, the size of a real event
        }
    )


def measure(publishers: int = 4, messages: int = 25_000) -> dict[str, Any]:
    """Push ``publishers * messages`` QoS 1 messages through a fresh broker."""
    from tests.broker import Broker

    with tempfile.TemporaryDirectory(prefix="iotids-bench-ceiling-") as tmp:
        folder = Path(tmp)
        broker = Broker(folder / "mosquitto", persistence=False)
        config = broker.config_path.read_text().replace("log_type all", "log_type warning")
        broker.config_path.write_text(config)
        broker.start()
        assert broker.process is not None
        lines = folder / "lines.txt"
        lines.write_text("".join(_line(n) + "\n" for n in range(messages)))
        total = publishers * messages
        port = str(broker.port)
        sub = subprocess.Popen(
            [SUB, "-p", port, "-q", "1", "-t", "iotids/+/events", "-C", str(total)],
            stdout=subprocess.DEVNULL,
        )
        time.sleep(1.0)
        before, began = _ticks(broker.process.pid), time.monotonic()
        pubs = []
        for p in range(publishers):
            with lines.open("rb") as feed:
                pubs.append(
                    subprocess.Popen(
                        [PUB, "-p", port, "-q", "1", "-l", "-t", f"iotids/gw-{p}/events"],
                        stdin=feed,
                    )
                )
        for pub in pubs:
            pub.wait(timeout=300)
        try:
            sub.wait(timeout=120)
            delivered = total
        except subprocess.TimeoutExpired:
            sub.kill()
            sub.wait()
            delivered = -1  # the subscriber never saw them all
        wall = time.monotonic() - began
        cpu = 100.0 * (_ticks(broker.process.pid) - before) / CLK_TCK / wall
        broker.kill()
    rate = total / wall
    return {
        "messages": total,
        "delivered": delivered,
        "messages_per_s": rate,
        "broker_cpu_pct": cpu,
        "implied_ceiling": rate * 100.0 / cpu if cpu > 0 else float("nan"),
        "load": os.getloadavg()[0],
    }


if __name__ == "__main__":
    print(json.dumps(measure(), indent=2))
