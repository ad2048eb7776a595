"""The Prometheus exposition: valid text, escaped labels, bounded per-gateway series, over HTTP."""

from __future__ import annotations

import re
import time
import urllib.error
import urllib.request

import pytest

from console.collector.metrics import CONTENT_TYPE, FleetMetrics, serve
from tests.broker import HOST, free_port

# One sample line of the text format: name, optional {labels}, a value.
SAMPLE = re.compile(r'^[a-z_]+(\{([a-z_]+="([^"\\]|\\.)*",?)*\})? (-?[0-9.e+]+|NaN|[+-]Inf)$')


def _samples(text: str) -> dict[str, float]:
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    for line in lines:
        assert SAMPLE.match(line), line
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in lines}


def test_counts_and_gauges_render_as_exposition_text() -> None:
    metrics = FleetMetrics()
    metrics.message("events", "stored")
    metrics.message("events", "stored")
    metrics.message("events", "duplicate")
    metrics.bad("not json")
    metrics.event("new", "ddos")
    metrics.incident("ddos")
    metrics.heard("gw-1", 100.0, online=True, gauges={"outbox_depth": 3, "cpu_percent": 12.5})
    metrics.heard("gw-2", 50.0, online=False)
    samples = _samples(metrics.render())
    assert samples['iotids_collector_messages_total{kind="events",result="stored"}'] == 2
    assert samples['iotids_collector_messages_total{kind="events",result="duplicate"}'] == 1
    assert samples['iotids_collector_bad_payloads_total{reason="not json"}'] == 1
    assert samples['iotids_events_total{type="new",category="ddos"}'] == 1
    assert samples['iotids_incidents_total{category="ddos"}'] == 1
    assert samples['iotids_gateways{status="online"}'] == 1
    assert samples['iotids_gateways{status="offline"}'] == 1
    assert samples['iotids_gateway_up{device="gw-2"}'] == 0
    assert samples['iotids_gateway_outbox_depth{device="gw-1"}'] == 3
    assert samples['iotids_gateway_last_seen_seconds{device="gw-1"}'] == 100.0


def test_hostile_device_ids_are_escaped_and_bounded() -> None:
    metrics = FleetMetrics(max_devices=2)
    metrics.heard('gw"} 1\nfake_metric 9', 1.0, online=True)
    metrics.heard("gw\\2", 1.0, online=True, gauges={"cpu_percent": float("nan")})
    metrics.heard("gw-3", 1.0, online=True)
    samples = _samples(metrics.render())
    assert "fake_metric" not in {name.split("{")[0] for name in samples}
    assert samples["iotids_collector_untracked_total"] == 1
    assert samples['iotids_gateways{status="online"}'] == 2
    assert not any("cpu_percent" in name for name in samples)  # NaN figures are not kept


def test_invented_categories_cannot_grow_the_series_without_bound() -> None:
    from console.collector.metrics import MAX_CATEGORIES

    metrics = FleetMetrics()
    metrics.event("new", "flood")
    for i in range(10_000):
        metrics.event("new", f"made-up-{i}")
        metrics.incident(f"made-up-{i}")
    metrics.event("end", "flood")  # a family already in use keeps its own series
    samples = _samples(metrics.render())
    events = {k: v for k, v in samples.items() if k.startswith("iotids_events_total{")}
    assert len(events) == MAX_CATEGORIES + 2  # new per category, other, end flood
    assert (
        samples['iotids_events_total{type="new",category="other"}'] == 10_000 - MAX_CATEGORIES + 1
    )
    assert samples['iotids_events_total{type="end",category="flood"}'] == 1
    incidents = [k for k in samples if k.startswith("iotids_incidents_total{")]
    assert len(incidents) == MAX_CATEGORIES


def test_served_over_http_at_metrics_only() -> None:
    metrics = FleetMetrics()
    metrics.message("stats", "stored")
    port = free_port()
    server = serve(metrics, HOST, port)
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}/metrics", timeout=5) as reply:
            assert reply.headers["Content-Type"] == CONTENT_TYPE
            body = reply.read().decode()
        assert 'iotids_collector_messages_total{kind="stats",result="stored"} 1.0' in body
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(f"http://{HOST}:{port}/other", timeout=5)
        assert caught.value.code == 404
        caught.value.close()
    finally:
        server.shutdown()
        server.server_close()


def test_idle_clients_are_bounded_and_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    # idle connections held by the hundred used up the collector's file descriptors
    import socket
    import threading

    from console.collector import metrics as module

    monkeypatch.setattr(module._Handler, "timeout", 1.0)
    port = free_port()
    server = serve(FleetMetrics(), HOST, port)
    idle = []
    try:
        before = threading.active_count()
        for _ in range(module.MAX_HTTP_CLIENTS + 10):
            idle.append(socket.create_connection((HOST, port), timeout=5))
        time.sleep(0.3)
        assert threading.active_count() - before <= module.MAX_HTTP_CLIENTS
        refused = idle[-1]
        assert refused.recv(1) == b""  # closed at once, past the bound
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and threading.active_count() > before:
            time.sleep(0.1)
        assert threading.active_count() == before  # the idle ones timed out
        with urllib.request.urlopen(f"http://{HOST}:{port}/metrics", timeout=5) as reply:
            assert reply.status == 200
    finally:
        for conn in idle:
            conn.close()
        server.shutdown()
        server.server_close()


def test_the_grafana_dashboard_queries_only_metrics_the_collector_exports() -> None:
    import json
    from pathlib import Path

    import console.collector

    dashboard = json.loads(
        (Path(console.collector.__file__).parent / "grafana.json").read_text(encoding="utf-8")
    )
    lines = FleetMetrics().render().splitlines()
    exported = {line.split()[2] for line in lines if line.startswith("# TYPE")}
    queried = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"\biotids_[a-z_]+", target["expr"])
    }
    assert queried, "the dashboard queries nothing"
    assert queried <= exported, queried - exported
