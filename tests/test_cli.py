"""The `iotids` command on a gateway-only install: desktop commands say how to fix it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from agent.cli import INSTALL_TRAIN
from agent.cli import main as iotids

REPO = Path(__file__).resolve().parents[1]

# Runs the CLI as the gateway would see it: TensorFlow and Keras cannot be imported.
GATEWAY = """
import importlib.abc, runpy, sys

class _Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "keras", "sklearn"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, _Absent())
sys.argv = ["iotids", *sys.argv[1:]]
code = 0
try:
    runpy.run_module("agent.cli", run_name="__main__")
except SystemExit as exc:
    code = exc.code
loaded = sorted(m for m in sys.modules if m.startswith("tensorflow"))
print("LOADED=" + ",".join(loaded), file=sys.stderr)
sys.exit(code)
"""


def _gateway(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", GATEWAY, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


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
    done = _gateway(*command)
    assert done.returncode == 1, done.stderr
    assert INSTALL_TRAIN in done.stderr
    assert "LOADED=\n" in done.stderr


def test_gateway_commands_run_without_tensorflow(datasets: Path) -> None:
    capture = datasets / "portscan_pcap_ppa" / "synscan.pcapng"
    done = _gateway("features", str(capture), "--json")
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
