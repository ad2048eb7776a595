"""SIGTERM / SIGINT turned into a stop request without taking a lock inside the handler.

A Python signal handler runs on the main thread between bytecodes, possibly while that thread
holds a ``threading.Event``'s internal lock inside ``wait()``. ``Event.set()`` (or logging,
which locks its handlers) in the handler then waits forever on a lock its own thread holds.
So the handler only records the signal: a loop that polls reads :attr:`SignalLatch.received`,
and :func:`stop_on_signals` relays it to an Event from a thread of its own.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
RELAY_POLL_S = 0.1


class SignalLatch:
    """Records the last stop signal received; nothing else happens in the handler."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, object] = {}

    def install(self) -> bool:
        """Take SIGTERM and SIGINT; False (nothing taken) off the main thread, where Python
        cannot install handlers."""
        if threading.current_thread() is not threading.main_thread():
            return False
        for sig in STOP_SIGNALS:
            self._previous[sig] = signal.getsignal(sig)
            signal.signal(sig, self._handle)
        return True

    def restore(self) -> None:
        """Put back the handlers :meth:`install` replaced."""
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]  # whatever getsignal gave
        self._previous.clear()

    def name(self) -> str:
        """The received signal's name, e.g. ``SIGTERM`` ("" when none came)."""
        return "" if self.received is None else signal.Signals(self.received).name

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.received = signum  # one assignment, no lock


@contextlib.contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[SignalLatch]:
    """Inside, SIGTERM / SIGINT set ``stop`` (within ``RELAY_POLL_S``); handlers restored after."""
    latch = SignalLatch()
    if not latch.install():
        yield latch
        return
    done = threading.Event()

    def relay() -> None:
        while not done.wait(RELAY_POLL_S):
            if latch.received is not None:
                stop.set()
                return

    thread = threading.Thread(target=relay, name="signal-relay", daemon=True)
    thread.start()
    try:
        yield latch
    finally:
        done.set()
        thread.join()
        latch.restore()
