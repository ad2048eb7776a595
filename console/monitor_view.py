"""The fleet monitor's views: a redrawing terminal screen, or one line per change.

On a terminal the view redraws in place with plain ANSI escapes (no curses); otherwise it prints
one line per change, which is what logs and tests see.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Final, Protocol, TextIO

from console.monitor_state import Fleet, describe, fmt, shown

ACTIVITY_LINES: Final = 8

_GREEN, _RED, _YELLOW, _BOLD, _RESET = "\x1b[32m", "\x1b[31m", "\x1b[33m", "\x1b[1m", "\x1b[0m"
_CLEAR: Final = "\x1b[H\x1b[2J"
_ENTER_SCREEN: Final = "\x1b[?1049h\x1b[?25l"  # alternate screen, cursor hidden
_LEAVE_SCREEN: Final = "\x1b[?25h\x1b[?1049l"


def clock(stamp: float | None) -> str:
    """HH:MM:SS UTC of a Unix time, ``-`` when unknown."""
    return "-" if stamp is None else time.strftime("%H:%M:%S", time.gmtime(stamp))


def _ago(stamp: float | None, now: float) -> str:
    """How long ago, compactly: ``4s``, ``3m``, ``2h``."""
    if stamp is None:
        return "-"
    seconds = max(0.0, now - stamp)
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.0f}h"


def _paint(text: str, colour: str, enabled: bool) -> str:
    return f"{colour}{text}{_RESET}" if enabled else text


def render(fleet: Fleet, now: float, header: str, colour: bool = False) -> str:
    """The whole view as text: gateways table, active events, recent detections."""
    online = sum(g.status == "online" for g in fleet.gateways.values())
    lines = [
        _paint(f"{header}  {len(fleet.gateways)} gateways, {online} online", _BOLD, colour),
        "",
        f"{'GATEWAY':<20} {'STATUS':<8} {'SEEN':>5} {'PKT/S':>9} {'P50 MS':>7} {'P99 MS':>7}"
        f" {'ACTIVE':>6}  MODEL",
    ]
    for name in sorted(fleet.gateways):
        gateway = fleet.gateways[name]
        status = f"{shown(gateway.status, 8):<8}"
        if gateway.status in ("online", "offline"):
            status = _paint(status, _GREEN if gateway.status == "online" else _RED, colour)
        model = shown((gateway.model or {}).get("bundle_id") or "-")
        lines.append(
            f"{shown(name, 20):<20} {status} {_ago(gateway.last_seen, now):>5}"
            f" {fmt(gateway.stats.get('packets_per_s')):>9}"
            f" {fmt(gateway.stats.get('latency_ms_p50'), 2):>7}"
            f" {fmt(gateway.stats.get('latency_ms_p99'), 2):>7}"
            f" {len(gateway.active):>6}  {model}"
        )
    active = [(g.device, d) for g in fleet.gateways.values() for d in g.active.values()]
    lines += ["", _paint(f"ACTIVE EVENTS ({len(active)})", _BOLD, colour)]
    for device, detection in sorted(active, key=lambda item: item[1].start or 0.0):
        lines.append(
            _paint(
                f"  {shown(device):<20} since {clock(detection.start)}  {describe(detection)}",
                _YELLOW,
                colour,
            )
        )
    recent = [(g.device, d) for g in fleet.gateways.values() for d in g.recent.values()]
    recent.sort(key=lambda item: item[1].start or item[1].end or 0.0, reverse=True)
    lines += ["", _paint("RECENT DETECTIONS", _BOLD, colour)]
    for device, detection in recent[: fleet.recent]:
        ended = "active" if detection.end is None else f"ended {clock(detection.end)}"
        when = clock(detection.start or detection.end)
        lines.append(f"  {when}  {shown(device):<20} {describe(detection)}  {ended}")
    return "\n".join(lines)


class View(Protocol):
    """Where the live monitor shows what changed."""

    def changed(self, lines: list[str], fleet: Fleet, now: float) -> None: ...

    def tick(self, fleet: Fleet, now: float) -> None: ...

    def close(self) -> None: ...


class LineView:
    """Not a terminal: one timestamped line per change, nothing else."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def changed(self, lines: list[str], fleet: Fleet, now: float) -> None:
        """Print each change with its UTC time."""
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
        for line in lines:
            self.out.write(f"{stamp} {line}\n")
        self.out.flush()

    def tick(self, fleet: Fleet, now: float) -> None:
        """Nothing to refresh between changes."""

    def close(self) -> None:
        """Nothing to restore."""


class ScreenView:
    """A terminal: the whole view redrawn in place, at most every ``interval`` seconds."""

    def __init__(self, out: TextIO, header: Callable[[], str], interval: float = 1.0) -> None:
        self.out = out
        self.header = header
        self.interval = interval
        self._drawn = 0.0
        self._dirty = True
        self._opened = False
        self._activity: deque[str] = deque(maxlen=ACTIVITY_LINES)

    def changed(self, lines: list[str], fleet: Fleet, now: float) -> None:
        """Keep the changes for the activity footer; the next tick redraws."""
        self._activity.extend(f"  {clock(now)}  {line}" for line in lines)
        self._dirty = self._dirty or bool(lines)

    def tick(self, fleet: Fleet, now: float) -> None:
        """Redraw when something changed or once a second (the "seen" column ages)."""
        if not self._dirty and now - self._drawn < self.interval:
            return
        if not self._opened:
            # Entered on the first draw, so a connection error prints on the normal screen.
            self.out.write(_ENTER_SCREEN)
            self._opened = True
        footer = "\n".join(["", "", _paint("ACTIVITY", _BOLD, True), *self._activity])
        self.out.write(_CLEAR + render(fleet, now, self.header(), colour=True) + footer + "\n")
        self.out.flush()
        self._drawn, self._dirty = now, False

    def close(self) -> None:
        """Give the terminal back as it was."""
        if self._opened:
            self.out.write(_LEAVE_SCREEN)
            self.out.flush()
            self._opened = False
