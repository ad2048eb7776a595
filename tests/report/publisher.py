"""A stand-alone publisher process for the crash tests: an MqttSink fed with numbered events.

``python -m tests.report.publisher --port P --outbox F --device D --events N [--hold]``
prints ``queued`` once the events are in the outbox; with ``--hold`` it then waits to be killed,
otherwise it waits until the outbox is drained, closes the sink, prints ``drained``, exits 0.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time

from agent.config import MqttConfig
from agent.report.mqtt import MqttSink
from agent.report.outbox import Outbox


def main(argv: list[str] | None = None) -> int:
    """Run one publisher; the exit code says whether the outbox drained in time."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--outbox", required=True)
    parser.add_argument("--device", default="gw-1")
    parser.add_argument("--events", type=int, default=0)
    parser.add_argument("--first", type=int, default=0)
    parser.add_argument("--hold", action="store_true")
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args(argv)
    config = MqttConfig(
        host="127.0.0.1", port=args.port, keepalive=5, backoff_min=1.0, backoff_max=1.0
    )
    outbox = Outbox(args.outbox, max_messages=10_000, max_bytes=10_000_000)
    sink = MqttSink(config, args.device, outbox)
    sink.start()
    for n in range(args.first, args.first + args.events):
        sink.publish_event(
            {"id": f"{args.device}-{n}", "type": "new", "detection": f"d{n}", "n": n}
        )
    print("queued", flush=True)
    if args.hold:
        threading.Event().wait()
    deadline = time.monotonic() + args.timeout
    while outbox.depth() and time.monotonic() < deadline:
        time.sleep(0.05)
    left = outbox.depth()
    sink.close()
    outbox.close()
    print("drained" if left == 0 else f"left {left}", flush=True)
    return 0 if left == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
