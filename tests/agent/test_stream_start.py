"""A stream's first windows (a network booting) get their own ``unknown`` edge: the bundle's
signed one until a site calibration brings the site's own (the higher of the two holds)."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agent import calibration as cal
from agent import stream_start
from agent.bundle import BundleError, Manifest, load_bundle, load_public_key
from agent.calibrate_cli import calibrate_bundle
from agent.calibration_collect import Collector
from agent.features.steps import StepSpec
from agent.features.traffic import TRAFFIC_V1
from agent.openset import Fusion, OpenSetSpec, describe
from agent.replay import replay_capture
from agent.stream_start import START_MARGIN
from converters.openset import pair
from tests.agent.bundles import (
    bundle_bytes,
    ethernet,
    flood_frames,
    ipv4,
    manifest_for,
    pcap_bytes,
    udp,
)
from tests.agent.flood_bundle import FloodKit, flood_kit
from tests.agent.openset_kit import THRESHOLD, PairKit, benign_spec, pair_kit, zero_benign_model
from tests.agent.run_app import run_to_end

T0 = 1_700_000_000.0


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> FloodKit:
    return flood_kit(tmp_path_factory.mktemp("flood"))


@pytest.fixture(scope="module")
def pairs(kit: FloodKit, tmp_path_factory: pytest.TempPathFactory) -> PairKit:
    return pair_kit(kit, tmp_path_factory.mktemp("pairs"))


def test_the_first_windows_are_judged_against_the_start_edge() -> None:
    fusion = Fusion((1,), (0.5, 0.5), 2.0, 2.0, start_threshold=8.0, start_windows=10)
    probabilities = np.tile([0.9, 0.1], (3, 1))
    anomaly = np.array([6.0, 6.0, 16.0])
    fused = fusion.fuse(probabilities, anomaly, np.array([0, 10, 9]))
    assert fused[0, 2] == 0.0  # window 0: 6 is under the start edge
    assert fused[1, 2] == pytest.approx(0.75)  # window 10: the steady edge, r = 3
    assert fused[2, 2] == pytest.approx(2 / 3)  # window 9: r = 16 / 8
    assert fusion.fuse(probabilities, anomaly)[0, 2] == pytest.approx(0.75)  # no numbers: steady


def _compute(start: Any, ends: Any = None) -> cal.SiteCalibration:
    n = 2000
    return cal.compute(
        bundle_id="b",
        labels=("benign", "flood"),
        watched=(1,),
        signed=(0.5, 0.5),
        probabilities=np.column_stack((np.full(n, 0.9), np.full(n, 0.1))),
        anomaly=np.full(n, 0.5),
        anomaly_floor=1.0,
        seconds=float(n),
        target_per_day=1.0,
        start_anomaly=start,
        start_ends=ends,
    )


def test_the_calibrated_start_edge_is_the_margin_past_its_highest_above_the_steady_one() -> None:
    edge = _compute(np.array([9.0, 4.0, np.nan])).start_anomaly_threshold
    # one boot's highest is one draw: another boot at 1.7 x it is quiet, and the edge is far
    assert edge == pytest.approx(START_MARGIN * 9.0)
    assert START_MARGIN >= 1.7
    near = _compute(np.array([0.6, 0.9])).start_anomaly_threshold  # under the steady edge 1
    assert near == pytest.approx(START_MARGIN * 0.9)  # another boot may still cross it
    assert _compute(np.array([0.3, 0.4])).start_anomaly_threshold is None  # the margin under 1
    assert _compute(np.full(3, np.nan)).start_anomaly_threshold is None
    assert _compute(None).start_anomaly_threshold is None


def test_the_collector_keeps_the_streams_first_windows_by_number() -> None:
    collector = Collector(2)
    n = cal.START_WINDOWS + 5
    ends = np.arange(n, dtype=np.int64)
    scores = np.arange(n, dtype=np.float64)
    collector.add(ends[:4], np.zeros((4, 2)), scores[:4], np.zeros(4, bool), ends[:4])
    collector.add(ends[4:], np.zeros((n - 4, 2)), scores[4:], np.zeros(n - 4, bool), ends[4:])
    held = collector.start_anomaly
    assert held[: cal.START_WINDOWS].tolist() == list(range(cal.START_WINDOWS))
    assert np.isnan(held[cal.START_WINDOWS :]).all()  # no start period given: windows only
    late = Collector(2)  # collecting again mid-stream (a new bundle): no stream start
    late.add(ends[:3], np.zeros((3, 2)), scores[:3], np.zeros(3, bool), ends[:3] + 100)
    assert np.isnan(late.start_anomaly).all()


def test_the_start_period_is_its_first_windows_or_seconds_whichever_last_longer() -> None:
    numbers = np.array([0, 9, 10, 12, 40, stream_start.START_LIMIT])
    second = 1_000_000_000
    elapsed = np.array([0, 1, 2, 9, 11, 3]) * second
    assert stream_start.starting(numbers, elapsed, 10, 0.0).tolist() == [1, 1, 0, 0, 0, 0]
    assert stream_start.starting(numbers, None, 10, 10.0).tolist() == [1, 1, 0, 0, 0, 0]
    # a window past the tenth but in the first 10 s is in; one past START_LIMIT never is
    assert stream_start.starting(numbers, elapsed, 10, 10.0).tolist() == [1, 1, 1, 1, 0, 0]
    slow = np.array([0, 5, 9]), np.array([0, 50, 90]) * second  # 10-s steps: windows hold
    assert stream_start.starting(*slow, 10, 10.0).all()
    # the wall clock stepped back an hour after window 12: past the first 10, none is early
    back = np.array([5, 12, 13, 500]), np.array([5, 12, 13 - 3600, 500 - 3600]) * second
    assert stream_start.starting(*back, 10, 10.0).tolist() == [1, 0, 0, 0]
    collector = Collector(2)
    early = stream_start.starting(numbers, elapsed, 10, 10.0)
    scores = np.arange(len(numbers), dtype=np.float64)
    collector.add(numbers, np.zeros((6, 2)), scores, np.zeros(6, bool), numbers, early)
    assert collector.start_anomaly[[0, 9, 10, 12]].tolist() == [0.0, 1.0, 2.0, 3.0]
    assert np.isnan(collector.start_anomaly[40])
    assert not np.isnan(collector.start_probabilities[[0, 9]]).any()  # the first 10 only
    assert np.isnan(collector.start_probabilities[1:9]).all()


def test_a_calibrations_start_edge_holds_for_its_seconds_too() -> None:
    fusion = Fusion(
        (1,), (0.5, 0.5), 2.0, 2.0, start_threshold=8.0, start_windows=10, start_seconds=10.0
    )
    probabilities = np.tile([0.9, 0.1], (3, 1))
    anomaly = np.full(3, 6.0)
    second = 1_000_000_000
    numbers = np.array([14, 14, 3])
    fused = fusion.fuse(probabilities, anomaly, numbers, np.array([9, 10, 30]) * second)
    assert fused[:, 2].tolist() == [0.0, pytest.approx(0.75), 0.0]  # 9 s in; 10 s; window 3
    alone = fusion.fuse(probabilities, anomaly, numbers)[:, 2]  # no times: the windows alone
    assert alone.tolist() == [pytest.approx(0.75), pytest.approx(0.75), 0.0]


def _boot(far_until: int, every_s: float, steady: float = 0.5) -> tuple[Any, Any]:
    """Start rows of 30 windows ``every_s`` apart, far from benign (9) up to ``far_until``."""
    scores = np.where(np.arange(30) <= far_until, 9.0, steady)
    return scores, (np.arange(30) * every_s * 1e9).astype(np.int64)


def test_the_start_period_lasts_twice_the_calibrations_boot_when_it_outlasts_the_windows() -> None:
    assert _compute(*_boot(9, 0.4)).start_seconds == 0.0  # over within 10 windows
    assert _compute(*_boot(11, 0.4)).start_seconds == pytest.approx(8.8)  # 4.4 s, twice
    assert _compute(*_boot(20, 0.4)).start_seconds == stream_start.START_SECONDS  # 8 s: at most 10
    assert _compute(_boot(20, 0.4)[0]).start_seconds == 0.0  # no times: windows only
    # the edge is the boot's own: a window after the period (30 s on) does not raise it
    late = _boot(11, 1.0)[0]
    late[25] = 50.0
    found = _compute(late, _boot(11, 1.0)[1])
    assert found.start_seconds == stream_start.START_SECONDS
    assert found.start_anomaly_threshold == pytest.approx(START_MARGIN * 9.0)


def test_a_grouped_boot_is_timed_against_the_calibrated_group_edges() -> None:
    n = 2000
    rng = np.random.default_rng(3)
    # raw score, then ratios to the signed edges of two groups: the site's everyday timing
    # group sits near 4 x its signed edge, so the calibration raises that edge
    site = np.column_stack((np.full(n, 0.5), rng.uniform(0.1, 0.5, n), rng.uniform(3, 4, n)))
    boot = np.tile([2.0, 0.2, 3.5], (30, 1))  # past the signed timing edge, not the site's
    boot[:12, 1] = 6.0  # the other group far for 12 windows, 0.3 s apart
    ends = (np.arange(30) * 0.3e9).astype(np.int64)

    def found(start: Any) -> cal.SiteCalibration:
        return cal.compute(
            bundle_id="b",
            labels=("benign",),
            watched=(),
            signed=(0.5,),
            probabilities=np.zeros((n, 1)),
            anomaly=site,
            anomaly_floor=1.0,
            seconds=float(n),
            target_per_day=1.0,
            start_anomaly=start,
            start_ends=ends,
        )

    assert found(boot).start_seconds == pytest.approx(6.6)  # the last far one at 3.3 s
    steady = boot.copy()
    steady[:, 1] = 0.2  # only the timing group moved, within the site's edge: no boot
    assert found(steady).start_seconds == 0.0


def test_the_start_edge_round_trips_and_hostile_values_are_refused() -> None:
    found = _compute(*_boot(11, 0.4))
    data = found.to_dict()
    assert cal.SiteCalibration.from_dict(json.loads(json.dumps(data))) == found
    assert found.start_seconds > 0
    assert _compute(None).start_seconds == 0.0  # no start edge, no start period
    older = {k: v for k, v in data.items() if not k.startswith("start_")}
    assert cal.SiteCalibration.from_dict(older).start_anomaly_threshold is None
    assert cal.SiteCalibration.from_dict(older).start_seconds == 0.0  # windows only, as made
    for bad in (-1.0, stream_start.START_SECONDS + 1, "10", True, math.nan):
        with pytest.raises(cal.CalibrationError, match="start_seconds"):
            cal.SiteCalibration.from_dict({**data, "start_seconds": bad})
    for bad in (-1.0, 0.0, "9", True, float("inf")):
        with pytest.raises(cal.CalibrationError, match="start_anomaly_threshold"):
            cal.SiteCalibration.from_dict({**data, "start_anomaly_threshold": bad})
    with pytest.raises(cal.CalibrationError, match="start_anomaly_threshold"):
        cal.SiteCalibration.from_dict({**data, "anomaly_threshold": None})


def _site(
    path: Path,
    burst_at: float | None = None,
    *,
    seconds: int = 300,
    boot_packets: int = 240,
    boot_rate: float = 80.0,
) -> Path:
    """Five calm packets a second for ``seconds``, the first seconds a boot burst of
    ``boot_packets`` at ``boot_rate`` a second from 16 devices (by default 3 s at 80 a second);
    ``burst_at``: the same burst again later in the stream."""
    frames = []
    calm = ethernet(ipv4("192.168.1.10", "192.168.1.1", 17, udp(40000, 1883, b"x" * 20)))
    for second in range(seconds):
        frames += [(T0 + second + k * 0.2, calm) for k in range(5)]
    for start in (0.0, burst_at) if burst_at is not None else (0.0,):
        for i in range(boot_packets):
            device = f"192.168.1.{20 + i % 16}"
            hello = ethernet(ipv4(device, "192.168.1.1", 17, udp(40001, 1883, b"hello")))
            frames.append((T0 + start + 0.001 + i / boot_rate, hello))
    frames.sort(key=lambda f: f[0])
    path.write_bytes(pcap_bytes(frames))
    return path


def test_a_calibrated_site_boots_quietly_and_a_later_burst_still_alarms(
    kit: FloodKit, pairs: PairKit, tmp_path: Path
) -> None:
    bundle = load_bundle(pairs.paired, [load_public_key(kit.public_key)])

    def unknowns(capture: Path, calibration: Any = None) -> list[float]:
        events = replay_capture(bundle, capture, calibration=calibration).events
        return [e.time_ns / 1e9 - T0 for e in events if e.kind == "new" and e.label == "unknown"]

    boot = _site(tmp_path / "boot.pcap")
    assert len(unknowns(boot)) == 1  # the boot crosses the signed edge
    found = calibrate_bundle(bundle, str(boot), 1.0)
    assert found.start_anomaly_threshold is not None
    assert found.start_anomaly_threshold > (found.anomaly_threshold or 0.0)
    assert unknowns(boot, found) == []
    later = unknowns(_site(tmp_path / "later.pcap", burst_at=150.0), found)
    assert len(later) == 1
    assert 150 < later[0] <= 155  # the same burst mid-stream: the steady edge


def _fast_boot(path: Path, burst_at: float | None = None) -> Path:
    """2,500 s, the first 5 s a boot of 300 packets a second: 15 steps of 100 packets, more than
    START_WINDOWS windows and fewer than 1 % of them all."""
    return _site(path, burst_at, seconds=2500, boot_packets=1500, boot_rate=300.0)


@pytest.fixture(scope="module")
def packet_pair(kit: FloodKit, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A classifier never confident (only unknown can raise) at 100-packet / 1-s steps, paired
    with the zero benign model."""
    folder = tmp_path_factory.mktemp("packet-pair")
    step = StepSpec.parse("100p/1s")
    manifest = manifest_for(
        kit.model, TRAFFIC_V1, step=step, signer=kit.signer, thresholds={"flood": 1.5}
    )
    classifier = folder / "unsure.bundle"
    classifier.write_bytes(bundle_bytes(manifest, kit.model, kit.signer))  # type: ignore[arg-type]
    model = zero_benign_model(kit.folder)
    paired = folder / "paired.bundle"
    pair(classifier, model, benign_spec(model), kit.signer, paired)  # type: ignore[arg-type]
    return paired


