"""Hostile sensor messages and replay files against the real agent process.

The agent runs as ``python -m agent run`` (as systemd starts it) with sources and no models:
what matters here is that a hostile message or row is counted and skipped, that the source
keeps counting good readings afterwards, that memory stays bounded, and that a source that
cannot go on ends the agent with a non-zero status (so ``Restart=on-failure`` acts).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.agent.bundles import flood_frames, pcap_bytes
from tests.broker import REPO, Broker, Probe

RSS_LIMIT_KB = 400 * 1024  # the agent with numpy loaded is ~60 MB; a runaway allocation is GBs
# ``python -m agent`` that also prints its own peak RSS on exit, from VmHWM: ru_maxrss would mix
# in other processes (RUSAGE_CHILDREN every child this session waited for; RUSAGE_SELF, on Linux,
# the high-water mark this process inherited from the large pytest process it was forked from).
AGENT_WITH_PEAK = (
    "import sys\n"
    "from agent.__main__ import main\n"
    "code = main(sys.argv[1:])\n"
    "status = open('/proc/self/status').read().split('VmHWM:', 1)[1]\n"
    "sys.stderr.write(f'PEAK_RSS_KB={int(status.split()[0])}\\n')\n"
    "sys.exit(code)\n"
)


def _start_agent(tmp_path: Path, body: str) -> tuple[subprocess.Popen[bytes], Path]:
    config = tmp_path / "agent.toml"
    config.write_text(f'[agent]\ndevice_id = "gw"\nstate_dir = "{tmp_path / "state"}"\n{body}')
    log = tmp_path / "agent.log"
    with log.open("wb") as err:
        process = subprocess.Popen(
            [sys.executable, "-c", AGENT_WITH_PEAK, "run", "--config", str(config)],
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    return process, log


def _run_agent(tmp_path: Path, body: str, timeout: float = 60.0) -> tuple[int, str]:
    process, log = _start_agent(tmp_path, body)
    try:
        code = process.wait(timeout)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return code, log.read_text(errors="replace")


def _no_mqtt() -> str:
    return "[mqtt]\nenabled = false\n"


# --- sensor payloads -------------------------------------------------------------------------

HOSTILE_PAYLOADS: dict[str, bytes] = {
    "deep_array": b"[" * 100_000,  # 100 KB: over the size cap
    "deep_array_small": b"[" * 10_000,  # under the size cap, too deep for json's recursion
    "deep_object": b'{"v":' * 3_000 + b"1" + b"}" * 3_000,
    "long_integer": b"1" * 400,
    "long_json_integer": b'{"v": ' + b"9" * 400 + b"}",
    "huge": b"7" * 2_000_000,
    "invalid_utf8": b"\xff\xfe21.5",
    "nan": b"NaN",
    "infinity": b"Infinity",
    "json_nan": b'{"v": NaN}',
    "nested_field": b'{"v": {"w": 1}}',
    "true": b"true",
    "open": b'"open"',
    "underscore": b"1_0",
    "empty": b"",
}


@pytest.mark.broker
@pytest.mark.slow
def test_hostile_sensor_messages_never_blind_the_source(mosquitto: Broker, tmp_path: Path) -> None:
    body = f"""
