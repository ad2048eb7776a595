"""The `iotids` command on a gateway-only install: desktop commands say how to fix it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.cli import INSTALL_TRAIN
from agent.cli import main as iotids
from tests.gateway import iotids_without_tensorflow


@pytest.mark.parametrize(
    "command",
    [
        ["train", "--dataset", "nsl-kdd", "--path", "x", "--model", "dnn", "--out", "y"],
        ["evaluate", "--model", "m", "--path", "p"],
        ["convert", "m", "--quantize", "int8", "--out", "b"],
        ["demo"],
    ],
)
def test_desktop_commands_print_the_install_line_and_exit_1(command: list[str]) -> None:
    done = iotids_without_tensorflow(*command)
    assert done.returncode == 1, done.stderr
    assert INSTALL_TRAIN in done.stderr
    assert "LOADED=\n" in done.stderr


def test_gateway_commands_run_without_tensorflow(datasets: Path) -> None:
    capture = datasets / "portscan_pcap_ppa" / "synscan.pcapng"
    done = iotids_without_tensorflow("features", str(capture), "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["packets"] == 2011
    assert summary["feature_set"] == "traffic-v1"
    assert "LOADED=\n" in done.stderr


def test_no_command_prints_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert iotids([]) == 2
    out = capsys.readouterr().out
    for name in ("features", "synth", "train", "convert", "verify", "agent", "demo"):
        assert name in out


def _with_closed_stdout(*args: str) -> tuple[int, str]:
    """Run a command whose stdout reader has already gone (``... | head`` after head exits)."""
    import os
    import subprocess
    import sys

    from tests.broker import REPO

    read_end, write_end = os.pipe()
    os.close(read_end)  # every write to stdout now fails with EPIPE
    try:
        done = subprocess.run(
            [sys.executable, *args],
            cwd=REPO,
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        os.close(write_end)
    return done.returncode, done.stderr


@pytest.mark.slow
def test_a_closed_stdout_ends_every_command_quietly(tmp_path: Path) -> None:
    from agent.cli import EXIT_CLOSED_PIPE
    from tests.agent.bundles import flood_frames, pcap_bytes

    frames, _ = flood_frames(calm_s=3, flood_s=2, calm_after_s=1, flood_rate=200)
    capture = tmp_path / "c.pcap"
    capture.write_bytes(pcap_bytes(frames))
    config = tmp_path / "agent.toml"
    config.write_text(f'[agent]\ndevice_id = "gw"\nstate_dir = "{tmp_path}"\n')
    commands = [
        ["-m", "agent.cli", "features", str(capture), "--json"],
        ["-m", "agent.cli", "features", str(capture)],
        ["-m", "agent.cli", "--help"],
        ["-m", "agent.cli", "agent", "validate-config", str(config)],
        ["-m", "agent", "validate-config", str(config)],
        ["-m", "agent.cli", "keys", "generate", "--out", str(tmp_path / "k")],
    ]
    for command in commands:
        code, stderr = _with_closed_stdout(*command)
        assert code == EXIT_CLOSED_PIPE, (command, stderr)
        assert "Traceback" not in stderr, (command, stderr)
        assert "BrokenPipe" not in stderr, (command, stderr)
