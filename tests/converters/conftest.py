"""Session-wide tiny training folders and a signing key for the converter tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from converters.signing import generate_keypair
from tests.converters.training_folder import build


@pytest.fixture(scope="session")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """cnn, gru, gru-anomaly (no export.keras: the converter rebuilds it) and dnn folders."""
    root = tmp_path_factory.mktemp("training")
    return {kind: build(root, kind) for kind in ("cnn", "gru", "gru-anomaly", "dnn")}


@pytest.fixture(scope="session")
def signer(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """A key pair: private path, public path, key id."""
    return generate_keypair(tmp_path_factory.mktemp("keys") / "signer")
