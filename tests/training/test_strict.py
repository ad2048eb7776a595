"""``iotids train --strict`` refuses a class too short for its windows, naming the recording."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.agent.bundles import flood_frames, pcap_bytes
from training.config import ConfigError, load_config

pytestmark = pytest.mark.tf


def test_strict_training_names_the_short_recording_and_a_step_that_fits(tmp_path: Path) -> None:
    from training.train import train

    data = tmp_path / "captures"
    data.mkdir()
    calm, _ = flood_frames(calm_s=600, flood_s=0, calm_after_s=0)  # 3000 packets
    (data / "benign-a.pcap").write_bytes(pcap_bytes(calm))
    burst, _ = flood_frames(calm_s=0, flood_s=1, calm_after_s=0, flood_rate=55)  # 60 packets
    (data / "flood-a.pcap").write_bytes(pcap_bytes(burst))
    overrides = {
        "dataset": "captures",
        "path": str(data),
        "model": "cnn",
        "out": str(tmp_path / "model"),
        "step": "20p",
        "window": 8,
        "strict": True,
    }
    with pytest.raises(ConfigError) as caught:
        train(load_config(None, overrides))
    message = str(caught.value)
    assert message.startswith("train --strict: ")
    assert "class 'flood' has too few windows (train 0, val 0, test 0" in message
    assert "'benign'" not in message
    assert "flood-a.pcap (60 packets over" in message
    assert "-> 3 steps; a step of 1p or" in message  # 57 steps: 50 to measure, 7 to fill
