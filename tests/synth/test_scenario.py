"""Scenario loading: every bad field is named, presets are valid and cover what they promise."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from training.synth.scenario import (
    ATTACK_KINDS,
    PRESETS,
    ScenarioError,
    TrafficScenario,
    load_scenario,
    preset,
    scenario_from_dict,
)

GOOD_ATTACK = {"kind": "syn_flood", "start": 1, "stop": 5, "intensity": 100}


def _with_attacks(*attacks: dict[str, Any]) -> dict[str, Any]:
    return {"seed": 1, "duration": 30, "attacks": [GOOD_ATTACK, GOOD_ATTACK, *attacks]}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            _with_attacks({**GOOD_ATTACK, "intensity": -5}),
            "attacks[2].intensity: must be > 0, got -5",
        ),
        (_with_attacks({**GOOD_ATTACK, "kind": "teardrop"}), "attacks[2].kind: must be one of"),
        (_with_attacks({**GOOD_ATTACK, "stop": 0.5}), "attacks[2].stop: must be > start"),
        (
            _with_attacks({**GOOD_ATTACK, "start": 40, "stop": 50}),
            "attacks[2].start: must be < duration",
        ),
        (_with_attacks({**GOOD_ATTACK, "port": 70000}), "attacks[2].port: must be <= 65535"),
        (
            _with_attacks({**GOOD_ATTACK, "target": "10.0.0.300"}),
            "attacks[2].target: must be an IPv4",
        ),
        (_with_attacks({**GOOD_ATTACK, "label": "benign"}), "attacks[2].label"),
        (_with_attacks({**GOOD_ATTACK, "colour": "red"}), "attacks[2].colour: unknown key"),
        (
            _with_attacks({"kind": "udp_flood", "start": 1, "stop": 2}),
            "attacks[2].intensity: missing",
        ),
        (
            _with_attacks({**GOOD_ATTACK, "intensity": "fast"}),
            "attacks[2].intensity: must be a number",
        ),
        ({"seed": 1.5}, "seed: must be an integer, got 1.5"),
        ({"duration": 0}, "duration: must be > 0, got 0"),
        ({"network": "192.168.50.0/28"}, "network: must hold at least 254 hosts"),
        ({"benign": {"cameras": -1}}, "benign.cameras: must be >= 0, got -1"),
        ({"benign": {"ssh_admin": "yes"}}, "benign.ssh_admin: must be true or false"),
        ({"benign": {"fridges": 2}}, "benign.fridges: unknown key"),
        ({"attacks": {"kind": "syn_flood"}}, "attacks: must be a list"),
        ([], "scenario: must be a JSON object"),
    ],
)
def test_bad_scenario_names_the_field(data: Any, message: str) -> None:
    with pytest.raises(ScenarioError) as excinfo:
        scenario_from_dict(data)
    assert str(excinfo.value).startswith(message), str(excinfo.value)


def test_invalid_json_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{"seed": 1,', encoding="utf-8")
    with pytest.raises(ScenarioError, match=r"broken\.json: not valid JSON"):
        load_scenario(path)


def test_scenario_round_trips_through_json(tmp_path: Path) -> None:
    original = preset("mixed")
    path = tmp_path / "scenario.json"
    path.write_text(original.to_json(), encoding="utf-8")
    assert load_scenario(path) == original


def test_unknown_preset_lists_the_valid_ones() -> None:
    with pytest.raises(ScenarioError, match="preset: must be one of default, mixed"):
        preset("nope")


@pytest.mark.parametrize("name", list(PRESETS))
def test_presets_are_valid_scenarios(name: str) -> None:
    scenario = PRESETS[name]
    assert scenario_from_dict(json.loads(scenario.to_json())) == scenario
    for attack in scenario.attacks:
        assert 0 <= attack.start < attack.stop <= scenario.duration


def test_default_attacks_do_not_overlap_and_benign_has_none() -> None:
    windows = sorted((a.start, a.stop) for a in preset("default").attacks)
    assert len(windows) >= 5
    assert all(stop <= nxt for (_, stop), (nxt, _) in itertools.pairwise(windows))
    assert preset("benign").attacks == ()


def test_mixed_preset_overlaps_attacks() -> None:
    windows = sorted((a.start, a.stop) for a in preset("mixed").attacks)
    assert any(stop > nxt for (_, stop), (nxt, _) in itertools.pairwise(windows))


def test_demo_presets_hold_every_attack_in_a_different_order_and_seed() -> None:
    train, test = preset("demo-train"), preset("demo-test")
    assert {a.kind for a in train.attacks} == set(ATTACK_KINDS)
    assert {a.kind for a in test.attacks} == set(ATTACK_KINDS)
    assert train.seed != test.seed
    assert [a.kind for a in train.attacks] != [a.kind for a in test.attacks]
    assert 120 <= train.duration <= 240
    assert 120 <= test.duration <= 240


def test_lowslow_preset_is_slow() -> None:
    assert max(a.intensity for a in preset("lowslow").attacks) <= 2.0


def test_duration_override_scales_attack_windows() -> None:
    base = TrafficScenario(
        duration=100,
        attacks=scenario_from_dict(
            {
                "duration": 100,
                "attacks": [{"kind": "udp_scan", "start": 50, "stop": 80, "intensity": 5}],
            }
        ).attacks,
    )
    short = base.with_overrides(seed=9, duration=10)
    assert short.seed == 9
    assert short.duration == 10
    assert (short.attacks[0].start, short.attacks[0].stop) == (5.0, 8.0)


def test_the_documented_example_is_a_valid_scenario() -> None:
    import training.synth.scenario as module

    doc = module.__doc__ or ""
    example = json.loads(doc[doc.index('{"seed"') :])
    assert scenario_from_dict(example).label_names() == ("benign", "syn_flood", "slow_scan")


def test_repeated_runs_the_attack_sequence_again_then_benign() -> None:
    from training.synth.scenario import ScenarioError, preset

    once = preset("demo-train").with_overrides(duration=240.0)
    thrice = once.repeated(3, benign_tail=100.0)
    assert thrice.duration == pytest.approx(3 * 240.0 + 100.0)
    assert len(thrice.attacks) == 3 * len(once.attacks)
    first, third = once.attacks[0], thrice.attacks[2 * len(once.attacks)]
    assert (third.name, third.start, third.stop) == (
        first.name,
        first.start + 480.0,
        first.stop + 480.0,
    )
    assert max(a.stop for a in thrice.attacks) <= 3 * 240.0  # the tail is benign only
    with pytest.raises(ScenarioError, match="times: must be >= 1"):
        once.repeated(0)
