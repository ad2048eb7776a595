"""SIGTERM / SIGINT become a stop request without a lock taken inside the handler."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

from agent.signals import SignalLatch, stop_on_signals
from tests.agent import agent_run
from tests.agent.flood_bundle import flood_kit

REPO = Path(__file__).resolve().parents[2]

# The main thread spins on Event.wait, so a signal nearly always lands while it holds the
# Event's lock: a handler that called stop.set() itself would hang here.
SPINNER = textwrap.dedent(
    """
    import sys, threading
    from agent.signals import stop_on_signals
    stop = threading.Event()
    with stop_on_signals(stop):
        print("ready", flush=True)
        while not stop.wait(0.0001):
            pass
    print("stopped", flush=True)
    """
)


def test_stop_on_signals_sets_the_event_and_restores_the_handlers() -> None:
    before = signal.getsignal(signal.SIGTERM)
    stop = threading.Event()
    with stop_on_signals(stop) as latch:
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.wait(5.0)
        assert latch.name() == "SIGTERM"
    assert signal.getsignal(signal.SIGTERM) is before


def test_latch_off_the_main_thread_takes_no_signal() -> None:
    taken: list[bool] = []
    thread = threading.Thread(target=lambda: taken.append(SignalLatch().install()))
    thread.start()
    thread.join()
    assert taken == [False]


def test_a_process_spinning_on_the_event_stops_on_every_sigterm() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for signum in (signal.SIGTERM, signal.SIGINT) * 4:
        proc = subprocess.Popen(
            [sys.executable, "-c", SPINNER], stdout=subprocess.PIPE, text=True, env=env
        )
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "ready"
            time.sleep(0.05)
            proc.send_signal(signum)
            out, _ = proc.communicate(timeout=10)
        finally:
            proc.kill()
        assert proc.returncode == 0
        assert out.strip() == "stopped"


# The agent itself, with SIGTERM arriving while it loads (inside App(), before its run loop
# takes the signals): sent by the process to itself, so it lands there every time.
TERM_WHILE_LOADING = """
import os, runpy, signal, sys
import agent.app
real_init = agent.app.App.__init__
def loading(self, *args, **kwargs):
    os.kill(os.getpid(), signal.SIGTERM)
    real_init(self, *args, **kwargs)
agent.app.App.__init__ = loading
sys.argv = ["agent", "run", "--config", sys.argv[1]]
runpy.run_module("agent", run_name="__main__")
"""


def test_a_sigterm_while_the_agent_loads_is_a_clean_stop_with_exit_0(tmp_path: Path) -> None:
    config = agent_run.agent_toml(flood_kit(tmp_path), tmp_path)
    proc = agent_run.start(TERM_WHILE_LOADING, config)
    try:
        proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    log = proc.log()
    assert proc.returncode == 0, log[-3000:]  # was -15: killed by the signal, not stopped
    assert "signal SIGTERM: stopping" in log
    assert "Traceback" not in log
