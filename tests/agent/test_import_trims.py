"""``agent run`` leaves out the modules that cost resident memory and that it does not need.

With MQTT off, ``hashlib`` would map OpenSSL's libcrypto only for SHA-256 (``_sha256`` does it),
cryptography only for signature checks (a child process does them),
``numpy.ma`` comes only through ``np.unique`` / ``np.percentile``, psutil is for the host source
(health reads /proc): none may come back.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from agent.features.telemetry import sorted_distinct
from agent.health import SelfUsage, _percentile
from tests.agent.flood_bundle import REPO, FloodKit, flood_kit

HEAVY = ("_hashlib", "cryptography", "numpy.ma", "psutil", "sqlite3", "importlib.metadata")
RUN_AND_LIST = """
import atexit, runpy, sys
heavy = sys.argv[2:]
atexit.register(lambda: print("LOADED=" + ",".join(m for m in heavy if m in sys.modules)))
sys.argv = ["agent", "run", "--config", sys.argv[1]]
runpy.run_module("agent", run_name="__main__")
"""


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> FloodKit:
    return flood_kit(tmp_path_factory.mktemp("trims"))


def test_agent_run_with_mqtt_off_imports_no_heavy_module(kit: FloodKit, tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(
        f'[agent]\ndevice_id = "gw"\nstate_dir = "{tmp_path}"\nstats_interval = 0.2\n'
        f'trusted_keys = ["{kit.public_key}"]\n[mqtt]\nenabled = false\n'
        f'[[sources]]\nname = "cap"\nkind = "pcap"\npath = "{kit.capture}"\nloop = true\n'
        f'[[models]]\nname = "flood"\nbundle = "{kit.bundle}"\nsource = "cap"\n'
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", RUN_AND_LIST, str(config), *HEAVY],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    for line in proc.stderr:
        if "running" in line:
            break
    time.sleep(1.0)  # the health snapshot (percentiles) runs every 0.2 s: several have run
    proc.send_signal(signal.SIGTERM)
    try:
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert "Traceback" not in err, err
    assert "LOADED=\n" in out, out


@pytest.mark.parametrize("seed", [0, 1])
def test_trimmed_helpers_match_numpy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    for n in (1, 2, 3, 10, 501):
        latency = rng.exponential(4.0, n)
        for q in (0, 25, 50, 99, 99.9, 100):
            assert _percentile(latency, q) == round(float(np.percentile(latency, q)), 3)
        steps = rng.integers(-3, 40, n)
        assert np.array_equal(sorted_distinct(steps), np.unique(steps))
    assert sorted_distinct(np.zeros(0, np.int64)).size == 0


def test_self_usage_reads_what_psutil_reads() -> None:
    psutil = pytest.importorskip("psutil")
    usage, process = SelfUsage(), psutil.Process()
    process.cpu_percent(None)
    began = time.process_time()
    while time.process_time() - began < 0.2:  # busy: both see the same CPU over the same wall
        pass
    ours, theirs = usage.cpu_percent(), process.cpu_percent(None)
    assert ours > 0
    assert abs(ours - theirs) < 10
    assert abs(usage.rss_bytes() - process.memory_info().rss) < 1 << 20
