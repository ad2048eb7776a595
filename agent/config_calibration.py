"""``[calibration]`` of the agent's config (its own module: agent/config.py is at its size cap).

Present: each model learns this site's thresholds over ``duration`` of its traffic (see
agent/site.py); absent: the bundles' own thresholds, plus any calibration already saved.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(s|m|h|d)")
_UNIT_S = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
MIN_WINDOWS = 100  # fewer windows say nothing about a tail (agent.calibration refuses them)


@dataclass(frozen=True)
class CalibrationConfig:
    """``[calibration]``: the period to learn from and the false-alarm rate to aim for.

    ``attack_free``: the operator vouches that the period holds no attack, so every window of
    it is learned, its rare events too (``agent.calibration``); leave it false on a network
    that may be under attack while it calibrates.
    """

    duration: str = "24h"
    target_false_alarms_per_day: float = 1.0
    attack_free: bool = False

    def __post_init__(self) -> None:
        from agent.config import check  # the loader's key-path errors (imported late: a cycle)

        check(
            _DURATION.fullmatch(self.duration.strip()) is not None,
            "duration",
            f'must be a number and a unit s, m, h or d (e.g. "24h"), got {self.duration!r}',
        )
        check(
            60.0 <= self.seconds <= 30 * 86400.0,
            "duration",
            f"must be 1m..30d, got {self.duration!r}",
        )
        check(
            0.001 <= self.target_false_alarms_per_day <= 1000.0,
            "target_false_alarms_per_day",
            f"must be 0.001..1000, got {self.target_false_alarms_per_day}",
        )
        check(
            isinstance(self.attack_free, bool),
            "attack_free",
            f"must be true or false, got {self.attack_free!r}",
        )

    @property
    def seconds(self) -> float:
        """The calibration period in seconds."""
        match = _DURATION.fullmatch(self.duration.strip())
        return float(match.group(1)) * _UNIT_S[match.group(2)] if match else 0.0

    def windows_at(self, step_s: float) -> int:
        """The windows the period holds at one window per ``step_s`` of traffic: the first
        window's end, then one per step until ``seconds`` have passed."""
        return int(self.seconds / step_s + 1e-9) + 1

    def check_step(self, step_s: float, who: str) -> None:
        """ConfigError naming ``calibration.duration`` when the period can never hold
        ``MIN_WINDOWS`` windows of a time step of ``step_s`` seconds (``who`` names the model):
        the calibration would give up and collect again for ever."""
        from agent.config import ConfigError

        held = self.windows_at(step_s)
        if held >= MIN_WINDOWS:
            return
        raise ConfigError(
            f"calibration.duration: {self.duration!r} holds {held} windows of {who}'s "
            f"{step_s:g} s steps, a calibration needs at least {MIN_WINDOWS}: set it to "
            f"{_at_least(MIN_WINDOWS * step_s)} or more"
        )


def _at_least(seconds: float) -> str:
    """A duration text of at least ``seconds`` (and at least the 1m the key allows)."""
    return f"{max(60, math.ceil(seconds))}s"
