"""``iotids demo``: the whole pipeline end to end on built-in data, in minutes.

Generate a training scenario and a different test scenario (traffic and telemetry) -> train a
CNN on traffic windows and a GRU anomaly model on telemetry -> make a signing key, convert
both to signed int8 bundles and verify them on the real interpreter -> start the embedded
broker unless ``--broker`` names one -> run the agent as a subprocess on the test data and
show its detections arriving over MQTT -> score them against the ground truth and write
``summary.json`` / ``summary.md`` beside the training reports, plots and bundles. Every
process and thread it starts is stopped on the way out, Ctrl-C and SIGTERM included.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, TextIO

from console.demo_build import (
    PLANS,
    DemoError,
    DemoPlan,
    Layout,
    RunTruth,
    bundles,
    generate,
    train_all,
)

if TYPE_CHECKING:
    from console.demo_view import LiveView

__all__ = ["PLANS", "DemoError", "DemoPlan", "Layout", "RunTruth", "agent_config_text", "run"]

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
DEVICE = "demo-gateway"
EXIT_INTERRUPTED = 130
AGENT_STOP_TIMEOUT = 15.0  # seconds between SIGTERM and SIGKILL for the agent subprocess


def configure(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``iotids demo``."""
    parser.add_argument(
        "-o",
        "--out",
        type=Path,
        default=Path("demo-out"),
        help="output folder, reused on the next run (default: demo-out)",
    )
    parser.add_argument(
        "--broker",
        help="report to this broker, mqtt://host:port or mqtts://host:port "
        "(default: an embedded broker on a free loopback port)",
    )
    parser.add_argument("--quick", action="store_true", help="shrink every stage (for tests)")
    parser.add_argument("--seed", type=int, default=0, help="shifts every scenario's seed")


def run(args: argparse.Namespace) -> int:
    """Run the demo; 0 when it completed, 1 when a stage failed, 130 when interrupted."""
    restore = _sigterm_interrupts()
    if not getattr(args, "verbose", 0):
        _quiet_stages()
    try:
        return _demo(args.out, args.broker, PLANS["quick" if args.quick else "full"], args.seed)
    except KeyboardInterrupt:
        _say("iotids demo: interrupted; every process it started has been stopped", sys.stderr)
        return EXIT_INTERRUPTED
    except DemoError as exc:
        _say(f"iotids demo: {exc}", sys.stderr)
        return 1
    finally:
        restore()