def test_at_packet_count_steps_a_calibrated_boot_is_quiet_for_its_seconds(
    kit: FloodKit, packet_pair: Path, tmp_path: Path
) -> None:
    bundle = load_bundle(packet_pair, [load_public_key(kit.public_key)])
    boot = _fast_boot(tmp_path / "boot.pcap")
    signed = _unknowns(bundle, boot)
    assert len(signed) == 1
    assert signed[0] < 2  # the boot crosses the signed edge in its first windows
    found = calibrate_bundle(bundle, str(boot), 1.0)
    assert found.start_seconds == stream_start.START_SECONDS
    assert _unknowns(bundle, boot, found) == []
    # the same edge over the first START_WINDOWS windows only (as older calibrations): the
    # boot's last windows come within its 5 s and alarm
    windows_only = _unknowns(bundle, boot, dataclasses.replace(found, start_seconds=0.0))
    assert len(windows_only) == 1
    assert 3 < windows_only[0] < 5
    later = _unknowns(bundle, _fast_boot(tmp_path / "later.pcap", burst_at=1500.0), found)
    assert len(later) == 1
    assert 1500 < later[0] <= 1502  # mid-stream: the steady edge


def test_the_agent_times_its_own_boot_while_it_calibrates(
    kit: FloodKit, packet_pair: Path, tmp_path: Path
) -> None:
    config = {
        "agent": {
            "device_id": "gw-test",
            "state_dir": str(tmp_path / "state"),
            "trusted_keys": [str(kit.public_key)],
        },
        "mqtt": {"enabled": False},
        "sources": [{"name": "lan", "kind": "pcap", "path": str(_fast_boot(tmp_path / "b.pcap"))}],
        "models": [{"name": "pair", "bundle": str(packet_pair), "source": "lan"}],
        "calibration": {"duration": "30m", "target_false_alarms_per_day": 1},
    }
    sink = run_to_end(config, timeout=120)
    saved = cal.load(tmp_path / "state" / "calibration-pair.json")
    offline = calibrate_bundle(
        load_bundle(packet_pair, [load_public_key(kit.public_key)]), config["sources"][0]["path"], 1
    )
    assert saved.start_seconds == offline.start_seconds == stream_start.START_SECONDS
    assert saved.start_anomaly_threshold == offline.start_anomaly_threshold
    published = sink.models[-1]["calibration"]
    assert published["state"] == "calibrated"
    assert published["start_seconds"] == stream_start.START_SECONDS


