"""Provisioning fixtures: the operator's inputs, made fresh for each test."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.firmware.fixtures import Inputs, make_inputs


@pytest.fixture
def inputs(tmp_path: Path) -> Inputs:
    """A bundle, a trusted key and a password file under tmp_path/src."""
    return make_inputs(tmp_path / "src")


@pytest.fixture(autouse=True)
def no_credentials_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests choose their own credentials; the developer's environment must not leak in."""
    monkeypatch.delenv("IOTIDS_MQTT_USERNAME", raising=False)
    monkeypatch.delenv("IOTIDS_MQTT_PASSWORD", raising=False)
