"""Hypothesis against every hostile input the agent parses besides captures: sensor payloads,
CSV replays and TOML configs (captures: tests/features/test_fuzz_reader.py).

Nothing may escape but the documented refusal (PayloadError, ConfigError), no input may take
longer than DEADLINE (a hang or a quadratic parse), and a CSV replay's steps stay bounded
whatever its timestamps. ``IOTIDS_FUZZ_EXAMPLES=5000`` runs a longer campaign by hand.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.config import ConfigError, load_config
from agent.config_checks import check_deployment
from agent.features.telemetry import MAX_IDLE_STEPS
from agent.sources.sensors_payload import (
    MAX_PAYLOAD_BYTES,
    PayloadError,
    json_depth,
    reading_value,
)

EXAMPLES = int(os.environ.get("IOTIDS_FUZZ_EXAMPLES", "150"))
DEADLINE = timedelta(seconds=2)  # one input; far above the real cost, far below a hang
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=DEADLINE,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# --- sensor payloads ---------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=30,
)


def _mutate(data: bytes, edits: list[tuple[int, int, bytes]]) -> bytes:
    out = bytearray(data)
    for kind, pos, chunk in edits:
        at = pos % (len(out) + 1)
        if kind == 0:
            out[at:at] = chunk  # insert
        elif kind == 1:
            del out[at : at + len(chunk)]  # delete
        else:
            out[at : at + len(chunk)] = chunk  # overwrite
    return bytes(out)


edits = st.lists(
    st.tuples(st.integers(0, 2), st.integers(0, 10_000), st.binary(min_size=1, max_size=8)),
    max_size=6,
)
brackets = st.builds(
    lambda opener, n, tail: opener * n + tail,
    st.sampled_from([b"[", b"{", b'{"v":', b'{"v":[']),
    st.integers(0, 20_000),
    st.binary(max_size=10),
)
numbers = st.builds(
    lambda digits, exp: (digits + exp).encode(),
    st.text("0123456789._-+eE", min_size=1, max_size=500),
    st.sampled_from(["", "e308", "e-400", "e99999"]),
)
payloads = (
    st.binary(max_size=2048)
    | brackets
    | numbers
    | st.builds(lambda v, e: _mutate(json.dumps({"v": v}).encode(), e), json_values, edits)
    | st.builds(lambda v: json.dumps(v).encode(), json_values)
)


REASONS = {
    "too_large",
    "not_utf8",
    "too_deep",
    "bad_json",
    "no_field",
    "not_a_number",
    "non_finite",
    "out_of_range",
}


@FUZZ
@given(
    payload=payloads,
    field=st.sampled_from(["", "v", "v.w", "a.b.c"]),
    mapped=st.dictionaries(st.text(min_size=1, max_size=5), st.floats(-1e6, 1e6), max_size=3),
)
def test_a_sensor_payload_is_a_finite_reading_or_a_counted_refusal(
    payload: bytes, field: str, mapped: dict[str, float]
) -> None:
    try:
        value = reading_value(payload, field, mapped)
    except PayloadError as exc:
        refused = exc.reason
    else:
        assert math.isfinite(value)
        refused = ""
    if refused:
        assert refused in REASONS
        return
    assert len(payload) <= MAX_PAYLOAD_BYTES


@FUZZ
@given(text=st.text(alphabet='[]{}"\\ab,:', max_size=300))
def test_json_depth_never_undercounts(text: str) -> None:
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):
        return
    assert json_depth(text) >= _depth(document)


def _depth(node: Any) -> int:
    if isinstance(node, list):
        return 1 + max((_depth(x) for x in node), default=0)
    if isinstance(node, dict):
        return 1 + max((_depth(x) for x in node.values()), default=0)
    return 0


# --- CSV replays -----------------------------------------------------------------------------

timestamps = st.one_of(
    st.integers(1_600_000_000, 1_900_000_000).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(
        ["1e30", "-5", "9999-12-31T23:59:59", "0001-01-01", "2024-02-30T00:00:00", "", "nan"]
    ),
    st.integers(-(10**30), 10**30).map(str),
    st.text(max_size=30),
)
cells = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["1_0", "true", "", "open", "0x10", "1e999"]),
    st.text(max_size=20),
)
rows = st.lists(st.tuples(timestamps, cells, cells), max_size=40)


def _csv_bytes(data: list[tuple[str, str, str]], bom: bool, crlf: bool, junk: bytes) -> bytes:
    newline = "\r\n" if crlf else "\n"
    lines = ["timestamp,temp,door"] + [",".join(_quote(c) for c in row) for row in data]
    text = newline.join(lines) + newline
    return (b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8", "surrogatepass") + junk


def _quote(cell: str) -> str:
    return '"' + cell.replace('"', '""') + '"' if any(c in cell for c in ',"\r\n') else cell


@FUZZ
@given(data=rows, bom=st.booleans(), crlf=st.booleans(), junk=st.binary(max_size=64), e=edits)
def test_a_csv_replay_never_raises_and_its_steps_stay_bounded(
    data: list[tuple[str, str, str]], bom: bool, crlf: bool, junk: bytes, e: Any
) -> None:
    from agent.config import parse_config
    from agent.sources import open_source

    raw = _csv_bytes(data, bom, crlf, junk)
    header_end = raw.find(b"door") + 5  # after the header's line end
    raw = raw[:header_end] + _mutate(raw[header_end:], e)  # keep the header, mutate the rest
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.csv"
        path.write_bytes(raw)
        config = parse_config(
            {
                "agent": {"device_id": "gw"},
                "sources": [
                    {"name": "p", "kind": "csv", "path": str(path), "sensors": ["temp", "door"]}
                ],
            }
        )
        source = open_source(config.sources[0], config)
        steps = 0
        for _ in range(len(data) + 10):
            if source.finished:
                break
            batch = source.read(timeout=0.1)
            steps += len(batch) if batch is not None else 0
        source.close()
    assert source.finished
    # every row opens at most one step plus one capped idle stretch
    assert steps <= (len(data) + 2) * (MAX_IDLE_STEPS + 1)


# --- TOML configs ----------------------------------------------------------------------------

VALID = """[agent]
device_id = "gw"
state_dir = "{state}"
stats_interval = 10.0
[mqtt]
host = "localhost"
port = 1883
topic_prefix = "iotids"
replay_rate = 50.0
[mqtt.homeassistant]
discovery_prefix = "homeassistant"
[outbox]
max_messages = 1000
[[sources]]
name = "plant"
kind = "mqtt-sensors"
step = "1s"
topics = [{{ topic = "plant/+/temp", sensor = "temp", values = {{ on = 1 }} }}]
[[sources]]
name = "h"
kind = "host"
"""

toml_scalars = st.one_of(
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.text(max_size=50),
    st.sampled_from(["a/#/b", "+", "#", "$SYS", "\x00", "x" * 70_000, "1s", "0s", "-1p"]),
)
toml_values = st.recursive(
    toml_scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(min_size=1, max_size=8), inner, max_size=3)
    ),
    max_leaves=10,
)
KEY_PATHS = [
    ("agent", "device_id"),
    ("agent", "stats_interval"),
    ("agent", "queue_size"),
    ("agent", "state_dir"),
    ("agent", "trusted_keys"),
    ("mqtt", "port"),
    ("mqtt", "client_id"),
    ("mqtt", "topic_prefix"),
    ("mqtt", "replay_rate"),
    ("mqtt", "backoff_max"),
    ("mqtt", "tls"),
    ("mqtt", "homeassistant"),
    ("outbox", "max_bytes"),
    ("sources", None),
    ("models", None),
    ("unknown", None),
]


@FUZZ
@given(e=edits)
def test_a_mutated_config_file_is_valid_or_one_config_error(e: Any) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "agent.toml"
        path.write_bytes(_mutate(VALID.format(state=tmp).encode(), e))
        _load_and_check(path)


@FUZZ
@given(where=st.sampled_from(KEY_PATHS), value=toml_values, depth=st.integers(0, 3000))
def test_a_config_with_hostile_values_is_valid_or_one_config_error(
    where: tuple[str, str | None], value: Any, depth: int
) -> None:
    import tomllib

    with tempfile.TemporaryDirectory() as tmp:
        document = tomllib.loads(VALID.format(state=tmp))
        table, key = where
        if key is None:
            document[table] = value
        else:
            document.setdefault(table, {})[key] = value
        text = _dumps(document) + ("x = " + "[" * depth + "]" * depth + "\n" if depth else "")
        path = Path(tmp) / "agent.toml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        _load_and_check(path)


def _load_and_check(path: Path) -> None:
    message = ""
    try:
        check_deployment(load_config(path))
    except ConfigError as exc:
        message = str(exc) or "(empty)"
    assert "\n" not in message


def _dumps(document: dict[str, Any]) -> str:
    """A minimal TOML writer: everything as inline values under the top-level tables."""
    lines = []
    for key, value in document.items():
        lines.append(f"{json.dumps(key)} = {_value(value)}")
    return "\n".join(lines) + "\n"


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(type(value))