def _quiet_stages() -> None:
    """Stage loggers down to warnings: the progress lines say what happened, the reports more."""
    for name in ("training", "converters", "agent"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # per-class split counts of the small demo sets; report.md of each model lists them
    logging.getLogger("training.split").setLevel(logging.ERROR)


def _say(text: str, stream: TextIO | None = None) -> None:
    print(text, file=stream or sys.stdout, flush=True)


def _sigterm_interrupts() -> Callable[[], None]:
    """Make SIGTERM unwind like Ctrl-C (so cleanup runs); returns the restoring function."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def _interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    signal.signal(signal.SIGTERM, _interrupt)

    def restore() -> None:
        for signum, handler in previous.items():
            signal.signal(signum, handler)

    return restore


def _ignore_interrupts() -> None:
    """While cleaning up, a second Ctrl-C must not leave the agent or the broker behind."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)


class Progress:
    """One line per stage with the seconds since the demo began; keeps each stage's duration."""

    def __init__(self) -> None:
        self.began = time.monotonic()
        self.stages: dict[str, float] = {}

    def line(self, text: str) -> None:
        """Print ``[ elapsed s] text``."""
        _say(f"[{time.monotonic() - self.began:6.1f} s] {text}")

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[dict[str, str]]:
        """Time a stage; the body may put a one-line result under ``"detail"``."""
        self.line(f"{name} ...")
        began = time.monotonic()
        result: dict[str, str] = {}
        yield result
        self.stages[name] = round(time.monotonic() - began, 2)
        self.line(f"{name}: {result.get('detail', 'done')} ({self.stages[name]:.1f} s)")


def _demo(out: Path, broker_url: str | None, plan: DemoPlan, seed: int) -> int:
    """Every stage in order; cleanup on any exit."""
    progress = Progress()
    layout = Layout(out.resolve())
    for stale in (layout.key.parent, layout.state):  # a fresh key and an empty outbox per run
        shutil.rmtree(stale, ignore_errors=True)
    with progress.stage("generate scenarios") as result:
        truth = generate(layout, plan, seed)
        result["detail"] = truth.describe()
    with progress.stage("train models") as result:
        result["detail"] = train_all(layout, plan, seed)
    with progress.stage("sign, convert and verify bundles") as result:
        models = bundles(layout, plan)
        result["detail"] = ", ".join(
            f"{name} {m['bundle_bytes'] / 1024:.0f} KiB macro-F1 {m['macro_f1']:.3f}"
            for name, m in models.items()
        )
    with contextlib.ExitStack() as stack:
        try:
            host, port, tls, label = _broker(stack, broker_url, progress)
            config = _write_agent_config(layout, truth, host, port, tls, plan.replay_seconds)
            with progress.stage(f"agent on the test scenario, reporting to {label}") as result:
                events, stats = _run_agent(
                    stack, layout, config, truth.packets, plan, host, port, tls
                )
                result["detail"] = f"{len(events)} events over MQTT"
        except BaseException:
            _ignore_interrupts()  # the stack now stops the agent, the view and the broker
            raise
    with progress.stage("summary") as result:
        summary = _summary(layout, truth, plan, models, events, stats, progress, broker_url, seed)
        result["detail"] = f"wrote {layout.root / 'summary.json'} and summary.md"
    from console.demo_view import render_summary

    _say("")
    _say(render_summary(summary))
    progress.line(f"demo finished; everything is in {layout.root}")
    return 0


# -- stage 4: broker --------------------------------------------------------------------------


def _broker(
    stack: contextlib.ExitStack, url: str | None, progress: Progress
) -> tuple[str, int, bool, str]:
    """(host, port, tls, shown name) of the broker: the one named, or an embedded one."""
    from agent.broker_url import BrokerUrlError, parse_broker_url

    if url is not None:
        try:
            parsed = parse_broker_url(url)
        except BrokerUrlError as exc:
            raise DemoError(str(exc)) from None
        return parsed.host, parsed.port, parsed.tls, str(parsed)
    from console.embedded_broker import EmbeddedBroker, EmbeddedBrokerError

    with progress.stage("embedded MQTT broker") as result:
        broker = EmbeddedBroker()
        try:
            broker.start()
        except EmbeddedBrokerError as exc:
            raise DemoError(str(exc)) from None
        stack.callback(broker.stop)
        result["detail"] = f"listening on {broker.url}"
    return broker.host, broker.port, False, f"the embedded broker {broker.url}"


# -- stage 5: the agent -----------------------------------------------------------------------


def agent_config_text(
    layout: Layout,
    truth: RunTruth,
    host: str,
    port: int,
    tls: bool,
    replay_seconds: float = 0.0,
) -> str:
    """The agent's TOML: pcap + csv replay, both bundles, a host source, MQTT to the broker.

    With ``replay_seconds`` both files are paced (``realtime`` with a ``speed``) so that they
    take about that long, and detections arrive as a stream a person can watch. The host
    source never ends, so the agent keeps running (and its outbox keeps draining) after both
    files are replayed; the demo stops it once every event has arrived.
    """
    from agent.config import parse_config
    from agent.config_render import render_config

    traffic = {"name": "traffic", "kind": "pcap", "path": str(truth.pcap), "step": "1s"}
    telemetry = {
        "name": "telemetry",
        "kind": "csv",
        "path": str(truth.telemetry_csv),
        "sensors": list(truth.sensors),
        "step": "1s",
    }
    config = {
        "agent": {
            "device_id": DEVICE,
            "state_dir": str(layout.state),
            "stats_interval": 1.0,
            "queue_size": 65536,
            "trusted_keys": [str(layout.key.with_suffix(".pub"))],
        },
        "mqtt": {
            "host": host,
            "port": port,
            "replay_rate": 1000.0,
            "homeassistant": {"enabled": False},
            **({"tls": {}} if tls else {}),
        },
        "sources": [
            {**traffic, **_pacing(truth.traffic_seconds, replay_seconds)},
            {**telemetry, **_pacing(truth.telemetry_seconds, replay_seconds)},
            {"name": "host", "kind": "host"},
        ],
        "models": [
            {"name": name, "bundle": str(layout.bundle(name)), "source": source}
            for name, source in (("traffic-cnn", "traffic"), ("telemetry-gru", "telemetry"))
        ],
    }
    comments = {"agent.queue_size": "files are replayed whole: never sample windows"}
    return render_config(
        parse_config(config), header=["written by `iotids demo`"], comments=comments
    )


def _pacing(span_seconds: float, replay_seconds: float) -> dict[str, object]:
    """Source keys that replay ``span_seconds`` of data in about ``replay_seconds``."""
    if replay_seconds <= 0 or span_seconds <= 0:
        return {}
    return {"realtime": True, "speed": round(max(span_seconds / replay_seconds, 1.0), 3)}


def _write_agent_config(
    layout: Layout, truth: RunTruth, host: str, port: int, tls: bool, replay_seconds: float
) -> Path:
    path = layout.root / "agent.toml"
    text = agent_config_text(layout, truth, host, port, tls, replay_seconds)
    path.write_text(text, encoding="utf-8")
    return path


def _run_agent(
    stack: contextlib.ExitStack,
    layout: Layout,
    config: Path,
    packets: int,
    plan: DemoPlan,
    host: str,
    port: int,
    tls: bool,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Start the view and the agent subprocess; wait until the replay's events have arrived."""
    from console.demo_view import LiveView, ViewError

    view = LiveView(host, port, DEVICE, tls=tls)
    try:
        view.start()
    except ViewError as exc:
        raise DemoError(f"cannot follow the agent: {exc}") from None
    stack.callback(view.close)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    log_path = layout.root / "agent.log"
    log = stack.enter_context(log_path.open("wb"))
    process = subprocess.Popen(
        [sys.executable, "-m", "agent", "run", "--config", str(config)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,  # Ctrl-C reaches the demo only; the demo stops the agent
    )
    stack.callback(stop_process, process)
    _wait_replayed(process, view, packets, plan.agent_timeout, log_path)
    view.close()  # ends the status line before the next progress line
    return view.received_events(), list(view.stats)


def _wait_replayed(
    process: subprocess.Popen[bytes], view: LiveView, packets: int, timeout: float, log: Path
) -> None:
    """Wait for a stats message after the one that counted every packet.

    The outbox delivers in order, so every event the agent raised before that second stats
    message has arrived by then (the csv replay ends well within the stats interval).
    """
    deadline = time.monotonic() + timeout
    complete_at: int | None = None
    while time.monotonic() < deadline:
        code = process.poll()
        if code is not None:
            raise DemoError(f"the agent exited with code {code}: {_last_line(log)} (see {log})")
        latest = view.latest_stats()
        count = view.stats_count()
        if complete_at is None and latest is not None and int(latest.get("packets", 0)) >= packets:
            complete_at = count
        if complete_at is not None and count > complete_at:
            return
        time.sleep(0.1)
    raise DemoError(f"the agent did not replay the test data within {timeout:.0f} s (see {log})")


def _last_line(log: Path) -> str:
    lines = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    return lines[-1] if lines else "no output"


def stop_process(process: subprocess.Popen[bytes]) -> int:
    """SIGTERM (the agent's clean shutdown), SIGKILL if it lingers; returns the exit code."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(AGENT_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            logger.warning("agent pid %d ignored SIGTERM for %.0f s; killing it", process.pid, 15)
            process.kill()
    return process.wait()


# -- stage 6: summary -------------------------------------------------------------------------


def _summary(
    layout: Layout,
    truth: RunTruth,
    plan: DemoPlan,
    models: dict[str, dict[str, Any]],
    events: list[dict[str, Any]],
    stats: list[dict[str, Any]],
    progress: Progress,
    broker_url: str | None,
    seed: int,
) -> dict[str, Any]:
    """Score the received events against the truth; write summary.json and summary.md."""
    from agent.contract import incident_of
    from console.demo_view import Truth, detections_json, render_summary, score_detections

    truths = [Truth(label, a, b, "traffic") for label, a, b in truth.attacks]
    truths += [Truth(label, a, b, "telemetry") for label, a, b in truth.faults]
    detections, false_alarms = score_detections(
        truths,
        events,
        window_s={"traffic": float(plan.traffic_window), "telemetry": plan.telemetry_window},
        step_s={"traffic": 1.0, "telemetry": 1.0},
        any_label=("telemetry",),  # the anomaly model says anomaly, not the fault's kind
    )
    latencies = [s for s in stats if s.get("latency_ms_p50") is not None]
    summary: dict[str, Any] = {
        "schema": "iotids.demo-summary/1",
        "plan": asdict(plan),
        "seed": seed,
        "broker": broker_url or "embedded",
        "detections": detections_json(detections),
        "false_alarms": [
            {k: a.get(k) for k in ("detection", "source", "label", "start", "end", "score")}
            for a in false_alarms
        ],
        "models": models,
        "agent": {
            "packets": max((int(s.get("packets", 0)) for s in stats), default=0),
            "rss_mib_max": max((int(s.get("rss_bytes") or 0) for s in stats), default=0) / 2**20,
            "latency_ms_p50": latencies[-1]["latency_ms_p50"] if latencies else None,
            "latency_ms_p99": latencies[-1]["latency_ms_p99"] if latencies else None,
            "events": len(events),
            "detections": sum(1 for e in events if e.get("type") == "new"),
            "incidents": len({incident_of(e) for e in events if e.get("type") == "new"}),
        },
        "stages": dict(progress.stages),
    }
    (layout.root / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (layout.root / "summary.md").write_text(render_summary(summary), encoding="utf-8")
    return summary
