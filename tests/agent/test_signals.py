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
