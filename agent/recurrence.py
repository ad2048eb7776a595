"""Recurrences: the same detection raised again on the same targets soon after it ended.

An attack that pauses for longer than ``hold`` (a campaign in bursts minutes apart) ends its
detection, and its next burst raises a new one. When that new detection's label is the main
label of a detection that ended within ``recur_s`` of its last hit, from the same sender or on
the same target and port, it is a recurrence: it keeps its own id and lifecycle (``new`` ...
``end``, nothing held back or dropped) and carries the first detection's ``incident`` id and how
many times the incident has come back, so a console shows one incident an operator acts on once.
Zeek's notice framework suppresses such a repeat for an hour by default; here the repeat is
still sent, only linked, and an hour is the default for the same reason: an attacker back
within the hour is the same matter.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, replace

from agent.evidence import Targets

# Ended detections remembered at once; past it the oldest are forgotten (bounded memory: a
# stream of detections on ever new targets would otherwise keep each for recur_s).
MAX_ENDED = 64


@dataclass(frozen=True)
class Ended:
    """What an ended detection leaves for a recurrence to match."""

    incident: str
    recurrence: int  # 0: the incident's first detection
    label: int  # its main label (most hit windows)
    targets: Targets
    last_hit_ns: int


class Recurrences:
    """The detections that ended within ``recur_s`` of now, newest last."""

    def __init__(self, recur_s: float) -> None:
        self._recur_ns = recur_s * 1e9
        self._ended: deque[Ended] = deque(maxlen=MAX_ENDED)

    def remember(self, ended: Ended) -> None:
        if self._recur_ns > 0:
            self._ended.append(ended)

    def shift(self, delta_ns: int) -> None:
        """Move every last hit by ``delta_ns``: the stream clock went back (``Decider``)."""
        self._ended = deque(
            (replace(e, last_hit_ns=e.last_hit_ns + delta_ns) for e in self._ended),
            maxlen=MAX_ENDED,
        )

    def find(self, label: int, here: Targets, time_ns: int) -> Ended | None:
        """The newest ended detection a raise of ``label`` on ``here`` at ``time_ns`` recurs."""
        while self._ended and time_ns - self._ended[0].last_hit_ns > self._recur_ns:
            self._ended.popleft()
        for ended in reversed(self._ended):
            if ended.label != label or time_ns - ended.last_hit_ns > self._recur_ns:
                continue
            if _same_attack(ended.targets, here):
                return ended
        return None


def _same_attack(then: Targets, now: Targets) -> bool:
    """The same sender, or the same service of the same target (a spoofed flood's senders
    are new every burst). A target alone is not enough: on a gateway nearly every attack hits
    the gateway, and a model that gives two attacks one label would make them one incident."""
    if then.same_source(now):
        return True
    return then.overlaps(now) and not set(then.ports).isdisjoint(now.ports)
