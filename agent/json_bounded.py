"""JSON from files and messages the agent did not write: integers no wider than an int64.

Python's ``json`` reads an integer of thousands of digits into an int that no float conversion
survives, so a manifest or a calibration file carrying one failed far from its parser (an
OverflowError where a threshold is read). Here it is a ValueError at parse time, which the
callers already turn into their own one-line error. ``NaN`` and ``Infinity`` still parse:
the callers' checks refuse them naming the key.
"""

from __future__ import annotations

import json
from typing import Any

MAX_INT_DIGITS = 19  # an int64's width: epoch nanoseconds fit, and every such int is a float


def loads(text: str | bytes) -> Any:
    """``json.loads`` refusing integers wider than ``MAX_INT_DIGITS`` digits."""
    return json.loads(text, parse_int=_int)


def _int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueError(f"integer {text[:24]}... is wider than {MAX_INT_DIGITS} digits")
    return int(text)
