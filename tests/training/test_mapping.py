"""``iotids train --mapping FILE``: rules label captures and name families; every label's
family lands in preprocess.json's ``categories`` (the manifest's label -> family map)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from agent.cli import main
from tests.features import craft
from training.config import ConfigError, load_config
from training.label_families import label_families, mapping_families

T0 = 1_700_000_000 * 1_000_000_000
KERAS_NUMPY_COPY = (
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
)
MAPPING = """
[families]
synflood = "flood"

[[rule]]
glob = "weird-*.pcap"
label = "oddball"
family = "scan"
"""


def _write(folder: Path, text: str) -> Path:
    path = folder / "mapping.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_mapping_names_families_from_rules_and_the_families_table(tmp_path: Path) -> None:
    assert mapping_families(_write(tmp_path, MAPPING)) == {"synflood": "flood", "oddball": "scan"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[rule]]\nglob = "*"\nlabel = "x"\nfamily = "dos"\n', r"rule\[0\]\.family: must be"),
        ('[families]\nx = "scan"\n[[rule]]\nglob = "*"\nlabel = "x"\nfamily = "flood"\n',
         r"rule\[0\]: label 'x' is 'scan' elsewhere"),
        ('[labels]\nx = "scan"\n', r"unknown tables \['labels'\]"),
    ],
)  # fmt: skip
def test_a_bad_mapping_is_refused_naming_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        mapping_families(_write(tmp_path, text))


def test_unknown_labels_are_unknown_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    labels = ["benign", "synscan", "gizmo", "oddball"]
    with caplog.at_level(logging.WARNING):
        got = label_families(labels, 0, _write(tmp_path, MAPPING))
    assert got == {"benign": "benign", "synscan": "scan", "gizmo": "unknown", "oddball": "scan"}
    assert "no attack family for gizmo" in caplog.text


def test_train_config_accepts_mapping_and_checks_it_before_training(tmp_path: Path) -> None:
    good = _write(tmp_path, MAPPING)
    config_file = tmp_path / "train.toml"
    base = '[train]\ndataset = "captures"\npath = "."\nmodel = "cnn"\nout = "o"\n'
    config_file.write_text(base + f'mapping = "{good}"\n', encoding="utf-8")
    config = load_config(config_file, {})
    assert config.mapping == str(good)
    assert config.loader_options()["mapping"] == str(good)
    bad = tmp_path / "bad.toml"
    bad.write_text('[[rule]]\nglob = "*"\nlabel = "x"\nfamily = "nope"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"train\.mapping: rule\[0\]\.family"):
        load_config(config_file, {"mapping": str(bad)})
    with pytest.raises(ConfigError, match=r"train\.mapping: no such file"):
        load_config(config_file, {"mapping": str(tmp_path / "absent.toml")})


def _capture(path: Path, kind: str, count: int = 400) -> None:
    frames = []
    for i in range(count):
        if kind == "benign":
            body = craft.mqtt(3, b"\x00\x03a/b" + b"x" * (i % 7))
            segment = craft.tcp(40000 + i % 4, 1883, 0x18, body)
            ip = craft.ipv4(6, segment, src=f"10.0.0.{1 + i % 5}", dst="10.0.0.9")
            gap = 20_000_000
        elif kind == "synflood":
            segment = craft.tcp(1024 + i, 80, 0x02)
            ip = craft.ipv4(6, segment, src=f"172.16.{i % 200}.{i % 250}", dst="10.0.0.9")
            gap = 1_000_000
        else:  # one host probing many UDP ports
            ip = craft.ipv4(17, craft.udp(5353, 1 + i * 7 % 60000), src="10.0.0.66", dst="10.0.0.9")
            gap = 5_000_000
        frames.append((T0 + i * gap, craft.ethernet(0x0800, ip)))
    path.write_bytes(craft.pcap(frames))


@pytest.mark.tf
@pytest.mark.slow
@pytest.mark.filterwarnings(KERAS_NUMPY_COPY)
def test_train_with_mapping_writes_each_labels_family(tmp_path: Path) -> None:
    captures = tmp_path / "captures"
    captures.mkdir()
    for name in ("benign-a", "synflood-b", "weird-c"):
        _capture(captures / f"{name}.pcap", name.split("-")[0])
    out = tmp_path / "model"
    code = main(
        ["train", "--dataset", "captures", "--path", str(captures), "--model", "dnn",
         "--step", "10p", "--window", "2", "--epochs", "1", "--mapping",
         str(_write(tmp_path, MAPPING)), "--out", str(out), "--quiet"]
    )  # fmt: skip
    assert code == 0
    state = json.loads((out / "preprocess.json").read_text())
    assert state["categories"] == {"benign": "benign", "oddball": "scan", "synflood": "flood"}
    assert state["dataset"]["options"]["mapping"].endswith("mapping.toml")
