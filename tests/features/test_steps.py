"""Steps of N packets or T seconds, their manifest form, and padded stream windows."""

from __future__ import annotations

import numpy as np
import pytest

from agent.features.packets import PacketTable
from agent.features.steps import StepSpec, lead_in, sliding_windows, stream_windows
from agent.features.traffic import TrafficFeaturizer, featurize

S = 1_000_000_000
T0 = 1_700_000_000 * S


def test_whichever_first_parses_and_round_trips() -> None:
    spec = StepSpec.parse("20p/1s")
    assert spec == StepSpec("packets_or_time", 20.0, 1.0)
    assert spec.to_dict() == {"kind": "packets_or_time", "size": 20.0, "seconds": 1.0}
    assert StepSpec.from_dict(spec.to_dict()) == spec
    assert StepSpec.parse(spec.text) == spec
    # manifests written before the new kind still load as they were
    assert StepSpec.from_dict({"kind": "time", "size": 1}) == StepSpec()
    assert StepSpec.from_dict({"kind": "packets", "size": 20}) == StepSpec("packets", 20)
    assert StepSpec.from_dict({"kind": "packets", "size": 20}).to_dict() == {
        "kind": "packets",
        "size": 20.0,
    }


@pytest.mark.parametrize("text", ["20p/0s", "1s/20p", "20/1s", "2.5p/1s", "20p/xs"])
def test_bad_whichever_first_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"packets|literal|could not convert|must be"):
        StepSpec.parse(text)


@pytest.mark.parametrize(
    "text",
    [
        "20p/1e309s",
        "20p/inf",
        "1e309s",
        "nan",
        "1e-300s",
        "99999999999999999999999p",
        "1" * 401 + "p",
    ],
)
def test_a_step_out_of_range_is_a_value_error(text: str) -> None:
    # never OverflowError, and never a step of 0 ns or one no capture could fill
    with pytest.raises(ValueError, match=r"must be|out of range"):
        StepSpec.parse(text)
    with pytest.raises(ValueError, match="must be"):
        StepSpec.from_dict({"kind": "time", "size": 1e300})


def _table(ts: list[int]) -> PacketTable:
    n = len(ts)
    return PacketTable.from_columns(ts_ns=np.array(ts, np.int64), ip_len=np.full(n, 60))


def test_dense_traffic_closes_on_the_count_and_a_trickle_on_the_time() -> None:
    dense = [T0 + i * 1000 for i in range(45)]  # 45 packets in 45 us
    trickle = [T0 + 10 * S + i * 300_000_000 for i in range(5)]  # one packet every 0.3 s
    steps = featurize(_table(dense + trickle), StepSpec.parse("20p/1s"))
    # 20 + 20 + 5 dense; ~9 s of silence = 8 whole idle seconds after the third step closed;
    # then the trickle: 4 packets within 1 s of the first, then the fifth opens a new step
    assert steps.packets.tolist() == [20, 20, 5] + [0] * 8 + [4, 1]
    assert (steps.values[3:11] == 0).all()  # idle steps are "nothing seen" rows


def test_a_quiet_link_closes_the_step_after_t_seconds() -> None:
    f = TrafficFeaturizer(StepSpec.parse("20p/1s"))
    assert len(f.push(_table([T0, T0 + 1000, T0 + 2000]))) == 0
    assert len(f.advance(T0 + S // 2)) == 0  # not yet
    closed = f.advance(T0 + S + 1)
    assert closed.packets.tolist() == [3]
    idle = f.advance(T0 + 3 * S + 2)
    assert idle.packets.tolist() == [0, 0]  # two whole silent seconds since it closed
    assert (idle.values == 0).all()


def test_padded_windows_give_one_window_per_step_from_the_first() -> None:
    steps = np.arange(1, 13, dtype=np.float32).reshape(6, 2)
    padded = stream_windows(steps, 4, "zeros")
    assert padded.shape == (6, 4, 2)
    assert (padded[0, :3] == 0).all()
    assert np.array_equal(padded[0, 3], steps[0])
    assert np.array_equal(padded[3:], sliding_windows(steps, 4))  # full windows unchanged
    assert np.array_equal(stream_windows(steps, 4, "none"), sliding_windows(steps, 4))
    fill = np.array([0.5, 0.25], np.float32)  # training pads scaled rows with the zero image
    assert np.array_equal(lead_in(4, 2, "zeros", fill), np.tile(fill, (3, 1)))
    with pytest.raises(ValueError, match="padding"):
        lead_in(4, 2, "mirror")


def test_evidence_follows_whichever_first_step_boundaries() -> None:
    from agent.sources.traffic_steps import TrafficStepper

    stepper = TrafficStepper(StepSpec.parse("20p/1s"))
    dense = _table([T0 + i * 1000 for i in range(45)])
    batch = stepper.push(dense.take(slice(0, 30)))  # one full step; 10 packets wait
    batch2 = stepper.push(dense.take(slice(30, 45)))  # a second full step; 5 wait
    quiet = stepper.advance(T0 + 3 * S)  # the 5 close 1 s after their first, then 1 idle second
    counts = [e.packets if e is not None else 0 for b in (batch, batch2, quiet) for e in b.evidence]
    assert counts == [20, 20, 5, 0]
    values = np.concatenate([b.values for b in (batch, batch2, quiet)])
    assert values[:, 0].tolist() == [20, 20, 5, 0]  # the packets column agrees with the evidence
