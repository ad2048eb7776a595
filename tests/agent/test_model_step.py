"""A source without ``step`` takes its model's step; a mismatch names the setting that fixes it.

``validate-config`` and ``run`` agree: a bundle trained on ``20p/1s`` steps runs on a source that
sets no step, and a source that sets another step is one line saying which step to set, in the
config's own words (never a ``StepSpec(...)`` repr), exit 2 from both commands.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.app import App
from agent.cli import main as iotids
from agent.config import load_config
from agent.report.memory import MemorySink
from tests.agent.flood_bundle import FloodKit, flood_kit
from tests.agent.padded import padded_bundle

pytestmark = pytest.mark.tf  # the int8 test model is converted once by TensorFlow


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> FloodKit:
    return flood_kit(tmp_path_factory.mktemp("steps"))


def _config(tmp_path: Path, kit: FloodKit, step_line: str) -> Path:
    bundle, public = padded_bundle(tmp_path, "zeros", kit.model)
    path = tmp_path / "agent.toml"
    path.write_text(
        f'[agent]\ndevice_id = "gw"\nstate_dir = "{tmp_path / "state"}"\n'
        f'trusted_keys = ["{public}"]\n[mqtt]\nenabled = false\n'
        f'[[sources]]\nname = "cap"\nkind = "pcap"\npath = "{kit.capture}"\n{step_line}'
        f'[[models]]\nname = "flood"\nbundle = "{bundle}"\nsource = "cap"\n'
    )
    return path


def test_a_source_without_step_takes_the_bundles_step(
    tmp_path: Path, kit: FloodKit, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _config(tmp_path, kit, "")
    assert iotids(["agent", "validate-config", str(path)]) == 0
    assert ": ok (" in capsys.readouterr().out
    app = App(load_config(path), sinks=[MemorySink()])
    try:
        assert app.sources["cap"].step.text == "20p/1.0s"
        assert app.config.sources[0].step == "20p/1.0s"
    finally:
        for source in app.sources.values():
            source.close()


def test_a_source_with_another_step_is_one_line_naming_the_fix(
    tmp_path: Path, kit: FloodKit, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _config(tmp_path, kit, 'step = "1s"\n')
    for command in (["validate-config", str(path)], ["run", "--config", str(path)]):
        assert iotids(["agent", *command]) == 2, command
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1, lines
        line = lines[0]
        assert line.startswith("iotids agent: models[0].bundle: bundle step:"), line
        assert 'model wants "20p/1.0s", source cap uses "1.0s"' in line
        assert 'set step = "20p/1.0s" on source cap' in line
        assert "StepSpec" not in line
