"""The bounded step queue between the sources and the inference thread, and its sampling rule.

A source never waits for inference (a live capture would drop frames in the kernel instead):
under a flood the queue drops its oldest batch and counts it, and the inference thread scores
only every n-th window while the queue is deep.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class DropOldestQueue(Generic[T]):
    """A FIFO bounded by total weight: ``put`` drops the oldest when full, ``put_wait`` blocks.

    The weight of an item is ``weigh(item)`` (1 by default; the step queue weighs batches by
    their steps, so memory stays bounded however many steps one batch carries). An item heavier
    than the whole capacity is still accepted into an empty queue.
    """

    def __init__(self, maxsize: int, weigh: Callable[[T], int] | None = None) -> None:
        self.maxsize = maxsize
        self._weigh = weigh or (lambda item: 1)
        self._items: deque[tuple[T, int]] = deque()
        self._cond = threading.Condition()
        self._weight = 0
        self.dropped = 0

    def put(self, item: T) -> int:
        """Add ``item``; returns the weight of the old items dropped to make room.

        For steps queued in batches that is the steps dropped, as the stats say, not batches.
        """
        weight = self._weigh(item)
        with self._cond:
            dropped = dropped_weight = 0
            while self._items and self._weight + weight > self.maxsize:
                old = self._items.popleft()[1]
                self._weight -= old
                dropped += 1
                dropped_weight += old
            self.dropped += dropped
            self._append(item, weight)
            return dropped_weight

    def put_wait(self, item: T, stop: threading.Event) -> bool:
        """Add ``item`` once there is room (file replay never drops); False if stopped first."""
        weight = self._weigh(item)
        with self._cond:
            while self._items and self._weight + weight > self.maxsize:
                if stop.is_set():
                    return False
                self._cond.wait(0.2)
            self._append(item, weight)
            return True

    def _append(self, item: T, weight: int) -> None:
        self._items.append((item, weight))
        self._weight += weight
        self._cond.notify_all()

    def get(self, timeout: float) -> T | None:
        """The oldest item, or None after ``timeout`` seconds."""
        with self._cond:
            if not self._items:
                self._cond.wait(timeout)
            if not self._items:
                return None
            item, weight = self._items.popleft()
            self._weight -= weight
            self._cond.notify_all()
            return item

    @property
    def weight(self) -> int:
        """Total weight queued (steps, for the step queue)."""
        with self._cond:
            return self._weight

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)


def sample_every(depth: int, maxsize: int) -> int:
    """Score every n-th window: 1 while the queue is under a quarter full, then 2, 4, 8 ..."""
    quarter = max(maxsize // 4, 1)
    n = 1
    while depth >= quarter * n and n < 64:
        n *= 2
    return n