# --- the bundle's signed stream-start edge (no calibration yet) ---------------------------------

START = 4 * THRESHOLD  # above any score the zero model gives (a saturated summary: ~0.019)


def _start_pair(
    kit: FloodKit, folder: Path, start: float | None = START, span: int | None = None
) -> Path:
    """The flood classifier paired with the zero benign model, signed with a start edge."""
    model = zero_benign_model(kit.folder)
    out = folder / f"start-{start}-{span}.bundle"
    pair(
        kit.bundle,
        model,
        dataclasses.replace(benign_spec(model), start_threshold=start, start_windows=span),
        kit.signer,
        out,
    )  # type: ignore[arg-type]
    return out


def _unknowns(bundle: Any, capture: Path, calibration: Any = None) -> list[float]:
    events = replay_capture(bundle, capture, calibration=calibration).events
    return [e.time_ns / 1e9 - T0 for e in events if e.kind == "new" and e.label == "unknown"]


def test_the_start_edge_is_signed_in_the_section_and_older_bundles_have_none(
    kit: FloodKit, tmp_path: Path
) -> None:
    key = [load_public_key(kit.public_key)]
    bundle = load_bundle(_start_pair(kit, tmp_path), key)
    spec = OpenSetSpec.from_manifest(bundle.manifest)
    assert spec is not None
    assert spec.start_threshold == START
    assert describe(bundle.manifest) == {
        "benign_model": spec.model_sha256[:12],
        "threshold": THRESHOLD,
        "start_threshold": START,
        "start_windows": cal.START_WINDOWS,  # none signed: a calibration's span
    }
    older = OpenSetSpec.from_manifest(load_bundle(_start_pair(kit, tmp_path, None), key).manifest)
    assert older is not None
    assert older.start_threshold is None
    assert "start_threshold" not in older.to_dict()  # an old bundle's section, byte for byte


