"""The agent end to end: replay CLI without TensorFlow, the app's threads, model updates."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agent.app import App, DropOldestQueue, Pipeline, sample_every
from agent.bundle import load_bundle
from agent.cli import main as iotids
from agent.config import parse_config
from agent.features.schema import FeatureSet
from agent.features.traffic import TRAFFIC_V1
from agent.inference import Debounce, ModelSlot, anomaly_scores
from agent.report.memory import MemorySink
from agent.sources import StepBatch
from tests.agent import agent_run
from tests.agent.bundles import bundle_bytes, manifest_for, tampered, with_fields
from tests.agent.flood_bundle import REPO, FloodKit, flood_kit
from tests.broker import Broker
from tests.gateway import iotids_without_tensorflow


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> FloodKit:
    return flood_kit(tmp_path_factory.mktemp("flood"))


def _config(kit: FloodKit, state: Path, **source: Any) -> Any:
    return parse_config(
        {
            "agent": {
                "device_id": "gw-test",
                "state_dir": str(state),
                "trusted_keys": [str(kit.public_key)],
                "stats_interval": 0.2,
            },
            "mqtt": {"enabled": False},
            "sources": [{"name": "lan", "kind": "pcap", "path": str(kit.capture), **source}],
            "models": [{"name": "cnn", "bundle": str(kit.bundle), "source": "lan"}],
        }
    )


def test_replay_cli_runs_with_tensorflow_blocked(kit: FloodKit) -> None:
    args = ["agent", "replay", "--bundle", str(kit.bundle), "--capture", str(kit.capture)]
    args += ["--trust-key", str(kit.public_key), "--json"]
    done = iotids_without_tensorflow(*args)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "LOADED=\n" in done.stderr or done.stderr.rstrip().endswith("LOADED=")
    events = [json.loads(line) for line in done.stdout.splitlines()]
    kinds = [e["type"] for e in events]
    assert kinds[0] == "new"
    assert kinds[-1] == "end"
    assert {e["detection"] for e in events} == {events[0]["detection"]}
    new = events[0]
    assert new["label"] == "flood"
    assert new["category"] == "flood"  # the family of the fixture bundle's old "dos" category
    assert new["model"] == "flood-int8-test"
    assert new["evidence"]["top_ports"][0]["port"] == 80
    assert new["evidence"]["packets"] > 2000
    # raised within 3 steps of the flood's first packet (k=2 of 3 debounce on 1 s steps)
    assert 0 < new["window_end"] - kit.flood_start <= 3.0
    assert "packets/s" in done.stderr


def test_replay_refuses_an_untrusted_bundle_in_one_line(kit: FloodKit, tmp_path: Path) -> None:
    other = tmp_path / "other.pub"
    from tests.agent.bundles import new_key

    _, other = new_key(tmp_path)
    code = iotids(
        [
            *("agent", "replay", "--bundle", str(kit.bundle), "--capture", str(kit.capture)),
            *("--trust-key", str(other)),
        ]
    )
    assert code == 2


def test_app_replays_a_capture_into_sinks(kit: FloodKit, tmp_path: Path) -> None:
    sink = MemorySink()
    app = App(_config(kit, tmp_path), sinks=[sink])
    thread = threading.Thread(target=app.run, name="agent-under-test")
    thread.start()
    thread.join(60)
    assert not thread.is_alive()
    kinds = [e["type"] for e in sink.events]
    assert kinds[0] == "new"
    assert kinds[-1] == "end"
    assert sink.events[0]["label"] == "flood"
    assert sink.models[0]["bundle_id"] == "flood-int8-test"
    assert sink.closed
    stats: dict[str, Any] = sink.stats[-1]
    assert stats["packets"] == 16160
    assert stats["sampling_ratio"] == 1.0
    assert stats["active_model"] == {"cnn": "flood-int8-test"}
    assert stats["rss_bytes"] > 0
    assert stats["latency_ms_p50"] is not None


def test_two_models_on_two_sources_traffic_and_telemetry_anomaly(
    kit: FloodKit, tmp_path: Path
) -> None:
    plant = tmp_path / "plant.csv"
    temps = [20.0] * 15 + [100.0] * 10 + [20.0] * 15
    plant.write_text(
        "timestamp,temp\n" + "".join(f"{1_700_000_000 + i},{t}\n" for i, t in enumerate(temps))
    )
    config = parse_config(
        {
            "agent": {
                "device_id": "gw-test",
                "state_dir": str(tmp_path),
                "trusted_keys": [str(kit.public_key)],
            },
            "mqtt": {"enabled": False},
            "sources": [
                {"name": "lan", "kind": "pcap", "path": str(kit.capture)},
                {"name": "plant", "kind": "csv", "path": str(plant), "sensors": ["temp"]},
            ],
            "models": [
                {"name": "cnn", "bundle": str(kit.bundle), "source": "lan"},
                {"name": "boiler", "bundle": str(kit.anomaly_bundle), "source": "plant"},
            ],
        }
    )
    sink = MemorySink()
    app = App(config, sinks=[sink])
    thread = threading.Thread(target=app.run, name="agent-under-test")
    thread.start()
    thread.join(60)
    assert not thread.is_alive()
    by_source = {(e["source"], e["type"], e["label"], e["category"]) for e in sink.events}
    # categories are families: "dos" is a flood, an anomaly model's "process" has no family
    assert ("lan", "new", "flood", "flood") in by_source
    assert ("plant", "new", "anomaly", "unknown") in by_source
    assert ("plant", "end", "anomaly", "unknown") in by_source
    anomaly: dict[str, Any] = next(
        e for e in sink.events if e["source"] == "plant" and e["type"] == "new"
    )
    assert 1_700_000_015 < anomaly["window_end"] <= 1_700_000_025
    assert anomaly["model"] == "boiler-anomaly"
    assert anomaly["evidence"]["packets"] == 0  # telemetry carries no packet evidence


@pytest.mark.slow
def test_model_updates_refuse_bad_bundles_and_activate_a_good_one(
    kit: FloodKit, tmp_path: Path
) -> None:
    from tests.agent.bundles import new_key

    good_manifest = manifest_for(
        kit.model, TRAFFIC_V1, bundle_id="flood-v2", signer=kit.signer, version=1
    )  # type: ignore[arg-type]
    good = bundle_bytes(good_manifest, kit.model, kit.signer)  # type: ignore[arg-type]
    telemetry = FeatureSet("telemetry", 1, TRAFFIC_V1.columns)
    wrong = with_fields(good_manifest, feature_set=telemetry.id, schema_id=telemetry.schema_id)
    stranger, _ = new_key(tmp_path)
    updates = [
        (bundle_bytes(good_manifest, kit.model, None), "unsigned"),
        (tampered(good), "invalid for trusted key"),
        (
            bundle_bytes(
                manifest_for(kit.model, TRAFFIC_V1, bundle_id="evil", signer=stranger),
                kit.model,
                stranger,
            ),
            "untrusted key",
        ),
        (bundle_bytes(wrong, kit.model, kit.signer), "bundle schema"),  # type: ignore[arg-type]
    ]
    sink = MemorySink()
    config = _config(kit, tmp_path, realtime=True, loop=True)
    app = App(config, sinks=[sink])
    thread = threading.Thread(target=app.run, name="agent-under-test")
    thread.start()
    try:
        for data, _ in updates:
            app.on_model_set(data)
        app.on_model_set(good)
        deadline = time.monotonic() + 20
        slot = app.pipeline.slot_list()[0]
        while time.monotonic() < deadline and slot.bundle_id != "flood-v2":
            time.sleep(0.1)
        assert slot.bundle_id == "flood-v2"
        while time.monotonic() < deadline + 10 and app.pipeline.windows_seen < 2:
            time.sleep(0.1)
        assert app.pipeline.windows_seen >= 2  # detection goes on after the swap
    finally:
        app.stop.set()
        thread.join(20)
    results: list[Any] = [m["last_update"] for m in sink.models if "last_update" in m]
    assert [r["result"] for r in results] == ["refused"] * 4 + ["activated"]
    for result, (_, reason) in zip(results, updates, strict=False):
        assert reason in result["reason"]
    saved = tmp_path / "models" / "cnn.bundle"
    assert saved.read_bytes() == good
    # the active bundle survives a restart
    again = App(config, sinks=[MemorySink()])
    try:
        assert again.pipeline.slot_list()[0].bundle_id == "flood-v2"
    finally:
        again.shutdown()


def test_sampling_under_load_still_raises_the_flood(kit: FloodKit) -> None:
    bundle = load_bundle(kit.bundle, [kit.public_key.read_bytes()])
    slot = ModelSlot("cnn", "lan", TRAFFIC_V1, bundle.manifest.step, bundle, Debounce(2, 3, 3))
    width = TRAFFIC_V1.width
    calm = np.zeros((20, width), np.float32)
    calm[:, 0] = 5
    flood = np.zeros((40, width), np.float32)
    flood[:, 0] = 5000
    values = np.concatenate([calm, flood])
    starts = np.arange(len(values), dtype=np.int64) * 1_000_000_000
    events = slot.push(StepBatch(starts, values), sample_every=4)
    assert slot.windows_seen == 57
    assert slot.windows_scored == 15  # windows 0, 4, 8 ...
    assert [e.kind for e in events] == ["new", "update"] or [e.kind for e in events] == ["new"]
    assert events[0].label == "flood"


def test_drop_oldest_queue_counts_and_sampling_grows_with_backlog() -> None:
    q: DropOldestQueue[int] = DropOldestQueue(3)
    assert [q.put(i) for i in range(5)] == [0, 0, 0, 1, 1]
    assert q.dropped == 2
    assert [q.get(0.01) for _ in range(4)] == [2, 3, 4, None]
    stop = threading.Event()
    stop.set()
    for i in range(3):
        assert q.put_wait(i, stop)
    assert not q.put_wait(9, stop)  # full and stopping: gives up instead of blocking forever
    assert [sample_every(d, 256) for d in (0, 63, 64, 128, 256)] == [1, 1, 2, 4, 8]


def test_the_step_queue_is_bounded_by_steps_not_batches() -> None:
    q: DropOldestQueue[list[int]] = DropOldestQueue(10, weigh=len)
    assert q.put([1] * 4) == 0
    assert q.put([2] * 4) == 0
    # the steps dropped come back (the stats count steps): 12 steps > 10, the oldest batch goes
    assert q.put([3] * 4) == 4
    assert q.weight == 8
    assert q.put([4] * 30) == 8  # heavier than the capacity: accepted alone
    assert q.dropped == 3  # batches
    assert q.weight == 30
    assert q.get(0.01) == [4] * 30


def test_a_failing_sink_is_counted_and_does_not_stop_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Broken(MemorySink):
        def publish_stats(self, stats: Any) -> None:
            raise OSError("disk full")

    good = MemorySink()
    pipeline = Pipeline({}, [Broken(), good])
    with caplog.at_level("CRITICAL"):
        pipeline._each_sink(lambda s: s.publish_stats({"x": 1}))
    assert good.stats == [{"x": 1}]
    assert pipeline.sink_failures == {0: 1}


def test_anomaly_scores_for_reconstruction_forecast_and_scalar() -> None:
    x = np.zeros((2, 4, 3), np.float32)
    recon = np.ones((2, 4, 3), np.float32)
    assert anomaly_scores(x, recon).tolist() == [1.0, 1.0]
    forecast = np.full((2, 3), 2.0, np.float32)
    assert anomaly_scores(x, forecast).tolist() == [4.0, 4.0]
    assert anomaly_scores(x, np.array([[0.3], [0.7]], np.float32)).tolist() == pytest.approx(
        [0.3, 0.7]
    )


def test_validate_config_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.toml"
    good.write_text(
        f'[agent]\ndevice_id = "gw"\nstate_dir = "{tmp_path}"\n'
        '[[sources]]\nname = "h"\nkind = "host"\n'
    )
    assert iotids(["agent", "validate-config", str(good)]) == 0
    assert "ok (device gw, 1 sources, 0 models)" in capsys.readouterr().out
    bad = tmp_path / "bad.toml"
    bad.write_text('[agent]\ndevice_id = "gw"\n[mqtt]\nport = 70000\n')
    assert iotids(["agent", "validate-config", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "iotids agent: mqtt.port: must be 1..65535, got 70000"


def test_examples_in_firmware_configs_validate() -> None:
    from agent.config import load_config

    examples = sorted((REPO / "firmware_configs" / "examples").glob("*.toml"))
    assert len(examples) >= 3
    for path in examples:
        load_config(path)


def test_the_example_door_sensor_reads_its_texts_as_numbers() -> None:
    # a text payload without a values mapping is refused as not_a_number on every message
    from agent.config import load_config
    from agent.sources.sensors_payload import reading_value

    config = load_config(REPO / "firmware_configs" / "examples" / "traffic-telemetry.toml")
    topics = [t for source in config.sources for t in getattr(source.options, "topics", ())]
    (door,) = [t for t in topics if t.sensor == "door"]
    assert reading_value(b"open", door.field, door.values) == 1.0
    assert reading_value(b"closed", door.field, door.values) == 0.0


def test_agent_run_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(
        f'[agent]\ndevice_id = "gw"\nstate_dir = "{tmp_path}"\nstats_interval = 0.2\n'
        "[mqtt]\nenabled = false\n"
        '[[sources]]\nname = "host"\nkind = "host"\nstep = "0.2s"\n'
    )
    proc = agent_run.spawn(
        [sys.executable, "-m", "agent", "run", "--config", str(config)],
        tmp_path / "agent-stderr.log",
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    started = agent_run.wait_running(proc)
    time.sleep(0.5)
    rest = agent_run.stop(proc)[1]
    assert proc.returncode == 0
    assert "agent stopped" in rest
    assert "Traceback" not in started + rest


def test_agent_run_with_a_bad_config_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text('[agent]\ndevice_id = "gw"\n[[sources]]\nname = "x"\nkind = "pcapp"\n')
    done = subprocess.run(
        [sys.executable, "-m", "agent", "run", "--config", str(config)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "iotids agent: sources[0].kind: unknown source 'pcapp' "
        "(valid: csv, host, live, live-ring, mqtt-sensors, pcap)"
    )


@pytest.mark.broker
def test_agent_run_reports_over_mqtt(
    kit: FloodKit,
    tmp_path: Path,
    mosquitto: Broker,
) -> None:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    received: list[tuple[str, bytes]] = []
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="watcher")
    client.on_message = lambda c, u, m: received.append((m.topic, bytes(m.payload)))
    client.connect(mosquitto.host, mosquitto.port)
    client.subscribe("iotids/#", qos=1)
    client.loop_start()
    config = tmp_path / "agent.toml"
    config.write_text(
        f'[agent]\ndevice_id = "gw-mqtt"\nstate_dir = "{tmp_path}"\n'
        f'trusted_keys = ["{kit.public_key}"]\n'
        f'[mqtt]\nhost = "{mosquitto.host}"\nport = {mosquitto.port}\n'
        f'[[sources]]\nname = "cap"\nkind = "pcap"\npath = "{kit.capture}"\n'
        f'[[models]]\nname = "cnn"\nbundle = "{kit.bundle}"\nsource = "cap"\n'
    )
    try:
        done = subprocess.run(
            [sys.executable, "-m", "agent", "run", "--config", str(config)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and (
            not received or received[-1] != ("iotids/gw-mqtt/status", b"offline")
        ):
            time.sleep(0.1)
    finally:
        client.loop_stop()
        client.disconnect()
    topics = [t for t, _ in received]
    assert topics[0] == "iotids/gw-mqtt/status"
    assert received[0][1] == b"online"
    assert received[-1] == ("iotids/gw-mqtt/status", b"offline")
    events = [json.loads(p) for t, p in received if t == "iotids/gw-mqtt/events"]
    assert events[0]["type"] == "new"
    assert events[-1]["type"] == "end"
    assert events[0]["label"] == "flood"
    assert "iotids/gw-mqtt/model" in topics


def test_a_missing_capture_is_one_config_line_at_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(
        f'[agent]\ndevice_id = "gw"\nstate_dir = "{tmp_path}"\n[mqtt]\nenabled = false\n'
        f'[[sources]]\nname = "cap"\nkind = "pcap"\npath = "{tmp_path}/none.pcap"\n'
    )
    assert iotids(["agent", "run", "--config", str(config)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("iotids agent: sources[0].path: ")
    assert err.endswith("none.pcap: no such file")
    assert "\n" not in err
