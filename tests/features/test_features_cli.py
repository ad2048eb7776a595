"""``iotids features``: summary JSON, saved steps, and clear failures, on real and crafted files."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

from agent.cli import main
from agent.features.traffic import TRAFFIC_V1

T0 = 1_700_000_000


def tcp_frame(src: int, dport: int, flags: int) -> bytes:
    """Ethernet + IPv4 + TCP (20-byte headers, no payload) from 10.0.0.<src>."""
    ip = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 40, 1, 0, 64, 6, 0, bytes([10, 0, 0, src]), bytes([10, 0, 0, 1])
    )
    tcp = struct.pack("!HHIIBBHHH", 40000 + src, dport, 0, 0, 5 << 4, flags, 1024, 0, 0)
    return b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + ip + tcp


def write_pcap(path: Path, frames: list[tuple[float, bytes]], cut_last: int = 0) -> None:
    """A little-endian microsecond pcap; ``cut_last`` bytes are chopped off the end."""
    out = bytearray(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
    for ts, frame in frames:
        sec, usec = int(ts), round((ts - int(ts)) * 1e6)
        out += struct.pack("<IIII", sec, usec, len(frame), len(frame)) + frame
    path.write_bytes(bytes(out[: len(out) - cut_last]))


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, object]:
    assert main(["features", *argv, "--json"]) == 0
    summary: dict[str, object] = json.loads(capsys.readouterr().out)
    return summary


def test_crafted_capture_summary_and_npz(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frames = [(T0 + 0.1 * i, tcp_frame(i % 5 + 2, 80, 0x02)) for i in range(30)]
    frames.append((T0 + 3.0, tcp_frame(9, 22, 0x02)))  # truncated below
    capture = tmp_path / "crafted.cap"
    write_pcap(capture, frames, cut_last=10)
    out = tmp_path / "w.npz"
    summary = run_json(capsys, str(capture), "--window", "2", "--out", str(out))
    assert summary["packets"] == 30
    assert summary["truncated_file"] is True
    assert summary["malformed"] == 1
    reasons = summary["malformed_by_reason"]
    assert isinstance(reasons, dict)
    assert list(reasons.values()) == [1]  # the cut record, under the reader's reason name
    assert summary["steps"] == 3
    assert summary["windows"] == 2
    assert summary["features"] == TRAFFIC_V1.width
    assert summary["feature_set"] == "traffic-v1"
    assert summary["schema_id"] == TRAFFIC_V1.schema_id
    assert summary["step"] == {"kind": "time", "size": 1.0}
    with np.load(out) as saved:
        steps = saved["steps"]
        assert steps.shape == (3, TRAFFIC_V1.width)
        assert steps.dtype == np.float32
        assert saved["packets"].tolist() == [10, 10, 10]
        assert saved["start_ns"].tolist() == [(T0 + k) * 10**9 for k in range(3)]
        assert tuple(saved["columns"].tolist()) == TRAFFIC_V1.columns
        assert str(saved["schema_id"]) == TRAFFIC_V1.schema_id
        assert (str(saved["step_kind"]), float(saved["step_size"])) == ("time", 1.0)
        assert int(saved["window"]) == 2
        syn = steps[:, TRAFFIC_V1.index("tcp_syn_no_ack")]
        http = steps[:, TRAFFIC_V1.index("http")]
        assert syn.tolist() == http.tolist() == [10.0, 10.0, 10.0]


def test_real_capture_in_packet_steps(datasets: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capture = datasets / "mqttset_reduced_pcap" / "slowite-train.pcap"  # pcapng named .pcap
    summary = run_json(capsys, str(capture), "--step", "100p")
    assert summary["packets"] == 6447
    assert summary["malformed"] == 0
    assert summary["steps"] == 65
    assert summary["windows"] == 65 - 16 + 1
    assert summary["step"] == {"kind": "packets", "size": 100.0}


def test_plain_summary(datasets: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capture = datasets / "mqttset_reduced_pcap" / "flood-train.pcap"
    assert main(["features", str(capture)]) == 0
    text = capsys.readouterr().out
    assert "packets: 58" in text
    assert "traffic-v1" in text


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["missing.pcap"], "no such file"),
        (["{garbage}"], "not a pcap or pcapng"),
        (["{garbage}", "--step", "fast"], "--step"),
        (["{garbage}", "--window", "0"], "--window"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    garbage = tmp_path / "garbage.pcap"
    garbage.write_bytes(b"this is not a capture at all")
    args = [a.replace("{garbage}", str(garbage)) for a in argv]
    if args[0] == "missing.pcap":
        args[0] = str(tmp_path / "missing.pcap")
    assert main(["features", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err
    assert "\n" not in err
