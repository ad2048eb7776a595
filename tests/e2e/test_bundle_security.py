"""No downgrade and no memory bomb, proven on the agent process through a real Mosquitto.

Bundles carry a signed, monotonic ``version``; the agent refuses an older one pushed on
``model/set`` (``downgrade``) unless ``agent.allow_downgrade`` says otherwise, and at start the
higher version of the saved and the configured bundle wins. Zip bombs and malformed archives
are refused by reason while the agent's peak RSS (VmHWM) stays far below a board's MemoryMax.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

from agent.features.traffic import TRAFFIC_V1
from tests.agent.bundles import bundle_bytes, manifest_for
from tests.agent.flood_bundle import FloodKit
from tests.broker import Broker, Probe, Received
from tests.e2e.agent_process import AgentProcess
from tests.e2e.conftest import AgentFactory
from tests.e2e.hostile_pushes import hostile_payloads, push_all

pytestmark = [pytest.mark.broker, pytest.mark.tf]

DEVICE = "gw-e2e"
MODEL, MODEL_SET = (f"iotids/{DEVICE}/{leaf}" for leaf in ("model", "model/set"))
PEAK_RSS_MB = 200  # the smallest board profile (Pi Zero 2 W) gives the agent 256 MB


def _bundle(kit: FloodKit, folder: Path, bundle_id: str, version: int) -> Path:
    signer: Any = kit.signer
    manifest = manifest_for(
        kit.model, TRAFFIC_V1, bundle_id=bundle_id, signer=signer, version=version
    )
    path = folder / f"{bundle_id}.bundle"
    path.write_bytes(bundle_bytes(manifest, kit.model, signer))
    return path


def _models(messages: Iterable[Received]) -> list[dict[str, Any]]:
    return [json.loads(m.payload) for m in list(messages) if m.topic == MODEL and not m.retain]


def _next_model(probe: Probe, agent: AgentProcess, pred: Callable[[dict[str, Any]], bool]) -> Any:
    """The next fresh (not retained) model message matching ``pred``."""
    found = probe.wait_for(
        lambda m: m.topic == MODEL and not m.retain and pred(json.loads(m.payload)), 40
    )
    assert found is not None, agent.log()
    return json.loads(found.payload)


def _result(probe: Probe, agent: AgentProcess) -> Any:
    return _next_model(probe, agent, lambda m: "last_update" in m)


@pytest.mark.slow
def test_an_older_bundle_pushed_after_a_newer_one_is_refused_and_restart_keeps_the_newer(
    mosquitto: Broker, agents: AgentFactory, kit: FloodKit, tmp_path: Path
) -> None:
    v1 = _bundle(kit, tmp_path, "flood-v1", 1)
    v2 = _bundle(kit, tmp_path, "flood-v2", 2)
    v2_other = _bundle(kit, tmp_path, "flood-v2-other", 2)
    agent = agents(mosquitto, bundle=v1)
    with Probe(mosquitto, [MODEL]) as probe:
        agent.start()
        start = _next_model(probe, agent, lambda m: "last_update" not in m)
        assert (start["bundle_id"], start["version"]) == ("flood-v1", 1)
        probe.publish(MODEL_SET, v2.read_bytes())
        activated = _result(probe, agent)
        probe.publish(MODEL_SET, v1.read_bytes())  # the downgrade
        downgrade = _result(probe, agent)
        probe.publish(MODEL_SET, v2_other.read_bytes())
        same = _result(probe, agent)
    assert agent.terminate() == 0
    assert activated["last_update"]["result"] == "activated"
    assert (activated["bundle_id"], activated["version"]) == ("flood-v2", 2)
    assert downgrade["last_update"]["result"] == "refused"
    assert downgrade["last_update"]["reason"].startswith("downgrade: flood-v1 is version 1")
    assert (downgrade["bundle_id"], downgrade["version"]) == ("flood-v2", 2)  # v2 stays
    assert same["last_update"]["result"] == "refused"
    assert same["last_update"]["reason"].startswith("same-version: flood-v2-other")
    # restart: the saved v2 against the config's v1 -> v2
    with Probe(mosquitto, [MODEL]) as probe:
        agent.start()
        restarted = _next_model(probe, agent, lambda m: "last_update" not in m)
    assert agent.terminate() == 0
    assert (restarted["bundle_id"], restarted["version"]) == ("flood-v2", 2)
    assert "resuming with bundle flood-v2 (version 2)" in agent.log()
    assert "not older than the config's flood-v1 (version 1)" in agent.log()


@pytest.mark.slow
def test_at_start_a_newer_configured_bundle_wins_over_an_older_saved_one(
    mosquitto: Broker, agents: AgentFactory, kit: FloodKit, tmp_path: Path
) -> None:
    v1 = _bundle(kit, tmp_path, "flood-v1", 1)
    v2 = _bundle(kit, tmp_path, "flood-v2", 2)
    agent = agents(mosquitto, bundle=v2)
    saved = agent.state_dir / "models" / "cnn.bundle"  # what a push of v1 would have left
    saved.parent.mkdir(parents=True)
    saved.write_bytes(v1.read_bytes())
    with Probe(mosquitto, [MODEL]) as probe:
        agent.start()
        started = _next_model(probe, agent, lambda m: "last_update" not in m)
    assert agent.terminate() == 0
    assert (started["bundle_id"], started["version"]) == ("flood-v2", 2)
    assert "the config's bundle flood-v2 (version 2): newer than the saved flood-v1" in agent.log()


@pytest.mark.slow
def test_allow_downgrade_lets_the_operator_roll_back(
    mosquitto: Broker, agents: AgentFactory, kit: FloodKit, tmp_path: Path
) -> None:
    v1 = _bundle(kit, tmp_path, "flood-v1", 1)
    v2 = _bundle(kit, tmp_path, "flood-v2", 2)
    agent = agents(mosquitto, bundle=v2, agent_extra=("allow_downgrade = true",))
    with Probe(mosquitto, [MODEL]) as probe:
        agent.start()
        _next_model(probe, agent, lambda m: "last_update" not in m)
        probe.publish(MODEL_SET, v1.read_bytes())
        rolled_back = _result(probe, agent)
    assert agent.terminate() == 0
    assert rolled_back["last_update"]["result"] == "activated"
    assert (rolled_back["bundle_id"], rolled_back["version"]) == ("flood-v1", 1)


@pytest.mark.slow
def test_zip_bombs_and_hostile_archives_are_refused_and_peak_rss_stays_low(
    mosquitto: Broker, agents: AgentFactory, kit: FloodKit
) -> None:
    payloads = hostile_payloads(kit)
    agent = agents(mosquitto)
    result = push_all(agent, mosquitto, payloads, DEVICE)
    assert agent.running, agent.log()
    assert agent.terminate() == 0
    assert len(result.refusals) == len(payloads), agent.log()
    for (case, _, words), refusal in zip(payloads, result.refusals, strict=True):
        assert refusal["result"] == "refused", case
        assert words in refusal["reason"], (case, refusal["reason"])
    assert sum(result.stats["model_updates"].values()) == len(payloads)
    assert "activated" not in result.stats["model_updates"]
    assert result.stats["active_model"] == {"cnn": "flood-int8-test"}  # it kept its model
    assert result.peak_kb < PEAK_RSS_MB * 1024, f"peak RSS {result.peak_kb / 1024:.0f} MB"
    assert result.peak_kb - result.baseline_kb < 64 * 1024  # nine hostile pushes cost < 64 MB
    assert "Traceback" not in agent.log()
