"""The offline wheelhouse resolves every agent dependency for Raspberry Pi OS Bookworm 64-bit."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from agent.cli import main
from firmware_configs.wheelhouse import PLATFORMS, REPO, base_requirements, download_command


def _project(requirement: str) -> str:
    """PEP 503 normalised project name of a requirement or a wheel file name."""
    name = re.match(r"[A-Za-z0-9._-]+", requirement)
    assert name is not None
    return re.sub(r"[-_.]+", "-", name.group(0)).lower()


def _fits_cp311(python: str, abi: str) -> bool:
    """Whether a wheel's python/abi tags install on CPython 3.11."""
    for tag in python.split("."):
        if tag in ("py3", "cp311"):
            return True
        if abi == "abi3" and tag.startswith("cp3") and int(tag[3:]) <= 11:
            return True
    return False


def test_requirements_are_the_pyproject_base_set() -> None:
    with (REPO / "pyproject.toml").open("rb") as fh:
        expected = tuple(tomllib.load(fh)["project"]["dependencies"])
    assert base_requirements() == expected
    assert {_project(r) for r in expected} >= {"numpy", "paho-mqtt", "psutil", "cryptography"}


def test_command_targets_the_gateway_not_this_machine(tmp_path: Path) -> None:
    command = download_command(("numpy",), tmp_path)
    platforms = {command[i + 1] for i, arg in enumerate(command) if arg == "--platform"}
    assert platforms == set(PLATFORMS)
    # ai-edge-litert 2.x publishes manylinux_2_27 only; Bookworm's glibc 2.36 is the ceiling.
    assert {
        "manylinux2014_aarch64",
        "manylinux_2_27_aarch64",
        "manylinux_2_36_aarch64",
    } <= platforms
    assert "manylinux_2_37_aarch64" not in platforms
    joined = " ".join(command)
    assert "--only-binary=:all:" in command
    assert "--python-version 3.11 --implementation cp" in joined
    assert command[-1] == "numpy"


@pytest.mark.slow
def test_every_agent_dependency_resolves_for_bookworm_aarch64(tmp_path: Path) -> None:
    out = tmp_path / "wheelhouse"
    assert main(["provision", "wheelhouse", "--no-self", "--out", str(out)]) == 0
    wheels = sorted(out.glob("*.whl"))
    have = {_project(w.name.split("-")[0]) for w in wheels}
    assert {_project(r) for r in base_requirements()} <= have
    for wheel in wheels:
        python, abi, platform = wheel.stem.split("-")[-3:]
        assert _fits_cp311(python, abi), wheel.name
        assert platform == "any" or platform.endswith("aarch64"), wheel.name


def test_an_unreachable_index_is_said_not_a_missing_distribution(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import os

    for name in [n for n in os.environ if n.startswith("PIP_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)  # no site mirrors: only the index below
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")  # discard port: refused
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "2")
    out = tmp_path / "wheels"
    assert main(["provision", "wheelhouse", "--no-self", "--out", str(out)]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("iotids provision: the package index could not be reached")
    assert "http://127.0.0.1:9/simple" in lines[0]
    assert "PIP_INDEX_URL" in lines[0]
