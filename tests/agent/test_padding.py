"""Padded first windows in the agent's model slot: decided from a stream's first step."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from agent.features.steps import stream_windows
from agent.features.traffic import TRAFFIC_V1
from agent.inference import Debounce, ModelSlot
from agent.sources import StepBatch
from tests.agent.flood_bundle import flood_kit
from tests.agent.padded import STEP, load_padded


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The agent tests' int8 flood model (built by a TensorFlow child process)."""
    return flood_kit(tmp_path_factory.mktemp("flood")).model


def test_a_padded_bundle_scores_from_the_first_step(tmp_path: Path, model: bytes) -> None:
    values = np.zeros((6, TRAFFIC_V1.width), np.float32)
    values[:, 0] = 20  # six full packet steps of a flood
    starts = np.arange(6, dtype=np.int64) * 1_000_000
    first_alarm = {}
    for padding in ("zeros", "none"):
        bundle = load_padded(tmp_path / padding, padding, model)
        slot = ModelSlot("cnn", "lan", TRAFFIC_V1, STEP, bundle, Debounce(1, 1, 3))
        events = slot.push(StepBatch(starts, values))
        assert slot.windows_seen == (6 if padding == "zeros" else 3)
        first_alarm[padding] = events[0].time_ns
        # the slot scores exactly the shared window code's windows of the stream
        windows = stream_windows(values, 4, padding)
        flood = bundle.model.predict(bundle.manifest.prepare(windows))[:, 1]
        first = int(np.argmax(flood > 0.5))
        assert starts[first + (0 if padding == "zeros" else 3)] == events[0].time_ns
    # padded, the flood is decided at its third step; unpadded, not before its fourth
    assert first_alarm["zeros"] == starts[2]
    assert first_alarm["none"] == starts[3]


def test_a_padded_bundle_swapped_in_pads_only_the_missing_steps(
    tmp_path: Path, model: bytes
) -> None:
    slot = ModelSlot("cnn", "lan", TRAFFIC_V1, STEP, load_padded(tmp_path / "none", "none", model))
    values = np.zeros((3, TRAFFIC_V1.width), np.float32)
    values[:, 0] = 20
    starts = np.arange(3, dtype=np.int64)
    slot.push(StepBatch(starts[:2], values[:2]))
    assert slot.windows_seen == 0  # unpadded: 2 of 4 steps seen, no window yet
    slot.stage(load_padded(tmp_path / "zeros", "zeros", model))
    slot.push(StepBatch(starts[2:], values[2:]))
    # the two steps seen are kept, one zero step is added in front: a window at the third step
    assert slot.bundle_id == "flood-zeros"
    assert slot.windows_seen == 1


def test_manifest_padding_and_step_kinds_parse_old_and_new(model: bytes) -> None:
    import json

    from agent.bundle import BundleError, Manifest
    from tests.agent.bundles import manifest_for

    raw = json.loads(manifest_for(model, TRAFFIC_V1, step=STEP).to_json())
    assert raw["step"] == {"kind": "packets_or_time", "size": 20.0, "seconds": 1.0}
    assert Manifest.from_json(json.dumps(raw).encode()).step == STEP
    old = {k: v for k, v in raw.items() if k != "padding"}
    old["step"] = {"kind": "packets", "size": 20}
    parsed = Manifest.from_json(json.dumps(old).encode())  # a bundle made before padding
    assert parsed.padding == "none"
    assert parsed.step.to_dict() == {"kind": "packets", "size": 20.0}
    for key, value, why in (
        ("padding", "mirror", "padding: must be one of none, zeros"),
        ("step", {"kind": "packets_or_time", "size": 20}, "step: step seconds must be 1e-06"),
        ("step", {"kind": "hours", "size": 1}, "step.kind: must be one of"),
    ):
        with pytest.raises(BundleError, match=why):
            Manifest.from_json(json.dumps({**raw, key: value}).encode())


def test_a_swap_between_batches_ends_detections_on_the_stream_s_clock(
    tmp_path: Path, model: bytes
) -> None:
    # a replayed capture from 2001: the old model's open detection ends at its last window,
    # not at today's wall clock, when the swap comes with no steps
    slot = ModelSlot(
        "cnn",
        "lan",
        TRAFFIC_V1,
        STEP,
        load_padded(tmp_path / "a", "zeros", model),
        Debounce(1, 1, 3),
    )
    values = np.zeros((4, TRAFFIC_V1.width), np.float32)
    values[:, 0] = 20
    starts = 1_000_000_000 * 10**9 + np.arange(4, dtype=np.int64) * 10**9
    assert [e.kind for e in slot.push(StepBatch(starts, values))] == ["new"]
    slot.stage(load_padded(tmp_path / "b", "zeros", model))
    empty = StepBatch(np.zeros(0, np.int64), np.zeros((0, TRAFFIC_V1.width), np.float32))
    (ended,) = slot.push(empty)
    assert ended.kind == "end"
    assert ended.time_ns == int(starts[-1])
