"""The two signed int8 bundles ``scripts/check_arm64.sh`` runs on arm64 and on this machine.

A CNN with random weights at 20-packet steps (many windows: the outputs must be equal, accuracy
is not the point) and the replay benchmark's hand-set flood rule at 1-second steps (it raises
events on the SYN flood, so the events compared are not empty). Each lands in FOLDER as
``<name>.bundle`` with its trust key ``<name>.pub``. Needs TensorFlow (the [train] extra).
Usage: ``python arm64_bundles.py FOLDER CAPTURE CAPTURE BENIGN_CAPTURE``.
"""

from __future__ import annotations

import sys
from pathlib import Path

LABELS = ("benign", "ddos", "scan", "bruteforce")
PACKET_STEP = {"kind": "packets", "size": 20}


def build(folder: Path, captures: list[Path], benign_capture: Path) -> None:
    """Write cnn.bundle / cnn.pub and rule.bundle / rule.pub into ``folder``."""
    from converters.quantize import quiet_tensorflow

    quiet_tensorflow()
    from agent.features.capture import read_capture
    from agent.features.traffic import TRAFFIC_V1, featurize
    from benchmarks import agent_replay as ar

    maxima = ar._feature_maxima(captures)
    tflite = ar._cnn_int8(TRAFFIC_V1.width, len(LABELS), ar.PACKET_WINDOW)
    _, key = ar._bundle(
        folder,
        "cnn",
        tflite,
        window=ar.PACKET_WINDOW,
        labels=LABELS,
        maxima=maxima,
        model_type="cnn",
        step=PACKET_STEP,
    )
    key.replace(folder / "cnn.pub")
    benign = featurize(read_capture(benign_capture).packets).values
    _, key, _ = ar._detector(folder, benign)
    key.replace(folder / "rule.pub")


def main() -> None:
    folder, *captures, benign = (Path(a) for a in sys.argv[1:])
    build(folder, captures, benign)


if __name__ == "__main__":
    main()
