"""Raw model outputs of a bundle on a capture's windows, for the x86 / arm64 comparison.

Run by ``scripts/check_arm64.sh`` on this machine and inside the emulated arm64 root with the
same bundle and capture; it imports only the agent (what the gateway's wheelhouse installs).
Usage: ``python arm64_probe.py BUNDLE PUBKEY CAPTURE OUT.json``.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from importlib import metadata
from pathlib import Path

import numpy as np


def main() -> None:
    from agent.bundle import load_bundle
    from agent.features.capture import read_capture
    from agent.features.steps import sliding_windows
    from agent.features.traffic import featurize

    bundle_path, key, capture, out = (Path(a) for a in sys.argv[1:5])
    bundle = load_bundle(bundle_path, [key.read_bytes()])
    manifest = bundle.manifest
    steps = featurize(read_capture(capture).packets, manifest.step).values
    windows = sliding_windows(steps, manifest.window)
    began = time.perf_counter()
    outputs = bundle.model.predict(manifest.prepare(np.ascontiguousarray(windows)))
    seconds = time.perf_counter() - began
    quant = bundle.model.output_quantization
    width = int(np.prod(outputs.shape[1:]))  # a capture shorter than one window gives none
    if quant is not None:  # back to the int8 the interpreter wrote (dequantizing is affine)
        raw = np.round(outputs / quant.scale + quant.zero_point).astype(np.int64)
        values: list[object] = raw.reshape(len(raw), width).tolist()
    else:
        values = outputs.reshape(len(outputs), width).tolist()
    result = {
        "machine": platform.machine(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "runtime": _version("ai-edge-litert"),
        "kernels": bundle.model.kernels,  # [agent] kernels = auto: each machine times its own
        "windows": len(windows),
        "inference_s_per_window": seconds / max(len(windows), 1),
        "outputs": values,
    }
    out.write_text(json.dumps(result))


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "absent"


if __name__ == "__main__":
    main()