[mqtt]
host = "{mosquitto.host}"
port = {mosquitto.port}
keepalive = 5
[mqtt.homeassistant]
enabled = false
[[sources]]
name = "plant"
kind = "mqtt-sensors"
step = "0.5s"
topics = [
  {{ topic = "plant/temp", sensor = "temp" }},
  {{ topic = "plant/json", sensor = "level", field = "v" }},
  {{ topic = "plant/door", sensor = "door", values = {{ open = 1, closed = 0 }} }},
]
"""
    process, log = _start_agent(tmp_path, "stats_interval = 0.5\n" + body)
    stats_topic = "iotids/gw/stats"
    try:
        with Probe(mosquitto, [stats_topic, "iotids/gw/status"]) as probe:
            online = probe.wait_for(
                lambda m: m.topic == "iotids/gw/status" and m.payload == b"online", 20.0
            )
            assert online is not None, log.read_text()
            time.sleep(1.0)  # the sensor client subscribes once connected
            for payload in HOSTILE_PAYLOADS.values():
                probe.publish("plant/temp", payload)
                probe.publish("plant/json", payload)
            probe.publish("plant/door", b"ajar")  # not in the mapping
            # After all that, good readings still count: a number, a JSON field, a mapped text.
            probe.publish("plant/temp", b"21.5")
            probe.publish("plant/json", b'{"v": 3}')
            probe.publish("plant/door", b"open")
            stats = _stats_until(probe, stats_topic, lambda s: s["readings"] >= 3, 20.0)
            assert process.poll() is None, "the agent died"
            process.send_signal(signal.SIGTERM)
            assert process.wait(20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert stats["readings"] == 3, stats
    malformed = stats["malformed"]
    for reason in ("too_deep", "out_of_range", "too_large", "not_utf8", "non_finite"):
        assert malformed.get(reason, 0) >= 1, (reason, malformed)
    assert malformed["not_a_number"] >= 5  # true, "open", 1_0, empty, ajar
    # every hostile payload refused on both topics, plus "ajar": none lost, none let through
    assert sum(malformed.values()) == 2 * len(HOSTILE_PAYLOADS) + 1, malformed
    assert "unexpected" not in malformed
    text = log.read_text(errors="replace")
    assert "Traceback" not in text
    assert "RecursionError" not in text


def _stats_until(probe: Probe, topic: str, done, timeout: float) -> dict:  # type: ignore[no-untyped-def, type-arg]
    deadline = time.monotonic() + timeout
    last: dict = {}  # type: ignore[type-arg]
    while time.monotonic() < deadline:
        message = probe.wait_for(lambda m: m.topic == topic, max(deadline - time.monotonic(), 0.1))
        if message is None:
            break
        last = json.loads(message.payload)
        if done(last):
            return last
    raise AssertionError(f"stats never reached the expected state; last: {last}")


# --- CSV replays ---------------------------------------------------------------------------


def _csv_body(path: Path) -> str:
    return (
        _no_mqtt()
        + f'[[sources]]\nname = "plant"\nkind = "csv"\npath = "{path}"\nsensors = ["temp"]\n'
    )


@pytest.mark.slow
def test_hostile_csv_rows_are_counted_and_memory_stays_bounded(tmp_path: Path) -> None:
    rows = [
        "1700000000,20",
        "1e30,21",  # far future: refused
        "9999-12-31T23:59:59,22",  # year 9999: refused
        "-5,23",  # before 1970: refused
        "1700000001,24",
        "100001700000000,25",  # a jump of 1e14 s (past 2200): refused
        "1800000000,26",  # a jump of 1e8 s: at most MAX_IDLE_STEPS empty steps
        "1700000002,27",  # back in time after the jump: a late reading, counted
        "1800000001," + "9" * 200_000,  # a field over 128 KiB: one long line, skipped
        '1800000002,"' + "x" * 140_000 + '"',  # a quoted field over csv's 128 KiB limit
        "1800000003,1_0",  # not a number
        "1800000004,28",
    ]
    path = tmp_path / "plant.csv"
    path.write_text("timestamp,temp\n" + "\n".join(rows) + "\n")
    code, log = _run_agent(tmp_path, 'log_level = "debug"\n' + _csv_body(path))
    assert code == 0, log
    assert "Traceback" not in log
    peak = int(log.rsplit("PEAK_RSS_KB=", 1)[1].split()[0])
    assert peak < RSS_LIMIT_KB, f"peak RSS {peak} KB"


def test_csv_source_counts_each_hostile_row(tmp_path: Path) -> None:
    from agent.config import parse_config
    from agent.features.telemetry import MAX_IDLE_STEPS
    from agent.sources import open_source

    rows = [
        "1700000000,20",
        "1e30,21",
        "9999-12-31T23:59:59,22",
        "-5,23",
        "1800000000,26",
        "1700000002,27",
        "1800000001," + "9" * 200_000,
        "1800000003,1_0",
        "1800000004,28",
    ]
    path = tmp_path / "plant.csv"
    path.write_text("timestamp,temp\n" + "\n".join(rows) + "\n")
    config = parse_config(
        {
            "agent": {"device_id": "gw"},
            "sources": [{"name": "p", "kind": "csv", "path": str(path), "sensors": ["temp"]}],
        }
    )
    source = open_source(config.sources[0], config)
    steps = 0
    while not source.finished:
        batch = source.read(timeout=1.0)
        steps += len(batch) if batch is not None else 0
    assert source.stats.malformed == {
        "bad_timestamp": 3,
        "line_too_long": 1,
        "bad_value": 1,
    }
    assert source.stats.readings == 4  # 20, 26, 27 (back in time, same chunk: sorted), 28
    assert steps <= 2 * MAX_IDLE_STEPS + 10  # the 1e8 s jump cost at most MAX_IDLE_STEPS steps


def test_bom_and_crlf_csv_is_accepted(tmp_path: Path) -> None:
    from agent.config import parse_config
    from agent.sources import open_source

    path = tmp_path / "excel.csv"
    path.write_bytes(b"\xef\xbb\xbftimestamp,temp\r\n1700000000,20\r\n1700000001,21\r\n")
    config = parse_config(
        {
            "agent": {"device_id": "gw"},
            "sources": [{"name": "p", "kind": "csv", "path": str(path), "sensors": ["temp"]}],
        }
    )
    source = open_source(config.sources[0], config)
    values = []
    while not source.finished:
        batch = source.read(timeout=1.0)
        if batch is not None and len(batch):
            values += batch.values[:, 0].tolist()
    assert values == [20.0, 21.0]
    assert not source.stats.malformed


# --- capture replays and dead sources --------------------------------------------------------


@pytest.mark.slow
def test_a_pcap_source_given_a_non_capture_is_one_line_and_exit_2(tmp_path: Path) -> None:
    notes = tmp_path / "notes.pcap"
    notes.write_text("timestamp,temp\n1,2\n")
    body = _no_mqtt() + f'[[sources]]\nname = "lan"\nkind = "pcap"\npath = "{notes}"\n'
    code, log = _run_agent(tmp_path, body)
    assert code == 2
    lines = [line for line in log.strip().splitlines() if not line.startswith("PEAK_RSS_KB=")]
    assert len(lines) == 1, log
    assert lines[0].startswith("iotids agent: sources[0] (lan): ")
    assert "not a pcap or pcapng capture" in lines[0]


@pytest.mark.slow
def test_a_replay_that_fails_mid_run_ends_the_agent_non_zero(tmp_path: Path) -> None:
    frames, _ = flood_frames(calm_s=2, flood_s=0, calm_after_s=0, flood_rate=10)
    capture = tmp_path / "loop.pcap"
    capture.write_bytes(pcap_bytes(frames))
    body = (
        _no_mqtt()
        + f'[[sources]]\nname = "lan"\nkind = "pcap"\npath = "{capture}"\n'
        + "realtime = true\nloop = true\n"
    )
    process, log = _start_agent(tmp_path, body)
    try:
        deadline = time.monotonic() + 20
        while "running" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        capture.write_text("no longer a capture\n")  # the next pass reopens it
        code = process.wait(30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    text = log.read_text()
    assert code == 1, text
    assert "file source lan failed" in text
    assert "exits with status 1" in text
    assert "Traceback" not in text


def test_a_realtime_csv_replay_holds_a_far_row_without_blocking(tmp_path: Path) -> None:
    from agent.config import parse_config
    from agent.sources import open_source

    path = tmp_path / "gap.csv"
    path.write_text("timestamp,temp\n1700000000,20\n1700000000.2,21\n1800000000,22\n")
    config = parse_config(
        {
            "agent": {"device_id": "gw"},
            "sources": [
                {
                    "name": "p",
                    "kind": "csv",
                    "path": str(path),
                    "sensors": ["temp"],
                    "realtime": True,
                    "step": "0.1s",
                }
            ],
        }
    )
    source = open_source(config.sources[0], config)
    began = time.monotonic()
    results = [source.read(timeout=0.3) for _ in range(5)]
    elapsed = time.monotonic() - began
    source.close()
    assert elapsed < 3.0  # each read returns within about its timeout: the thread can stop
    assert source.stats.readings == 2  # the row 1e8 s later is held, not slept on
    assert results[-1] is None


@pytest.mark.broker
@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_a_huge_sensor_payload_is_refused_and_with_mqtt5_never_sent(
    mosquitto: Broker, protocol: str
) -> None:
    from agent.config import parse_config
    from agent.sources import open_source

    config = parse_config(
        {
            "agent": {"device_id": "gw"},
            "mqtt": {"host": mosquitto.host, "port": mosquitto.port, "protocol": protocol},
            "sources": [
                {
                    "name": "plant",
                    "kind": "mqtt-sensors",
                    "step": "0.5s",
                    "topics": [{"topic": "plant/temp", "sensor": "temp"}],
                }
            ],
        }
    )
    source = open_source(config.sources[0], config)
    try:
        with Probe(mosquitto) as probe:
            deadline = time.monotonic() + 10
            while source.stats.readings == 0 and time.monotonic() < deadline:
                probe.publish("plant/temp", b"1.0")  # until the subscription is in place
                source.read(timeout=0.2)
            before = source.stats.readings
            probe.publish("plant/temp", b"9" * 5_000_000)
            probe.publish("plant/temp", b"21.5")
            deadline = time.monotonic() + 10
            while source.stats.readings == before and time.monotonic() < deadline:
                source.read(timeout=0.2)
    finally:
        source.close()
    assert source.stats.readings == before + 1  # the good reading after the huge one counts
    if protocol == "5":  # Maximum Packet Size: the broker dropped it instead of sending it
        assert "too_large" not in source.stats.malformed
        assert mosquitto.count("too large outgoing PUBLISH for iotids-gw-sensors-plant") == 1
    else:
        assert source.stats.malformed["too_large"] == 1


def test_a_long_run_of_digits_is_refused_in_linear_time(tmp_path: Path) -> None:
    # "111...1x" made the old decimal pattern backtrack quadratically: 5-8 s for one 16 KiB MQTT
    # reading on the network thread, 29 s for a 32,000-character CSV timestamp
    from agent.sources.sensors_csv import parse_timestamp
    from agent.sources.sensors_payload import PayloadError, reading_value

    began = time.process_time()  # CPU, not wall: a loaded machine does not fail it
    with pytest.raises(PayloadError):
        reading_value(b"1" * 16_383 + b"x")
    with pytest.raises(ValueError, match="timestamp"):
        parse_timestamp("1" * 60_000 + "x")
    assert reading_value(b"0" * 8000 + b"12.5") == 12.5  # a long number that is one still reads
    assert time.process_time() - began < 1.0
