"""What ``iotids demo`` shows: detections arriving over MQTT, then the summary against the truth.

:class:`LiveView` subscribes to one gateway's ``events`` and ``stats`` topics (the payloads of
``agent.report.mqtt``) and prints a line per ``new`` / ``end`` event plus a status line with
packets/s and latency. :func:`score_detections` matches the received ``new`` events to the
test scenario's ground truth (per attack: detected or not, time to detect; false alarms), and
:func:`render_summary` turns the whole summary into the terminal table and ``summary.md``.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, TextIO

from agent.contract import Deduplicator, Topics, decode
from agent.printable import printable

logger = logging.getLogger(__name__)

SUBSCRIBE_TIMEOUT = 10.0  # seconds to wait for the broker's SUBACK before giving up


class ViewError(RuntimeError):
    """The view cannot reach or subscribe on the broker."""


@dataclass(frozen=True)
class Truth:
    """One ground-truth attack or fault: its label and active interval (Unix seconds)."""

    label: str
    start: float
    stop: float
    source: str  # the agent source whose model should see it


@dataclass(frozen=True)
class Detection:
    """How one ground-truth interval fared in the run."""

    source: str
    label: str
    start: float
    stop: float
    detected: bool
    seconds_to_detect: float | None  # from the attack's start to the first matching ``new``
    steps_to_detect: int | None
    detected_as: str  # the matching alarm's label, else the first overlapping one's ("" none)


def _overlaps(event: Mapping[str, Any], truth: Truth, window_s: float) -> bool:
    """True when the event's windows cover any part of the interval.

    An event's ``start`` is the END of its first raising window, so the event covers
    ``[start - window_s, end]``: a window that still holds the attack's last steps is no
    false alarm.
    """
    begin = float(event["start"]) - window_s
    end = float(event.get("end") or event["start"])
    return begin < truth.stop and end >= truth.start


def _merged(events: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One record per detection and label: its ``new`` event, and the ``update`` where another
    label joined it (one incident, several attacks on one target), ending where the detection's
    last event ends.

    A joined label's record starts at that update's window. A detection still open when the
    agent stopped ends at its last window.
    """
    last: dict[str, float] = {}
    for e in events:
        end = e.get("end") if e.get("type") == "end" else e.get("window_end", e.get("start"))
        if end is not None:
            last[e["detection"]] = max(last.get(e["detection"], float(end)), float(end))
    opened = {e["detection"] for e in events if e.get("type") == "new"}
    records: list[dict[str, Any]] = []
    labelled: set[tuple[str, str]] = set()
    for e in sorted(events, key=lambda e: float(e.get("window_end") or e["start"])):
        kind, key = e.get("type"), (e["detection"], str(e.get("label")))
        if kind not in ("new", "update") or e["detection"] not in opened or key in labelled:
            continue
        labelled.add(key)
        start = e["start"] if kind == "new" else e.get("window_end", e["start"])
        records.append({**e, "start": start, "end": last.get(e["detection"], start)})
    return sorted(records, key=lambda e: float(e["start"]))


def score_detections(
    truths: Sequence[Truth],
    events: Sequence[Mapping[str, Any]],
    window_s: Mapping[str, float],
    step_s: Mapping[str, float],
    any_label: Sequence[str] = (),
) -> tuple[list[Detection], list[dict[str, Any]]]:
    """Per truth interval its detection, and the detections that overlap no truth (false alarms).

    Args:
        truths: ground truth intervals; ``source`` names the agent source that should see them.
        events: received event payloads (any order; only ``new`` and ``end`` are used).
        window_s: per source, seconds one model window spans (window steps x step).
        step_s: per source, seconds per step (to express time to detect in steps).
        any_label: sources whose model does not name the attack (an anomaly model): any
            alarm counts there; elsewhere a detection must carry the truth's own label.
    """
    detections = _merged(events)
    matched: set[str] = set()
    results: list[Detection] = []
    for truth in truths:
        mine = [d for d in detections if d.get("source") == truth.source]
        hits = [d for d in mine if _overlaps(d, truth, window_s[truth.source])]
        matched.update(d["detection"] for d in hits)
        right = [d for d in hits if truth.source in any_label or d.get("label") == truth.label]
        first = right[0] if right else None
        delay = max(0.0, float(first["start"]) - truth.start) if first else None
        results.append(
            Detection(
                source=truth.source,
                label=truth.label,
                start=truth.start,
                stop=truth.stop,
                detected=first is not None,
                seconds_to_detect=delay,
                steps_to_detect=round(delay / step_s[truth.source]) if delay is not None else None,
                detected_as=str((first or hits[0]).get("label", "")) if hits else "",
            )
        )
    unmatched = [d for d in detections if d["detection"] not in matched]
    false_alarms = list({d["detection"]: d for d in reversed(unmatched)}.values())[::-1]
    return results, false_alarms


