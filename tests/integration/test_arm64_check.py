"""The x86 half of ``make check-arm64``, so the check cannot rot unseen between its runs.

The check itself needs root, binfmt_misc and ~10 minutes, so it stays out of ``make test``.
What it runs on this machine does not: the two bundles it ships into the arm64 root
(``scripts/arm64_bundles.py``), their verification, and the probe that dumps raw outputs for
the comparison (``scripts/arm64_probe.py``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.tf]


def test_the_check_s_bundles_build_verify_and_probe_here(datasets: Path, tmp_path: Path) -> None:
    pytest.importorskip("tensorflow")
    flood = datasets / "mqttset_reduced_pcap" / "flood-train.pcap"
    syn = datasets / "ddos_pcaps_stopddos" / "pkt.TCP.synflood.spoofed.pcap"
    benign = datasets / "mqttset_reduced_pcap" / "benign-train.pcap"
    script = REPO / "scripts" / "arm64_bundles.py"
    args = [sys.executable, str(script), str(tmp_path), str(flood), str(syn), str(benign)]
    subprocess.run(args, cwd=REPO, check=True, capture_output=True, timeout=600)
    for name in ("cnn", "rule"):
        bundle, key = tmp_path / f"{name}.bundle", tmp_path / f"{name}.pub"
        verify = [sys.executable, "-m", "agent.cli", "verify", str(bundle), "--trust-key", str(key)]
        subprocess.run(verify, cwd=REPO, check=True, capture_output=True, timeout=120)
        out = tmp_path / f"{name}.probe.json"
        probe = [sys.executable, str(REPO / "scripts" / "arm64_probe.py"), str(bundle), str(key)]
        subprocess.run([*probe, str(syn), str(out)], cwd=REPO, check=True, timeout=300)
        result = json.loads(out.read_text())
        assert result["windows"] > 0
        assert len(result["outputs"]) == result["windows"]
