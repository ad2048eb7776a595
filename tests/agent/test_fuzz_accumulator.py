"""Hypothesis against a signed manifest's accumulator section and the readings it then watches.

A release pipeline gone wrong can sign any ``extra.accumulator``; parsing it may only refuse it
with AccumulatorError (the bundle is then refused, naming the field). A section that parses must
then turn any readings — NaN, inf, huge, tiny — into ratios without raising, within DEADLINE.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.accumulate import KEYS, Accumulator, AccumulatorError, AccumulatorSpec
from tests.agent.test_accumulate_cross import manifest
from tests.agent.test_accumulate_flat import FLAT
from tests.agent.test_fuzz_inputs import EXAMPLES

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=timedelta(seconds=2),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
WIDTH = 5
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
)
VALUES = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=12) | st.dictionaries(st.text(), inner)
)
READINGS = st.floats(allow_nan=True, allow_infinity=True, width=64)
# every optional check on, so mutations reach each one's parsing; a span of 3 steps, so the
# few readings drawn get past the variability check's warm-up
BASE = manifest(**{**FLAT.to_dict(), "flat_span": 3})


@FUZZ
@given(
    changes=st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=4),
    dropped=st.sets(st.sampled_from(KEYS), max_size=2),
)
def test_a_mutated_section_is_parsed_or_refused_by_name(
    changes: dict[str, Any], dropped: set[str]
) -> None:
    section = {k: v for k, v in {**BASE, **changes}.items() if k not in dropped}
    refusal = ""
    try:
        spec = AccumulatorSpec.from_manifest(section)
        spec.check_width(WIDTH)
    except AccumulatorError as exc:
        refusal = str(exc)
    if refusal:
        assert refusal.startswith("bundle manifest: extra.accumulator")
    else:
        assert Accumulator(spec).ratios(np.zeros(3), np.zeros((3, WIDTH))).shape == (3,)


@FUZZ
@given(
    readings=st.lists(st.lists(READINGS, min_size=WIDTH, max_size=WIDTH), max_size=40),
    scores=st.lists(READINGS, max_size=40),
    split=st.integers(min_value=0, max_value=40),
)
def test_any_readings_give_ratios_never_an_exception(
    readings: list[list[float]], scores: list[float], split: int
) -> None:
    spec = AccumulatorSpec.from_manifest(BASE)
    assert spec.cross is not None
    assert spec.flat is not None
    n = min(len(readings), len(scores))
    steps = np.asarray(readings[:n], np.float64).reshape(n, WIDTH)
    x = np.asarray(scores[:n], np.float64)
    accumulator = Accumulator(spec)
    out = np.concatenate(
        [accumulator.ratios(x[:split], steps[:split]), accumulator.ratios(x[split:], steps[split:])]
    )
    assert out.shape == (n,)
    assert not np.isnan(out).any()
