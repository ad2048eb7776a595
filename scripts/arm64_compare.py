"""Compare the arm64 (emulated) run with this machine's: events, int8 outputs, versions.

Usage: ``python arm64_compare.py RESULT_DIR EMULATED_SECONDS``; exits 1 when events differ or
outputs differ by more than one quantization step.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from agent.event import comparable  # after the repository is put on the path


def _events(path: Path) -> list[dict[str, object]]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return comparable(rows)  # ids are random uuids; everything else must match


def main() -> int:
    folder = Path(sys.argv[1])
    emulated_s = float(sys.argv[2]) if len(sys.argv) > 2 else float("nan")
    ok = True
    runs = sorted(folder.glob("*.arm64.jsonl"))
    if not runs:  # the arm64 half never wrote a result: nothing to compare is a failure
        print(f"check-arm64: FAIL (no *.arm64.jsonl in {folder})")
        return 1
    for arm in runs:
        name = arm.name.removesuffix(".arm64.jsonl")
        a, x = _events(arm), _events(folder / f"{name}.x86.jsonl")
        same = a == x
        ok &= same
        print(f"{name}: events arm64={len(a)} x86={len(x)} identical={same}")
        pa = json.loads((folder / f"{name}.arm64.probe.json").read_text())
        px = json.loads((folder / f"{name}.x86.probe.json").read_text())
        oa, ox = np.asarray(pa["outputs"]), np.asarray(px["outputs"])
        diff = int(np.abs(oa - ox).max()) if oa.shape == ox.shape and oa.size else 0
        equal = oa.shape == ox.shape and diff == 0
        ok &= oa.shape == ox.shape and diff <= 1
        print(
            f"{name}: {pa['windows']} windows, int8 outputs equal={equal} "
            f"(max |diff| {diff} quantization steps, {int((oa != ox).sum())} of {oa.size} differ;"
            f" kernels arm64 {pa.get('kernels', '?')}, x86 {px.get('kernels', '?')})"
        )
        print(
            f"{name}: inference per window, EMULATED arm64 "
            f"{pa['inference_s_per_window'] * 1e6:.0f} us"
            f" vs native x86 {px['inference_s_per_window'] * 1e6:.0f} us (emulation, not a Pi)"
        )
    for path in sorted(folder.glob("*.verify.json")):
        verify = json.loads(path.read_text())
        print(f"arm64 verify {path.name}: signature {verify['signature']['status']}")
    print(
        f"versions arm64: python {pa['python']} numpy {pa['numpy']} ai-edge-litert {pa['runtime']}"
        f" | x86: python {px['python']} numpy {px['numpy']} ai-edge-litert {px['runtime']}"
    )
    print(f"emulated arm64 wall time (verify + replays + probes): {emulated_s:.0f} s")
    print("check-arm64:", "PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
