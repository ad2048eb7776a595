"""Fixtures for the whole-agent tests: a signed int8 flood bundle, attack captures, agent processes.

The bundle comes from tests/agent/flood_bundle.py (its int8 model is converted once per session
by a TensorFlow child process; this process never imports TensorFlow). Captures are generated
here: calm UDP telemetry with TCP SYN floods at known times, replayed by the agent in real time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from tests.agent.bundles import flood_frames, pcap_bytes
from tests.agent.flood_bundle import FloodKit, flood_kit
from tests.broker import Broker
from tests.e2e.agent_process import AgentProcess, AgentSetup

AgentFactory = Callable[..., AgentProcess]


@pytest.fixture(scope="session")
def kit(tmp_path_factory: pytest.TempPathFactory) -> FloodKit:
    """The int8 flood model, its signed bundle and the trusted public key."""
    return flood_kit(tmp_path_factory.mktemp("e2e-kit"))


@pytest.fixture(scope="session")
def attack_loop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 9 s capture (1 s calm, 3 s SYN flood, 5 s calm): looped, a detection every pass."""
    frames, _ = flood_frames(calm_s=1, flood_s=3, calm_after_s=5, flood_rate=1000)
    path = tmp_path_factory.mktemp("captures") / "attack-loop.pcap"
    path.write_bytes(pcap_bytes(frames))
    return path


@pytest.fixture
def agents(tmp_path: Path, kit: FloodKit, attack_loop: Path) -> Iterator[AgentFactory]:
    """Make agent processes (``agents(broker, device=..., credentials=..., ...)``), not started.

    Keyword arguments other than ``credentials`` override :class:`AgentSetup` fields; by default
    the agent replays ``attack_loop`` in real time, forever. All are killed at teardown.
    """
    made: list[AgentProcess] = []

    def make(
        broker: Broker,
        *,
        device: str = "gw-e2e",
        credentials: tuple[str, str] | None = None,
        **overrides: object,
    ) -> AgentProcess:
        setup = AgentSetup(
            device=device,
            capture=attack_loop,
            bundle=kit.bundle,
            trusted_key=kit.public_key,
        )
        setup = replace(setup, **overrides)  # type: ignore[arg-type]
        process = AgentProcess(setup, broker, tmp_path / f"agent{len(made)}-{device}", credentials)
        made.append(process)
        return process

    yield make
    for process in made:
        process.close()