@pytest.mark.parametrize(
    "bad", [math.nan, math.inf, -1.0, 0.0, THRESHOLD / 2, 101 * THRESHOLD, True, "0.02"]
)
def test_a_hostile_start_edge_is_refused_in_one_line(kit: FloodKit, bad: Any) -> None:
    _refused(kit, {"start_threshold": bad}, "start_threshold: expected")


@pytest.mark.parametrize("bad", [0, -1, cal.START_WINDOWS + 1, 2.0, True, "3", None])
def test_a_hostile_start_span_is_refused_in_one_line(kit: FloodKit, bad: Any) -> None:
    words = "start_windows: given without" if bad is None else "start_windows: expected"
    change = {"start_windows": 3 if bad is None else bad}
    _refused(kit, change if bad is None else {**change, "start_threshold": START}, words)


def _refused(kit: FloodKit, change: dict[str, Any], words: str) -> None:
    manifest = load_bundle(kit.bundle, [load_public_key(kit.public_key)]).manifest
    section = benign_spec(zero_benign_model(kit.folder)).to_dict()
    hostile = dataclasses.replace(manifest, extra={"openset": {**section, **change}})
    with pytest.raises(BundleError, match=rf"extra\.openset\.{words}") as info:
        OpenSetSpec.from_manifest(Manifest.from_json(hostile.to_json()))
    assert "\n" not in str(info.value)


