"""Run ``iotids`` in a subprocess as a gateway sees it: TensorFlow and Keras cannot be imported.

The script refuses every tensorflow/keras import and, on exit, prints ``LOADED=`` followed by
any such module that got loaded anyway (nothing, when the gateway path is clean) as its last
stderr line.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

NO_TENSORFLOW = """
import importlib.abc, runpy, sys

class _NoTensorFlow(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "keras"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, _NoTensorFlow())
sys.argv = ["iotids", *sys.argv[1:]]
code = 0
try:
    runpy.run_module("agent.cli", run_name="__main__")
except SystemExit as exc:
    code = exc.code
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras"))
print("LOADED=" + ",".join(loaded), file=sys.stderr)
sys.exit(code)
"""


def iotids_without_tensorflow(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``iotids ARGS`` with TensorFlow absent; stdout and stderr captured as text."""
    return subprocess.run(
        [sys.executable, "-c", NO_TENSORFLOW, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


PYTEST_NO_TENSORFLOW = (
    NO_TENSORFLOW.split("sys.argv = ")[0]
    + """
import pytest
code = pytest.main(sys.argv[1:])
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras"))
print("LOADED=" + ",".join(loaded), file=sys.stderr)
sys.exit(int(code))
"""
)


def pytest_without_tensorflow(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """``pytest ARGS`` in a child where TensorFlow and Keras cannot be imported."""
    return subprocess.run(
        [sys.executable, "-c", PYTEST_NO_TENSORFLOW, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
