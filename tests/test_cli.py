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
