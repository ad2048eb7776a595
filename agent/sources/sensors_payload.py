"""A sensor reading out of an MQTT payload, parsed as if every payload were hostile.

Anyone who can publish on a sensor topic controls the bytes, so parsing is bounded before it
starts: the payload's size is capped, a JSON document's nesting is measured by a flat scan
before ``json`` (whose recursion a ``[`` × 100,000 payload would exhaust) sees it, and only a
plain decimal number is a number. ``true``, ``"open"``, ``1_0``, ``NaN`` are not, unless the
sensor's ``values`` mapping names that exact text. Every refusal is a ``PayloadError`` whose
``reason`` is the short key counted in the source's ``malformed`` stats.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

from agent.features.telemetry import MAX_READING

MAX_PAYLOAD_BYTES = 16 * 1024  # a sensor reading is a number or a small JSON object
MAX_JSON_DEPTH = 32  # arrays and objects nested in one another

# A plain decimal number: no underscores (``1_0``), no ``inf``/``nan``, no hex, no spaces inside.
# One way to match each digit: ``\d+\.?\d*`` split a run of digits between its two ``\d``s in
# every possible place before failing, quadratic in a 16 KiB run of digits ending in a letter.
DECIMAL = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
_JSON_NUMBER = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?", re.ASCII)


class PayloadError(ValueError):
    """A payload that holds no usable reading; ``reason`` is the counter it is filed under."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def reading_value(
    payload: bytes, field: str = "", values: Mapping[str, float] | None = None
) -> float:
    """The finite reading in ``payload``: the whole payload, or JSON ``field`` (a dotted path).

    ``values`` maps exact texts (``open``, ``ON``, JSON ``true``) to numbers; without an entry
    such a payload is refused with reason ``not_a_number``.
    """
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise PayloadError("too_large", f"payload of {len(payload)} bytes > {MAX_PAYLOAD_BYTES}")
    try:
        text = payload.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise PayloadError("not_utf8", "payload is not UTF-8") from None
    mapping = values or {}
    if not field:
        return _number(text, mapping)
    node = _field(_json(text), field)
    if isinstance(node, bool):
        return _mapped("true" if node else "false", mapping)
    if isinstance(node, str):
        return _mapped(node, mapping)
    if isinstance(node, int | float):
        return _finite(node)
    raise PayloadError("not_a_number", f"field {field!r} is {type(node).__name__}, not a number")


def json_depth(text: str) -> int:
    """Deepest nesting of ``[``/``{`` in a JSON text, brackets inside strings not counted."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
            if deepest > MAX_JSON_DEPTH:  # no need to read a bomb to its end
                return deepest
        elif char in "]}":
            depth -= 1
    return deepest


def _number(text: str, mapping: Mapping[str, float]) -> float:
    if text in mapping:
        return mapping[text]
    if DECIMAL.fullmatch(text) is None:
        raise PayloadError("not_a_number", f"{text[:40]!r} is not a number")
    return _finite(float(text))


def _mapped(text: str, mapping: Mapping[str, float]) -> float:
    if text in mapping:
        return mapping[text]
    raise PayloadError("not_a_number", f"{text[:40]!r} is not a number and has no mapping")


def _json(text: str) -> Any:
    if json_depth(text) > MAX_JSON_DEPTH:
        raise PayloadError("too_deep", f"JSON nested deeper than {MAX_JSON_DEPTH}")
    try:
        return json.loads(text, parse_constant=_refuse_constant, parse_int=_json_int)
    except PayloadError:
        raise
    except (ValueError, RecursionError) as exc:  # RecursionError: belt and braces, see above
        raise PayloadError("bad_json", f"not JSON: {exc}") from None


def _refuse_constant(name: str) -> float:
    raise PayloadError("non_finite", f"JSON {name} is not a reading")


def _json_int(text: str) -> float:
    # As a float straight away: a 400-digit integer becomes inf (refused below) instead of an
    # int that float() cannot convert (OverflowError) or that takes quadratic time to parse.
    if _JSON_NUMBER.fullmatch(text) is None:  # json only calls this for its own integer syntax
        raise PayloadError("bad_json", f"bad integer {text[:40]!r}")
    return float(text)


def _field(document: Any, field: str) -> Any:
    node = document
    for part in field.split("."):
        if not isinstance(node, dict) or part not in node:
            raise PayloadError("no_field", f"no field {field!r}")
        node = node[part]
    return node


def _finite(value: float) -> float:
    try:
        number = float(value)
    except OverflowError:
        raise PayloadError("out_of_range", "number too large for a float") from None
    if not (math.isfinite(number) and abs(number) <= MAX_READING):
        raise PayloadError("out_of_range", f"{str(value)[:40]} is beyond ±{MAX_READING:g}")
    return number
