"""``agent run`` leaves out the modules that cost resident memory and that it does not need.

With MQTT off, ``hashlib`` would map OpenSSL's libcrypto only for SHA-256 (``_sha256`` does it),
cryptography only for signature checks (a child process does them),
``numpy.ma`` comes only through ``np.unique`` / ``np.percentile``, psutil is for the host source
(health reads /proc): none may come back. LiteRT's ``libLiteRt.so`` (loaded by the package's
``__init__`` for an API the agent does not use) stays unmapped, whatever the MQTT setting.
"""

from __future__ import annotations

import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest

from agent.features.telemetry import sorted_distinct
from agent.health import SelfUsage, _percentile
from agent.runtime import _without_package_init
from tests.agent import agent_run
from tests.agent.flood_bundle import FloodKit, flood_kit

HEAVY = ("_hashlib", "cryptography", "numpy.ma", "psutil", "sqlite3", "importlib.metadata")
RUN_AND_LIST = """
import atexit, runpy, sys
heavy = sys.argv[2:]
atexit.register(lambda: print("LOADED=" + ",".join(m for m in heavy if m in sys.modules)))
# the agent's own maps at exit: libLiteRt.so must not be among them, the interpreter must
maps = lambda: open("/proc/self/maps").read()
atexit.register(lambda: print("MAPPED=" + ("libLiteRt.so" if "libLiteRt.so" in maps() else "")))
atexit.register(lambda: print("INTERPRETER=" + str("interpreter_wrapper" in maps())))
sys.argv = ["agent", "run", "--config", sys.argv[1]]
runpy.run_module("agent", run_name="__main__")
"""


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> FloodKit:
    return flood_kit(tmp_path_factory.mktemp("trims"))


def test_agent_run_with_mqtt_off_imports_no_heavy_module(kit: FloodKit, tmp_path: Path) -> None:
    proc = agent_run.start(RUN_AND_LIST, agent_run.agent_toml(kit, tmp_path), *HEAVY)
    agent_run.wait_running(proc)
    time.sleep(1.0)  # the health snapshot (percentiles) runs every 0.2 s: several have run
    out, err = agent_run.stop(proc)
    assert "Traceback" not in err, err
    assert "LOADED=\n" in out, out
    assert "MAPPED=\n" in out, out
    assert "INTERPRETER=True" in out, out  # the model did load


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


def test_package_init_skipped_or_run_when_the_submodule_needs_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A submodule that works without its package's __init__ skips it; one that needs it gets it."""
    for name, needs_init in (("lean_pkg_free", False), ("lean_pkg_needs", True)):
        package = tmp_path / name
        package.mkdir()
        (package / "__init__.py").write_text("import sys\nsys.lean_init_ran = True\nREADY = 1\n")
        body = f"from {name} import READY\n" if needs_init else "VALUE = 7\n"
        (package / "interpreter.py").write_text(body)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "lean_init_ran", False, raising=False)
    try:
        free = _without_package_init("lean_pkg_free.interpreter")
        assert isinstance(free, types.ModuleType)
        assert free.VALUE == 7
        assert sys.lean_init_ran is False  # type: ignore[attr-defined]
        assert "lean_pkg_free" not in sys.modules  # a later import runs the real __init__
        needs = _without_package_init("lean_pkg_needs.interpreter")
        assert needs.READY == 1
        assert sys.lean_init_ran is True  # type: ignore[attr-defined]
    finally:
        for name in [n for n in sys.modules if n.startswith("lean_pkg_")]:
            del sys.modules[name]
