"""A ``[calibration] duration`` that can never hold enough windows is a bad config (exit 2).

At one window per time step, "1m" of 1-s steps is 61 windows; a calibration needs 100, so the
agent used to give up at the end of each period and collect again for ever, while
``validate-config`` accepted the file. Packet steps come as fast as the traffic: not refused.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agent.cli import main as iotids
from tests.agent.bundles import flood_frames, pcap_bytes
from tests.agent.flood_bundle import FloodKit, flood_kit
from tests.broker import REPO

REFUSED = (
    "calibration.duration: '1m' holds 61 windows of models[0] (cnn)'s 1 s steps, a calibration "
    "needs at least 100: set it to 100s or more"
)


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> FloodKit:
    return flood_kit(tmp_path_factory.mktemp("flood"))


def _config(kit: FloodKit, tmp_path: Path, duration: str, step: str = "") -> Path:
    capture = tmp_path / "calm.pcap"
    frames, _ = flood_frames(calm_s=5, flood_s=0, calm_after_s=0)
    capture.write_bytes(pcap_bytes(frames))
    path = tmp_path / "agent.toml"
    path.write_text(
        f'[agent]\ndevice_id = "gw"\nstate_dir = "{tmp_path / "state"}"\n'
        f'trusted_keys = ["{kit.public_key}"]\n[mqtt]\nenabled = false\n'
        f'[[sources]]\nname = "lan"\nkind = "pcap"\npath = "{capture}"\n'
        + (f'step = "{step}"\n' if step else "")
        + f'[[models]]\nname = "cnn"\nbundle = "{kit.bundle}"\nsource = "lan"\n'
        f'[calibration]\nduration = "{duration}"\n'
    )
    return path


def test_validate_config_refuses_a_period_too_short_for_the_bundles_step(
    kit: FloodKit, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # no step in the file: the source takes the bundle's (1 s), then the period is checked
    assert iotids(["agent", "validate-config", str(_config(kit, tmp_path, "1m"))]) == 2
    assert capsys.readouterr().err.strip() == f"iotids agent: {REFUSED}"
    assert iotids(["agent", "validate-config", str(_config(kit, tmp_path, "100s"))]) == 0


def test_file_only_refuses_it_when_the_step_is_in_the_file_and_packet_steps_pass(
    kit: FloodKit, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(kit, tmp_path, "1m", step="1s")
    assert iotids(["agent", "validate-config", "--file-only", str(config)]) == 2
    assert REFUSED in capsys.readouterr().err
    config = _config(kit, tmp_path, "1m", step="20p")  # as fast as the packets come
    assert iotids(["agent", "validate-config", "--file-only", str(config)]) == 0


def test_run_exits_2_with_the_same_line_before_anything_starts(
    kit: FloodKit, tmp_path: Path
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "agent", "run", "--config", str(_config(kit, tmp_path, "1m"))],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines()[-1] == f"iotids agent: {REFUSED}"
    assert "calibrating on site traffic" not in done.stderr
