"""Turning per-window model scores into detection events with a debounced lifecycle.

A window "hits" a label when its score reaches the label's threshold from the bundle manifest.
A detection (an incident) is raised (``new``) when ``raise_k`` of a label's last ``raise_n``
windows hit, updated while hits continue, and ended after ``clear_m`` clean windows in a row.
One attack is one incident: a model that names a flood by two labels in turn gives one detection
whose events carry the label histogram, not one detection per label, and a model that fires on
an attack in bursts gives one detection across the pauses (see ``Decider``), and an attack back
after a longer pause is a new detection of the same incident (``agent.recurrence``). The
event's ``category`` is the label's attack family (``agent.families``). Every event carries a
uuid4 so consumers can drop the duplicates QoS 1 allows.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from agent.decide_policy import DecisionPolicy as DecisionPolicy
from agent.event import Event as Event
from agent.event import EventKind
from agent.evidence import TOP_K as TOP_K
from agent.evidence import Evidence as Evidence
from agent.evidence import Targets as Targets
from agent.evidence import address_text as address_text
from agent.evidence import packet_evidence as packet_evidence
from agent.evidence import step_evidence as step_evidence
from agent.families import family_for
from agent.recurrence import Ended, Recurrences

logger = logging.getLogger(__name__)

# Dormant detections kept at once; past it the longest quiet ends early (at its last hit).
MAX_DORMANT = 32


@dataclass(eq=False)  # one incident is itself only: ``in`` and ``remove`` go by identity
class _Incident:
    """An open detection: one attack, whatever labels the model gives it along the way."""

    id: str
    started_ns: int
    peak: float
    label: int  # the label of the latest hit, reported as the event's label
    labels: Counter[int]  # hit windows per label
    targets: Targets
    last_hit_ns: int
    last_update_ns: int
    windows: int = 1
    clean: int = 0
    since_update: int = 0
    # quiet for quiet_s: owns no label, waits up to hold_s from its last hit to resume or end
    dormant: bool = False
    # the bulk of the last window it showed (its new or latest update)
    latest: Targets = field(default_factory=Targets)
    # the detection another label raised on its targets while it was dormant: until that one
    # is quiet too, the hits are that attack's, not a resumption of this one
    superseded_by: _Incident | None = None
    # when the merge horizon began: ``started_ns`` on the stream clock as it is now
    horizon_ns: int = 0
    incident: str = ""  # the first detection of the incident it belongs to (agent.recurrence)
    recurrence: int = 0  # detections of that incident before this one


def _main_label(inc: _Incident, i: int) -> bool:
    """Label ``i`` has as many hit windows in ``inc`` as any: what the incident is about.

    Only that label resumes a dormant incident: a label the model gave its last windows in
    passing (an attack's tail read as the next attack's kind) must not swallow the next attack.
    """
    return inc.labels[i] > 0 and inc.labels[i] == max(inc.labels.values())


class Decider:
    """Debounces one model's window scores into incidents and their events.

    An attack label that hits while an incident is open joins that incident, with an
    ``update`` event naming it, instead of opening a new detection, when the incident is
    younger than ``merge_horizon_s`` and the window's targets overlap the incident's
    (``Targets.overlaps``). Otherwise it raises a new incident after ``raise_k`` of ``raise_n``
    windows. An incident's own labels are checked when its ``update`` is due: a hit that went
    elsewhere (``Targets.elsewhere``: no shared address, port or sender) is another attack begun
    inside it, and goes loose to raise its own.
    After ``clear_m`` windows in which none of its labels hit, once ``quiet_s`` have passed
    since its last hit, an incident ends, or with ``hold_s`` > ``quiet_s`` turns dormant
    (no event): a hit of its main label (most hit windows) on its targets, or from its bulk
    source, before ``hold_s`` has passed since its last hit resumes it with an ``update``
    (a sweep pausing between hosts stays one); another label raising a detection
    on its targets supersedes it: two attacks in a row stay two, and until the new one is
    quiet too its hits are its own, but a stray raise in an attack's pause does not split the
    attack; it ends once ``hold_s`` has passed, its ``end`` saying its last hit as ``ended_ns``.
    A benign label is never watched, so it neither opens nor extends one.
    """

    def __init__(self, policy: DecisionPolicy, model_id: str, source: str) -> None:
        self.policy = policy
        self.model_id = model_id
        self.source = source
        self._watched = policy.watched()
        self._families = tuple(
            family_for(label, cat)
            for label, cat in zip(policy.labels, policy.categories, strict=True)
        )
        self._thresholds = np.asarray(policy.thresholds, np.float64)
        self._column = {i: c for c, i in enumerate(self._watched)}  # label -> watched column
        self._recent: dict[int, deque[bool]] = {
            i: deque(maxlen=policy.raise_n) for i in self._watched
        }
        self._owner: dict[int, _Incident] = {}  # label -> the open incident it belongs to
        self._loose: deque[bool] = deque(maxlen=policy.raise_n)  # windows with a loose hit
        self._incidents: list[_Incident] = []
        self._ended = Recurrences(policy.recur_s)
        # The newest window's end on the stream's own clock (capture time for a replay): a
        # detection ended by shutdown ends there, so ``start`` and ``end`` share one clock.
        self.last_window_ns: int | None = None

    @property
    def active_labels(self) -> list[str]:
        """Labels of the open incidents, dormant ones too (they have not ended yet)."""
        found = {i for inc in self._incidents for i in inc.labels} | set(self._owner)
        return [self.policy.labels[i] for i in sorted(found)]

    @property
    def busy(self) -> bool:
        """An incident is active (not dormant): the window comes during an attack.

        Site calibration leaves such windows out; a dormant incident's hold is not the attack.
        """
        return bool(self._owner)

    def observe(
        self,
        time_ns: int,
        scores: npt.NDArray[np.floating[Any]],
        evidence: Evidence | Callable[[], Evidence],
    ) -> list[Event]:
        """Feed one window's scores (one per label); returns the events it causes.

        ``evidence`` may be a callable, computed only when an event is emitted or a raising
        label's targets must be compared with an open incident's.
        """
        flat = np.asarray(scores, np.float64).reshape(-1)
        if flat.shape[0] != len(self.policy.labels):
            raise ValueError(f"expected {len(self.policy.labels)} scores, got {flat.shape[0]}")
        hits = flat >= self._thresholds  # NaN compares False: a NaN score never hits
        self._follow_clock(time_ns)
        self.last_window_ns = time_ns
        loose: list[int] = []  # labels that hit and belong to no open incident
        for i in self._watched:
            self._recent[i].append(bool(hits[i]))
            if hits[i] and i not in self._owner:
                loose.append(i)
        solo = self.policy.solo
        self._loose.append(any(i not in solo for i in loose))
        shown: list[Evidence] = []

        def window_evidence() -> Evidence:
            if not shown:
                shown.append(evidence() if callable(evidence) else evidence)
            return shown[0]

        events, released = self._advance(time_ns, flat, hits, window_evidence)
        if released:
            loose += released
            self._loose[-1] = self._loose[-1] or any(i not in solo for i in released)
        # The most confident label opens (or joins) first; the rest follow it.
        for i in sorted(loose, key=lambda j: -flat[j]):
            if i not in self._owner:  # a label before it may have resumed its incident
                events += self._join_or_raise(i, float(flat[i]), time_ns, window_evidence)
        return events

    def observe_many(
        self,
        times_ns: npt.NDArray[np.int64],
        scores: npt.NDArray[np.floating[Any]],
        evidence_at: Callable[[int], Callable[[], Evidence]],
    ) -> tuple[list[Event], npt.NDArray[np.bool_]]:
        """``observe`` for many windows; also says which came while a detection was active.

        Under a flood of benign-looking windows the per-window Python cost dominates, so a run
        of windows in which no watched label hits, while no incident is open, is taken in one
        step: all such a window changes is the debounce memory, which forgets one window each.
        Every other window goes through ``observe``, so the events are the same.
        """
        flat = np.asarray(scores, np.float64).reshape(len(times_ns), -1)
        if flat.shape[1] != len(self.policy.labels):
            raise ValueError(f"expected {len(self.policy.labels)} scores, got {flat.shape[1]}")
        if len(times_ns):
            self._follow_clock(int(times_ns[0]))
        watched = self._watched
        hits = flat[:, watched] >= self._thresholds[watched]
        hit = np.asarray(hits.any(axis=1), bool)
        loud = np.flatnonzero(hit)
        busy = np.zeros(len(flat), bool)
        events: list[Event] = []
        k = 0
        while k < len(flat):
            stop = self._calm_until(k, times_ns, loud) if not hit[k] else k
            if stop > k:
                self._forget(stop - k)
                # busy[k:stop] stays False: no active incident (dormant ones see no attack)
                self.last_window_ns = int(times_ns[stop - 1])
                k = stop
                continue
            stop = self._steady_until(k, times_ns, hits) if hit[k] else k
            if stop > k:  # a flood's windows that only extend its one open detection
                self._extend(k, stop, times_ns, flat, hits)
                busy[k:stop] = True
                k = stop
                continue
            busy[k] = self.busy
            events += self.observe(int(times_ns[k]), flat[k], evidence_at(k))
            k += 1
        return events, busy

    def _follow_clock(self, time_ns: int) -> None:
        """Carry the timers over a stream clock that went back (a live source's steps restart
        when NTP or an admin steps the wall clock back).

        Every timer compares a window's time with a past one: left on the old clock, a dormant
        detection's hold and an active one's quiet would not run out, nor updates come due,
        until the clock caught up again (an hour, or months on a Pi without RTC), the state
        topic showing the attack open all the while. Their ages are kept instead; the times a
        detection already published (its ``start``) stay as they were.
        """
        if self.last_window_ns is None or time_ns >= self.last_window_ns:
            return
        shift = time_ns - self.last_window_ns
        for inc in self._incidents:
            inc.last_hit_ns += shift
            inc.last_update_ns += shift
            inc.horizon_ns += shift
        self._ended.shift(shift)

    def _calm_until(
        self, k: int, times_ns: npt.NDArray[np.int64], loud: npt.NDArray[np.intp]
    ) -> int:
        """Where a run of hitless windows from ``k`` stops changing anything but the counts.

        With no incident open, up to the next hit; with only dormant ones, up to the next hit
        or the first window at which one's hold runs out; with an active one, nothing (``k``).
        """
        if any(not inc.dormant for inc in self._incidents):
            return k
        nxt = int(np.searchsorted(loud, k))
        stop = int(loud[nxt]) if nxt < len(loud) else len(times_ns)
        if self._incidents:
            expiry = min(inc.last_hit_ns for inc in self._incidents) + self.policy.hold_s * 1e9
            stop = min(stop, int(np.searchsorted(times_ns, expiry, side="left")))
        return max(stop, k)

    def _steady_until(
        self, k: int, times_ns: npt.NDArray[np.int64], hits: npt.NDArray[np.bool_]
    ) -> int:
        """Where a run from ``k`` stops being windows that only extend the one open incident.

        Such a window hits only labels that incident owns, at least one, and brings no
        ``update``: all it changes is counts, the incident's label, peak and last hit.
        """
        active = [inc for inc in self._incidents if not inc.dormant]
        if len(active) != 1:
            return k
        inc = active[0]
        owned = np.zeros(len(self._watched), bool)
        owned[[self._column[i] for i, o in self._owner.items() if o is inc]] = True
        run = hits[k:]
        ok = np.asarray(run[:, owned].any(axis=1) & ~run[:, ~owned].any(axis=1), bool)
        stop = len(ok) if ok.all() else int(np.argmin(ok))
        if len(self._incidents) > 1:  # dormant ones too: stop where the first one's hold runs out
            expiry = (
                min(x.last_hit_ns for x in self._incidents if x.dormant) + self.policy.hold_s * 1e9
            )
            stop = min(stop, int(np.searchsorted(times_ns[k:], expiry, side="left")))
        since = inc.since_update + np.arange(1, stop + 1)
        waited = times_ns[k : k + stop] - inc.last_update_ns >= self.policy.update_s * 1e9
        due = (since >= self.policy.update_every) & waited
        return k + (int(np.argmax(due)) if due.any() else stop)

    def _extend(
        self,
        k: int,
        stop: int,
        times_ns: npt.NDArray[np.int64],
        flat: npt.NDArray[np.float64],
        hits: npt.NDArray[np.bool_],
    ) -> None:
        """``observe`` for the windows ``_steady_until`` found, at once (the same state after)."""
        inc = next(x for x in self._incidents if not x.dormant)
        n, keep = stop - k, self.policy.raise_n
        for c, i in enumerate(self._watched):
            self._recent[i].extend(hits[max(k, stop - keep) : stop, c].tolist())
        self._loose.extend([False] * min(n, keep))
        mine = [i for i, o in self._owner.items() if o is inc]  # in the order observe takes them
        scores = np.where(
            hits[k:stop][:, [self._column[i] for i in mine]], flat[k:stop][:, mine], -np.inf
        )
        best = scores.argmax(axis=1)  # the first of equal scores, as ``max`` in observe
        for c, i in enumerate(mine):  # each owned label is in the histogram since it joined
            inc.labels[i] += int(np.count_nonzero(scores[:, c] > -np.inf))
        for other in self._incidents:  # the dormant ones count these windows as observe does
            other.windows += n
            other.since_update += n
        inc.clean = 0
        inc.label = mine[int(best[-1])]
        inc.peak = max(inc.peak, float(scores[np.arange(n), best].max()))
        inc.last_hit_ns = self.last_window_ns = int(times_ns[stop - 1])

    def _forget(self, windows: int) -> None:
        """``windows`` windows without a watched hit and no active incident (observe_many)."""
        quiet = [False] * min(windows, self.policy.raise_n)
        for recent in self._recent.values():
            recent.extend(quiet)
        self._loose.extend(quiet)
        for inc in self._incidents:  # dormant ones: these windows are part of their span
            inc.windows += windows
            inc.clean += windows
            inc.since_update += windows

    def close(self, time_ns: int, evidence: Evidence | None = None) -> list[Event]:
        """End every open incident (the stream ended or the model is being replaced).

        An active one ends at ``time_ns``; a dormant one at its last hit, as if it had waited.
        """
        events = [
            self._event(
                "end", inc, time_ns, inc.peak, evidence, inc.last_hit_ns if inc.dormant else time_ns
            )
            for inc in self._incidents
        ]
        self._incidents.clear()
        self._owner.clear()
        for recent in self._recent.values():
            recent.clear()
        self._loose.clear()
        return events

    def _advance(
        self,
        time_ns: int,
        flat: npt.NDArray[np.float64],
        hits: npt.NDArray[np.bool_],
        window_evidence: Callable[[], Evidence],
    ) -> tuple[list[Event], list[int]]:
        """One window for every open incident: hits keep it alive, ``clear_m`` misses end it.

        Also returns the labels released: their hit was due an ``update`` but went elsewhere.
        """
        events: list[Event] = []
        released: list[int] = []
        for inc in list(self._incidents):
            inc.windows += 1
            inc.since_update += 1
            if inc.dormant:
                # its labels are loose now: a hit resumes it in _join_or_raise
                if time_ns - inc.last_hit_ns >= self.policy.hold_s * 1e9:
                    events.append(self._finish(inc, time_ns, flat, window_evidence()))
                continue
            mine = [i for i, owner in self._owner.items() if owner is inc and hits[i]]
            if mine and self._update_due(inc, time_ns):
                shown = window_evidence()
                if inc.targets.elsewhere(Targets.of(shown)):
                    # Another attack began inside this detection (a benign download read as
                    # unknown, then a flood on the broker): its hits are not this incident's,
                    # they go on loose and raise their own. Checked only when the update's
                    # evidence is made anyway, so a flood's windows cost no more.
                    for i in mine:
                        del self._owner[i]
                    released += mine
                    mine = []
            if mine:
                best = max(mine, key=lambda i: flat[i])
                inc.clean = 0
                inc.label = best
                inc.labels.update(mine)
                inc.peak = max(inc.peak, float(flat[best]))
                inc.last_hit_ns = time_ns
                if self._update_due(inc, time_ns):
                    inc.since_update = 0
                    inc.last_update_ns = time_ns
                    shown = window_evidence()
                    inc.targets = inc.targets.add(shown)
                    inc.latest = Targets.of(shown)
                    events.append(self._event("update", inc, time_ns, float(flat[best]), shown))
                continue
            inc.clean += 1
            quiet = time_ns - inc.last_hit_ns >= self.policy.quiet_s * 1e9
            if inc.clean < self.policy.clear_m or not quiet:
                continue
            if self.policy.hold_s > self.policy.quiet_s:
                self._sleep(inc)
                continue
            self._end(inc)
            score = float(flat[inc.label])
            events.append(self._event("end", inc, time_ns, score, window_evidence(), time_ns))
        return events, released

    def _update_due(self, inc: _Incident, time_ns: int) -> bool:
        """A hit now sends ``inc``'s periodic ``update`` (every few windows, bounded in time)."""
        return (
            inc.since_update >= self.policy.update_every
            and time_ns - inc.last_update_ns >= self.policy.update_s * 1e9
        )

    def _join_or_raise(
        self, i: int, score: float, time_ns: int, window_evidence: Callable[[], Evidence]
    ) -> list[Event]:
        """Label ``i`` hit outside any active incident: resume or join one on the same targets,
        or raise one.

        Resuming a dormant incident whose main label is ``i`` and joining an active one both need
        one hit (the incident is already debounced); raising needs ``raise_k`` of the last
        ``raise_n`` windows with such hits, of this label or of any label, so an attack the
        model names by alternating labels is still raised. A raise supersedes the dormant
        incidents on its targets: they resume only once it is quiet too (a stray raise in a
        pause), and meanwhile their labels' hits there join it (a different attack followed).
        """
        here: Targets | None = None
        dormant = [inc for inc in self._incidents if self._resumable(inc) and _main_label(inc, i)]
        if dormant:
            shown = window_evidence()
            here = Targets.of(shown)
            for inc in sorted(dormant, key=lambda inc: -inc.last_hit_ns):
                # the same targets, or the same sender: a sweep that pauses between hosts
                if inc.targets.overlaps(here) or inc.targets.same_source(here):
                    inc.dormant = False
                    return [self._absorb(inc, i, score, time_ns, shown)]
        horizon_ns = self.policy.merge_horizon_s * 1e9
        young = [
            inc
            for inc in self._incidents
            if not inc.dormant and time_ns - inc.horizon_ns <= horizon_ns
        ]
        if young:
            shown = window_evidence()
            here = Targets.of(shown)
            for inc in young:
                if inc.targets.overlaps(here):
                    return [self._absorb(inc, i, score, time_ns, shown)]
        k = self.policy.raise_k
        if sum(self._recent[i]) < k and sum(self._loose) < k and score < self.policy.raise_score:
            return []
        shown = window_evidence()
        here = Targets.of(shown)
        # the traffic an incident showed last, only named differently: the same attack, at
        # any age (a 14-min reflection read as three labels in turn stays one detection)
        same = [inc for inc in self._incidents if inc.latest.same_traffic(here)]
        if same:
            inc = max(same, key=lambda inc: inc.last_hit_ns)
            inc.dormant = False
            return [self._absorb(inc, i, score, time_ns, shown)]
        first = self._ended.find(i, here, time_ns)
        new_id = str(uuid.uuid4())
        inc = _Incident(
            new_id,
            time_ns,
            score,
            i,
            Counter({i: sum(self._recent[i])}),
            here,
            last_hit_ns=time_ns,
            last_update_ns=time_ns,
            horizon_ns=time_ns,
            latest=here,
            incident=first.incident if first else new_id,
            recurrence=first.recurrence + 1 if first else 0,
        )
        for old in self._incidents:
            if old.dormant and old.targets.overlaps(here):
                old.superseded_by = inc
        self._incidents.append(inc)
        self._owner[i] = inc
        self._loose.clear()  # these hits raised this incident; the next one needs its own
        return [*self._evict(time_ns, shown), self._event("new", inc, time_ns, score, shown)]

    def _resumable(self, inc: _Incident) -> bool:
        """``inc`` is dormant and no detection raised over it since is still active."""
        over = inc.superseded_by  # cleared when that one ends
        return inc.dormant and (over is None or over.dormant)

    def _evict(self, time_ns: int, shown: Evidence) -> list[Event]:
        """End the dormant incidents past ``MAX_DORMANT``, longest quiet first (bounded memory:
        a stream raising on ever new targets would otherwise keep each for ``hold_s``)."""
        dormant = sorted((x for x in self._incidents if x.dormant), key=lambda x: x.last_hit_ns)
        over = dormant[: max(0, len(dormant) - MAX_DORMANT)]
        return [self._finish(inc, time_ns, None, shown) for inc in over]

    def _absorb(self, inc: _Incident, i: int, score: float, time_ns: int, shown: Evidence) -> Event:
        """Label ``i``'s hit joins (or resumes) ``inc``: an ``update`` naming it."""
        self._owner[i] = inc
        inc.label = i
        inc.labels[i] += 1
        inc.peak = max(inc.peak, score)
        inc.clean = 0
        inc.since_update = 0
        inc.last_hit_ns = inc.last_update_ns = time_ns
        inc.targets = inc.targets.add(shown)
        inc.latest = Targets.of(shown)
        return self._event("update", inc, time_ns, score, shown)

    def _sleep(self, inc: _Incident) -> None:
        """Quiet long enough: dormant, its labels loose (they debounce on, to raise or resume)."""
        inc.dormant = True
        for i in [i for i, owner in self._owner.items() if owner is inc]:
            del self._owner[i]

    def _finish(
        self,
        inc: _Incident,
        time_ns: int,
        flat: npt.NDArray[np.float64] | None,
        evidence: Evidence,
    ) -> Event:
        """End a dormant incident, decided at ``time_ns``, ended at its last hit."""
        self._end(inc)
        score = float(flat[inc.label]) if flat is not None else 0.0
        return self._event("end", inc, time_ns, score, evidence, inc.last_hit_ns)

    def _end(self, inc: _Incident) -> None:
        """Forget a finished incident; its labels debounce from scratch; a recurrence may
        name it."""
        self._incidents.remove(inc)
        main = inc.labels.most_common(1)[0][0] if inc.labels else inc.label
        self._ended.remember(
            Ended(inc.incident, inc.recurrence, main, inc.targets, inc.last_hit_ns)
        )
        for other in self._incidents:
            if other.superseded_by is inc:
                other.superseded_by = None
        for i in [i for i, owner in self._owner.items() if owner is inc]:
            del self._owner[i]
            self._recent[i].clear()

    def _event(
        self,
        kind: EventKind,
        inc: _Incident,
        time_ns: int,
        score: float,
        evidence: Evidence | None = None,
        ended_ns: int | None = None,
    ) -> Event:
        labels = self.policy.labels
        event = Event(
            kind=kind,
            id=inc.id,
            model=self.model_id,
            source=self.source,
            label=labels[inc.label],
            category=self._families[inc.label],
            started_ns=inc.started_ns,
            time_ns=time_ns,
            score=score,
            peak=inc.peak,
            windows=inc.windows,
            evidence=evidence or Evidence(),
            ended_ns=ended_ns,
            labels=tuple((labels[i], n) for i, n in inc.labels.most_common()),
            threshold=float(self._thresholds[inc.label]),
            incident=inc.incident,
            recurrence=inc.recurrence,
        )
        # new and end at info; updates (one per update_every windows of every open incident, a
        # stream of them when a capture replays at full speed) at debug
        logger.log(
            logging.DEBUG if kind == "update" else logging.INFO,
            "%s %s (%s) %s score=%.3f%s",
            kind,
            event.label,
            event.category,
            event.id,
            score,
            f" recurs {inc.incident} (#{inc.recurrence + 1})" if inc.recurrence else "",
        )
        return event
