"""``agent run`` keeps glibc to two malloc arenas, however many threads allocate."""

from __future__ import annotations

import platform
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.agent import agent_run
from tests.agent.flood_bundle import REPO, flood_kit

# Eight threads allocate at once; glibc's malloc_stats() then lists one "Arena N:" per arena.
THREADS_ALLOCATE = """
import ctypes, sys, threading
if sys.argv[1] == "limited":
    from agent.malloc import limit_arenas
    print("ACCEPTED=" + str(limit_arenas()))
barrier = threading.Barrier(8)
def work():
    barrier.wait()
    kept = [bytes(1000) for _ in range(2000)]
    barrier.wait()
threads = [threading.Thread(target=work) for _ in range(8)]
for t in threads: t.start()
for t in threads: t.join()
sys.stdout.flush()
ctypes.CDLL(None).malloc_stats()
"""
# The agent itself: its source, inference and health threads have run by the time it exits.
RUN_THEN_STATS = """
import atexit, ctypes, runpy, sys
atexit.register(lambda: ctypes.CDLL(None).malloc_stats())
sys.argv = ["agent", "run", "--config", sys.argv[1]]
runpy.run_module("agent", run_name="__main__")
"""

pytestmark = pytest.mark.skipif(
    platform.libc_ver()[0] != "glibc", reason="mallopt's arena limit is glibc's"
)


def _arenas(mode: str) -> tuple[str, int]:
    done = subprocess.run(
        [sys.executable, "-c", THREADS_ALLOCATE, mode],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout, len(re.findall(r"^Arena \d+:", done.stderr, re.MULTILINE))


def test_two_arenas_serve_eight_allocating_threads() -> None:
    out, arenas = _arenas("limited")
    assert out.strip() == "ACCEPTED=True"
    assert arenas == 2
    assert _arenas("default")[1] > 2  # the control: glibc's default gives threads their own


def test_agent_run_uses_at_most_two_arenas(tmp_path: Path) -> None:
    config = agent_run.agent_toml(flood_kit(tmp_path), tmp_path)
    proc = agent_run.start(RUN_THEN_STATS, config)
    agent_run.wait_running(proc)
    time.sleep(1.0)
    err = agent_run.stop(proc)[1]
    assert proc.returncode == 0, err[-3000:]
    arenas = len(re.findall(r"^Arena \d+:", err, re.MULTILINE))
    assert 1 <= arenas <= 2, err[-3000:]
