"""An attack capture that opens with traffic that is not yet the attack: ``onsets.json``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.agent.bundles import flood_frames, pcap_bytes
from training.datasets.captures import ONSETS_FILE, read_onsets
from training.events import truth_of_capture, truths

S = 1_000_000_000


def _ns(seconds: list[float]) -> np.ndarray:
    return (np.asarray(seconds) * S).astype(np.int64)


def test_an_onset_starts_the_attack_at_its_own_first_packet() -> None:
    # 16 packets of the attacker's own session over 1 s, a pause, then the fuzzer
    ts = _ns([i * 0.06 for i in range(16)] + [2.76 + i * 0.001 for i in range(100)])
    whole = truth_of_capture(Path("malformed-a.pcap"), ts)
    late = truth_of_capture(Path("malformed-a.pcap"), ts, onset=16)
    assert whole.intervals == [("malformed", int(ts[0]), int(ts[-1]))]
    assert late.intervals == [("malformed", int(ts[16]), int(ts[-1]))]
    assert len(late.attack_ts["malformed"]) == 100
    assert (late.first_ns, late.last_ns) == (whole.first_ns, whole.last_ns)  # benign before


def test_an_onset_past_the_last_packet_is_refused_naming_the_file() -> None:
    with pytest.raises(ValueError, match=r"onsets.json: flood-a.pcap: onset 3 is not under its 3"):
        truth_of_capture(Path("flood-a.pcap"), _ns([0.0, 0.1, 0.2]), onset=3)


def test_no_onsets_file_is_every_attack_from_its_first_packet(tmp_path: Path) -> None:
    assert read_onsets(tmp_path) == {}


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("[16]", "must map capture names to packet counts"),
        ('{"a.pcap": -1}', "a.pcap: must be a packet count >= 0"),
        ('{"a.pcap": true}', "a.pcap: must be a packet count >= 0"),
        ('{"a.pcap": 1.5}', "a.pcap: must be a packet count >= 0"),
        ('{"a.pcap": ' + "9" * 40 + "}", "not JSON"),
        ("{", "not JSON"),
    ],
)
def test_a_hostile_onsets_file_is_one_line_naming_what(
    tmp_path: Path, text: str, said: str
) -> None:
    (tmp_path / ONSETS_FILE).write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=said):
        read_onsets(tmp_path)


def test_an_oversized_or_binary_onsets_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / ONSETS_FILE
    path.write_bytes(b"\xff\xfe\x00" * 10)
    with pytest.raises(ValueError, match="not JSON"):
        read_onsets(tmp_path)
    path.write_bytes(b" " * (1 << 20) + b"{}")
    with pytest.raises(ValueError, match="larger than"):
        read_onsets(tmp_path)


def test_a_folder_s_onsets_apply_by_name_and_a_misspelt_name_is_refused(tmp_path: Path) -> None:
    frames, _ = flood_frames(calm_s=1, flood_s=1, calm_after_s=0, flood_rate=100)
    (tmp_path / "flood-a.pcap").write_bytes(pcap_bytes(frames))
    (tmp_path / ONSETS_FILE).write_text(json.dumps({"flood-a.pcap": 5}), encoding="utf-8")
    (truth,) = truths(tmp_path)
    assert len(truth.attack_ts["flood"]) == len(frames) - 5
    (tmp_path / ONSETS_FILE).write_text(json.dumps({"flod-a.pcap": 5}), encoding="utf-8")
    with pytest.raises(ValueError, match=r"no capture named flod-a\.pcap"):
        truths(tmp_path)


def test_training_labels_the_steps_before_an_onset_with_the_folder_s_benign_label(
    tmp_path: Path,
) -> None:
    from training.datasets.captures import load

    t0 = 1_700_000_000.0
    frames, flood_start = flood_frames(t0=t0, calm_s=4, flood_s=2, calm_after_s=0)
    data = tmp_path / "captures"
    data.mkdir()
    (data / "flood-a.pcap").write_bytes(pcap_bytes(frames))
    (data / "normal-b.pcap").write_bytes(pcap_bytes(frames[:20]))  # the folder names it "normal"
    onset = sum(1 for ts, _ in frames if ts < flood_start)
    assert onset == 21  # calm telemetry 5 a second, the flood from +4.01 s

    def flood_labels() -> list[str]:
        dataset = load(str(data), step="1s")
        mine = dataset.groups == dataset.group_names.index("flood-a.pcap")
        return [str(label) for label in dataset.label_names[mine]]

    assert set(flood_labels()) == {"flood"}  # without the file: the whole capture
    (data / ONSETS_FILE).write_text(json.dumps({"flood-a.pcap": onset}), encoding="utf-8")
    labels = flood_labels()
    # steps [t0, t0+1) ... [t0+3, t0+4) end before the flood; [t0+4, t0+5) holds its start
    assert labels[:4] == ["normal"] * 4
    assert set(labels[4:]) == {"flood"}
    assert len(labels) >= 6
    assert load(str(data), step="1s").options["onsets"] == {"flood-a.pcap": 21}


def test_training_refuses_an_onsets_file_naming_no_capture(tmp_path: Path) -> None:
    from training.datasets.captures import load

    frames, _ = flood_frames(calm_s=1, flood_s=1, calm_after_s=0)
    (tmp_path / "flood-a.pcap").write_bytes(pcap_bytes(frames))
    (tmp_path / ONSETS_FILE).write_text(json.dumps({"flod-a.pcap": 3}), encoding="utf-8")
    with pytest.raises(ValueError, match=r"onsets.json: no capture named flod-a.pcap"):
        load(str(tmp_path), step="1s")
    (tmp_path / ONSETS_FILE).write_text(json.dumps({"flood-a.pcap": 10**6}), encoding="utf-8")
    with pytest.raises(ValueError, match=r"flood-a.pcap: onset 1000000 is not under its"):
        load(str(tmp_path), step="1s")


def test_a_mapping_rule_matching_no_capture_is_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from training.datasets.captures import load

    frames, _ = flood_frames(calm_s=1, flood_s=1, calm_after_s=0)
    (tmp_path / "flood-a.pcap").write_bytes(pcap_bytes(frames))
    mapping = tmp_path / "map.toml"
    mapping.write_text('[[rule]]\nglob = "flod-*.pcap"\nlabel = "syn_flood"\n')
    with caplog.at_level("WARNING", logger="training.datasets.captures"):
        load(str(tmp_path), step="1s", mapping=str(mapping))
    assert "mapping rule[0]: glob 'flod-*.pcap' matches no capture" in caplog.text