def _clock(seconds: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(seconds))


class LiveView:
    """Follows one gateway over MQTT: prints events as they come, keeps them and the stats."""

    def __init__(
        self,
        host: str,
        port: int,
        device: str,
        *,
        prefix: str = "iotids",
        tls: bool = False,
        out: TextIO | None = None,
    ) -> None:
        from agent.mqtt_client import make_client, url_tls_context

        self.host, self.port = host, port
        topics = Topics.for_device(prefix, device)
        self.topics = {topics.events: "events", topics.stats: "stats"}
        self.out = out or sys.stdout
        self.events: list[dict[str, Any]] = []
        self.stats: list[dict[str, Any]] = []
        # Bounded like every consumer's: a long demo run must not grow without limit.
        self._seen = Deduplicator()
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._tty = self.out.isatty()
        self._status_shown = 0.0
        self._closed = False
        self._client = make_client(
            f"iotids-demo-view-{device}", tls=url_tls_context() if tls else None
        )
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message

    def start(self, timeout: float = SUBSCRIBE_TIMEOUT) -> None:
        """Connect and subscribe; returns once the broker acknowledged the subscription."""
        self._client.connect_async(self.host, self.port, keepalive=30)
        self._client.loop_start()
        if not self._subscribed.wait(timeout):
            self.close()
            raise ViewError(f"no subscription on mqtt://{self.host}:{self.port} within {timeout} s")

    def close(self) -> None:
        """Disconnect and stop paho's thread; ends the status line. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._client.disconnect()
        self._client.loop_stop()
        if self._tty and self._status_shown:
            self.out.write("\n")
            self.out.flush()

    def latest_stats(self) -> dict[str, Any] | None:
        """The newest stats payload received, if any."""
        with self._lock:
            return self.stats[-1] if self.stats else None

    def stats_count(self) -> int:
        """How many stats payloads arrived so far."""
        with self._lock:
            return len(self.stats)

    def received_events(self) -> list[dict[str, Any]]:
        """A copy of the events received so far (duplicates dropped by id)."""
        with self._lock:
            return list(self.events)

    # -- paho callbacks (paho's network thread) ----------------------------------------------

    def _on_connect(
        self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        if reason.is_failure:
            logger.warning("demo view: broker refused the connection: %s", reason)
            return
        client.subscribe([(topic, 1) for topic in self.topics])

    def _on_subscribe(
        self, client: Any, userdata: Any, mid: int, reasons: Any, properties: Any
    ) -> None:
        if all(not r.is_failure for r in reasons):
            self._subscribed.set()
        else:
            logger.warning("demo view: subscription refused: %s", reasons)

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        kind = self.topics.get(message.topic)
        payload = decode(message.payload)
        if payload is None:
            logger.debug(
                "demo view: not a JSON object on %s: %.80r", message.topic, message.payload
            )
            return
        if kind == "events":
            self._event(payload)
        elif kind == "stats":
            self._stats(payload)

    def _event(self, event: dict[str, Any]) -> None:
        """Keep an event once (QoS 1 may repeat it) and print ``new`` / ``end``."""
        with self._lock:
            if not self._seen.first_time(str(event.get("id"))):
                return
            self.events.append(event)
        if event.get("type") not in ("new", "end"):
            return
        when = event.get("start") if event.get("type") == "new" else event.get("end")
        lag_ms = (time.time() - float(event.get("time", time.time()))) * 1000
        line = (
            f"  {_clock(float(when or 0))}  {event['type']:<4} "
            f"{printable(str(event.get('source', '?')), 64):<10} "
            f"{printable(str(event.get('label', '?')), 64):<20} "
            f"score {float(event.get('score', 0)):.3f} "
            f"(delivered in {lag_ms:.0f} ms)"
        )
        self._write(line)

    def _stats(self, stats: dict[str, Any]) -> None:
        with self._lock:
            self.stats.append(stats)
        rss = int(stats.get("rss_bytes") or 0) / 2**20
        line = (
            f"  agent: {stats.get('packets', 0):>8} packets, "
            f"{float(stats.get('packets_per_s') or 0):>10,.0f} packets/s, "
            f"latency p50 {_ms(stats.get('latency_ms_p50'))} p99 {_ms(stats.get('latency_ms_p99'))}"
            f", RSS {rss:.0f} MiB"
        )
        if self._tty:
            self.out.write("\r\x1b[K" + line)
            self.out.flush()
            self._status_shown = time.monotonic()
        elif time.monotonic() - self._status_shown >= 5.0:  # a log file: one line per 5 s
            self._write(line)
            self._status_shown = time.monotonic()

    def _write(self, line: str) -> None:
        with self._lock:
            prefix = "\r\x1b[K" if self._tty and self._status_shown else ""
            self.out.write(prefix + line + "\n")
            self.out.flush()


def _ms(value: Any) -> str:
    return "-" if value is None else f"{float(value):.2f} ms"


def _cell(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return printable(str(value), 64)  # labels and sources came over MQTT


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    """A Markdown table (also readable in a terminal)."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(header)]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |"]
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    lines += [
        "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
        for row in cells
    ]
    return lines