def test_an_uncalibrated_pair_boots_quietly_on_its_signed_start_edge(
    kit: FloodKit, tmp_path: Path
) -> None:
    key = [load_public_key(kit.public_key)]
    boot = _site(tmp_path / "boot.pcap", burst_at=150.0)
    assert len(_unknowns(load_bundle(_start_pair(kit, tmp_path, None), key), boot)) == 2
    later = _unknowns(load_bundle(_start_pair(kit, tmp_path), key), boot)
    assert len(later) == 1
    assert 150 < later[0] <= 155  # the same burst mid-stream: the steady edge


def test_the_start_edge_covers_only_its_signed_span(kit: FloodKit, tmp_path: Path) -> None:
    key = [load_public_key(kit.public_key)]
    boot = _site(tmp_path / "boot.pcap")  # the boot lasts 3 s: in the first ~6 windows
    assert _unknowns(load_bundle(_start_pair(kit, tmp_path, START, 6 + 3), key), boot) == []
    short = _unknowns(load_bundle(_start_pair(kit, tmp_path, START, 1), key), boot)
    assert len(short) == 1  # windows 1 on: the steady edge
    assert short[0] < 8


def test_a_calibration_without_a_boot_keeps_the_bundles_start_edge(
    kit: FloodKit, tmp_path: Path
) -> None:
    bundle = load_bundle(_start_pair(kit, tmp_path), [load_public_key(kit.public_key)])
    calm = tmp_path / "calm.pcap"
    frames, _ = flood_frames(calm_s=300, flood_s=0, calm_after_s=0)
    calm.write_bytes(pcap_bytes(frames))
    found = calibrate_bundle(bundle, str(calm), 1.0)
    assert found.start_anomaly_threshold is None  # this site's start was quiet
    assert _unknowns(bundle, _site(tmp_path / "boot.pcap"), found) == []


def test_a_flood_from_the_first_packet_is_still_raised_at_once(
    kit: FloodKit, tmp_path: Path
) -> None:
    key = [load_public_key(kit.public_key)]
    frames, _ = flood_frames(t0=T0, calm_s=0, flood_s=8, calm_after_s=20)
    capture = tmp_path / "flood-first.pcap"
    capture.write_bytes(pcap_bytes(frames))
    first = {}
    for start in (None, 100 * THRESHOLD):  # no start edge, and the highest one allowed
        events = replay_capture(load_bundle(_start_pair(kit, tmp_path, start), key), capture).events
        news = [e for e in events if e.kind == "new"]
        assert [e.label for e in news] == ["flood"]  # the classifier stays armed
        first[start] = news[0].time_ns
    assert first[None] == first[100 * THRESHOLD]
