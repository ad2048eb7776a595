"""The one native-stderr filter: banners are dropped, everything else still reaches stderr."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

_CHILD = r"""
import os, sys
from agent.quiet import XNNPACK_BANNER, tflite_banner_quiet
with tflite_banner_quiet():
    os.write(2, (XNNPACK_BANNER + " for CPU.\n").encode())
    os.write(2, b"ERROR: a runtime complaint the user must see\n")
    print("python-level line", file=sys.stderr)
print("after", file=sys.stderr)
"""


def test_banner_dropped_other_lines_written_back() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _CHILD], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "XNNPACK" not in done.stderr
    assert done.stderr.splitlines() == [
        "ERROR: a runtime complaint the user must see",
        "python-level line",
        "after",
    ]


def test_building_an_interpreter_prints_nothing() -> None:
    model = REPO / "tests" / "agent" / "models" / "flood_int8.tflite"
    child = (
        "import numpy as np\n"
        "from agent.runtime import Model\n"
        f"m = Model(open({str(model)!r}, 'rb').read())\n"
        "m.predict(np.zeros((1, *m.input_shape), np.float32))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", child], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # without the capture: "INFO: Created TensorFlow Lite XNNPACK ..."