def _incidents(agent: Mapping[str, Any]) -> str:
    """``: 21 detections in 17 incidents`` (nothing for a summary written before incidents)."""
    if "incidents" not in agent:
        return ""
    return f": {agent['detections']} detections in {agent['incidents']} incidents"


def render_summary(summary: Mapping[str, Any]) -> str:
    """The summary as Markdown: detections, false alarms, per-class F1, models, the agent."""
    lines = ["# iotids demo summary", ""]
    detections = [Detection(**d) for d in summary["detections"]]
    found = sum(d.detected for d in detections)
    lines += [f"Detected {found} of {len(detections)} attacks and faults in the test run.", ""]
    lines += _table(
        ["source", "attack / fault", "detected", "time to detect (s)", "steps", "alarm label"],
        [
            (
                d.source,
                d.label,
                "yes" if d.detected else "no",
                d.seconds_to_detect,
                d.steps_to_detect,
                d.detected_as or "-",
            )
            for d in detections
        ],
    )
    alarms = summary["false_alarms"]
    lines += ["", f"False alarms (detections overlapping no attack or fault): {len(alarms)}", ""]
    if alarms:
        lines += _table(
            ["source", "label", "start (UTC)", "score"],
            [(a.get("source"), a.get("label"), _clock(a["start"]), a.get("score")) for a in alarms],
        )
        lines.append("")
    for name, model in summary["models"].items():
        lines += [f"## Model {name} ({model['bundle_id']})", ""]
        lines += [
            f"Bundle {model['bundle_bytes']} bytes (model {model['model_bytes']} bytes), "
            f"int8 inference p50 {model['latency_us_p50']:.1f} µs / "
            f"p99 {model['latency_us_p99']:.1f} µs on this machine; "
            f"macro-F1 {model['macro_f1']:.3f} on {model['test_windows']} held-out windows.",
            "",
        ]
        lines += _table(
            ["class", "precision", "recall", "F1", "support"],
            [
                (label, c.get("precision"), c.get("recall"), c.get("f1"), c.get("support"))
                for label, c in model["per_class"].items()
            ],
        )
        lines.append("")
    agent = summary["agent"]
    lines += [
        "## Agent",
        "",
        f"Replayed {agent['packets']} packets; peak RSS {agent['rss_mib_max']:.1f} MiB; "
        f"window scoring latency p50 {_ms(agent['latency_ms_p50'])}, "
        f"p99 {_ms(agent['latency_ms_p99'])}; {agent['events']} events received over MQTT"
        + _incidents(agent)
        + ".",
        "",
        "## Stages (wall seconds)",
        "",
    ]
    lines += _table(["stage", "seconds"], list(summary["stages"].items()))
    return "\n".join(lines) + "\n"


def detections_json(detections: Sequence[Detection]) -> list[dict[str, Any]]:
    """Detections as JSON-able dicts (what summary.json holds)."""
    return [asdict(d) for d in detections]
