"""Loaders on the real shared files: row and class counts as PROVENANCE.md states them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from training.datasets import load
from training.datasets.captures import Rule, label_from_name, step_labels


def test_unknown_kind_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"valid: .*ciciot2023.*nsl-kdd"):
        load("kdd99", "/nowhere")


def test_nsl_kdd_counts_and_five_categories(datasets: Path) -> None:
    ds = load("nsl-kdd", str(datasets / "nsl_kdd"))
    assert len(ds.x) == 25192
    assert ds.class_counts() == {"normal": 13449, "DoS": 9234, "Probe": 2289, "R2L": 209, "U2R": 11}
    assert ds.labels[0] == "normal"
    onehot = [c for c in ds.columns if c.startswith("protocol_type=")]
    assert onehot == ["protocol_type=icmp", "protocol_type=tcp", "protocol_type=udp"]
    assert ds.x[:, [ds.columns.index(c) for c in onehot]].sum(axis=1).tolist() == [1.0] * len(ds.x)


def test_ciciot2023_sample_families_and_binary(datasets: Path) -> None:
    ds = load("ciciot2023", str(datasets / "ciciot2023_sample"))
    assert ds.x.shape == (9626, 39)
    counts = ds.class_counts()
    assert counts["Uploading"] == 626
    assert all(counts[f] == 1000 for f in ("Benign", "DDoS", "Malware", "WebAttack"))
    binary = load("ciciot2023", str(datasets / "ciciot2023_sample"), label_mode="binary")
    assert binary.class_counts() == {"Benign": 1000, "Attack": 8626}


def test_ciciot2023_34_labels_map_to_families() -> None:
    from training.datasets.ciciot2023 import family_of

    assert family_of("DDoS-SYN_Flood") == "DDoS"
    assert family_of("DNS_Spoofing") == "Spoofing"
    assert family_of("Backdoor_Malware") == "Web"
    assert family_of("BenignTraffic") == "Benign"


def test_n_baiot_class_from_file_name(datasets: Path) -> None:
    ds = load("n-baiot", str(datasets / "n_baiot_sample"))
    assert ds.x.shape == (4 * 299, 115)
    assert ds.labels[0] == "benign"
    assert ds.sequential
    assert set(ds.class_counts().values()) == {299}


def test_ton_iot_bom_padded_time_and_text_states(datasets: Path) -> None:
    ds = load("ton-iot", str(datasets / "ton_iot_telemetry" / "Train_Test_IoT_Fridge.csv"))
    assert len(ds.x) == 39944
    assert ds.class_counts() == {
        "normal": 15000, "ddos": 5000, "backdoor": 5000, "injection": 5000,
        "password": 5000, "ransomware": 2902, "xss": 2042,
    }  # fmt: skip
    assert ds.encoders["temp_condition"]["values"] == ["high", "low"]
    assert ds.sequential
    assert ds.group_names == ["fridge"]
    assert np.isfinite(ds.x).all()


def test_ton_iot_folder_is_one_group_per_device(datasets: Path) -> None:
    ds = load("ton-iot", str(datasets / "ton_iot_telemetry"))
    assert ds.group_names == ["fridge", "garage_door", "motion_light", "thermostat"]
    assert len(ds.x) == 39944 + 39587 + 39488 + 32774
    assert ds.class_counts()["scanning"] == 529 + 1775 + 61


def test_csv_counts_shifted_rows_and_reads_hex(tmp_path: Path) -> None:
    lines = ["a,b,proto,kind,label"]
    lines += [f"{i},0x{i:x},tcp,x{i},{'attack' if i % 3 else 'benign'}" for i in range(60)]
    lines += ["1,2,3", "1,2,tcp,x,benign,extra"]
    (tmp_path / "t.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    ds = load("csv", str(tmp_path), label_column="label", drop_columns=["kind"])
    assert ds.dropped == {"shifted_rows": 2}
    assert ds.columns == ["a", "b", "proto"]
    np.testing.assert_array_equal(ds.x[:, 0], ds.x[:, 1])  # 0x.. hex == decimal column
    assert ds.class_counts() == {"attack": 40, "benign": 20}
    with pytest.raises(ValueError, match="label_column"):
        load("csv", str(tmp_path), label_column="nope")


def test_mqttset_captures_label_per_file_at_ip_layer(datasets: Path) -> None:
    ds = load("captures", str(datasets / "mqttset_reduced_pcap"), step="20p")
    assert ds.labels == ["benign", "bruteforce", "flood", "malariados", "malformed", "slowite"]
    assert ds.feature_set.id == "traffic-v1"
    assert len(ds.group_names) == 7
    # 20-packet steps: every file's packets (PROVENANCE) end up in its steps
    packets = ds.x[:, ds.columns.index("packets")]
    assert int(packets[ds.label_names == "slowite"].sum()) == 6447
    assert int(packets[ds.label_names == "flood"].sum()) == 58
    assert not any("link" in c for c in ds.columns)


def test_capture_mapping_rules_label_time_ranges() -> None:
    starts = np.array([0, 1, 2, 3], np.int64) * 1_000_000_000
    file = Path("mixed-day1.pcap")
    assert label_from_name(file) == "mixed"
    labels = step_labels(file, starts, [Rule("mixed-*", "benign"), Rule("*.pcap", "scan", 2, 3)])
    assert labels.tolist() == ["benign", "benign", "scan", "benign"]


def test_capture_address_rules_label_the_steps_with_those_packets(
    datasets: Path, tmp_path: Path
) -> None:
    pcap = datasets / "mqttset_reduced_pcap" / "benign-train.pcap"
    (tmp_path / "mixed-day.pcap").symlink_to(pcap)
    from agent.features.capture import read_capture

    table = read_capture(pcap).packets
    lo = int(table.src_lo[0]) & 0xFFFF_FFFF  # the first sender's IPv4 address
    address = ".".join(str((lo >> s) & 0xFF) for s in (24, 16, 8, 0))
    rules = tmp_path / "labels.toml"
    rules.write_text(f'[[rule]]\nglob = "mixed-*"\nlabel = "suspect"\naddress = "{address}"\n')
    ds = load("captures", str(tmp_path / "mixed-day.pcap"), step="50p", mapping=str(rules))
    from_host = (table.src_lo == table.src_lo[0]) | (table.dst_lo == table.src_lo[0])
    with_host = np.unique(np.nonzero(from_host)[0] // 50)
    assert 0 < len(with_host) < len(ds.x)  # some steps without the host stay "mixed"
    assert ds.labels == ["mixed", "suspect"]
    assert np.nonzero(ds.label_names == "suspect")[0].tolist() == with_host.tolist()
    assert ds.options["mapping"] == str(rules)
