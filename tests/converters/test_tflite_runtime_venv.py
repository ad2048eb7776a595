"""tflite-runtime 2.14 (numpy<2) in its own venv: which of our conversions it can really load.

The venv is built once with ``python -m venv`` + pip from PyPI and cached in the temp dir.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from converters.quantize import load_keras, to_tflite
from converters.verify import compatibility, probe_runtime

pytestmark = [pytest.mark.slow, pytest.mark.tf]

VENV = Path(tempfile.gettempdir()) / "iotids-venv-tflite-runtime-2.14"


@pytest.fixture(scope="module")
def runtime_python() -> str:
    python = VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True, timeout=120)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "tflite-runtime==2.14.0", "numpy<2"],
            check=True,
            timeout=150,
            capture_output=True,
        )
    return str(python)


def test_float32_and_int8_load_but_dynamic_range_does_not(
    runtime_python: str, folders: dict[str, Path]
) -> None:
    model = load_keras(folders["dnn"] / "model.keras")
    with np.load(folders["dnn"] / "data" / "representative.npz") as data:
        samples = data["x"]
    results = {}
    for mode in ("float32", "int8", "dynamic"):
        content = to_tflite(model, mode, samples)
        results[mode] = probe_runtime(runtime_python, content)
        assert results[mode]["runtime"] == "tflite-runtime"
        assert results[mode]["version"] == "2.14.0"
    assert results["float32"]["loads"], results["float32"]
    assert results["int8"]["loads"], results["int8"]
    assert not results["dynamic"]["loads"]
    assert "FULLY_CONNECTED" in results["dynamic"]["error"]
    # the prediction verify makes without the venv agrees with what the venv says
    here = {"runtime": "ai-edge-litert", "loads": True, "how": "tested"}
    for mode, result in results.items():
        predicted = compatibility(to_tflite(model, mode, samples), here)[-1]
        assert predicted["loads"] == result["loads"], mode
