"""``iotids convert --version``: the bundle's signed version, and its default (no TF needed)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from agent.bundle import load_bundle
from agent.cli import main
from converters.bundle import default_version, wrap_tflite
from converters.signing import generate_keypair
from tests.agent.model_fixture import tiny_models
from tests.converters.training_folder import preprocess


@pytest.fixture(scope="module")
def wrap(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path, Path]:
    """A third-party .tflite, its manifest, a private and a public key."""
    folder = tmp_path_factory.mktemp("version")
    models = tiny_models(tmp_path_factory.getbasetemp())
    manifest = folder / "m.json"
    manifest.write_text(json.dumps(preprocess("cnn", (16, 8, 1))))
    private, public, _ = generate_keypair(folder / "k")
    return models / "cnn_int8.tflite", manifest, private, public


def test_default_version_is_the_utc_time_as_digits() -> None:
    when = dt.datetime(2026, 12, 4, 16, 3, 1, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    assert default_version(when) == 20261204150301


def test_the_version_given_is_signed_into_the_manifest(
    wrap: tuple[Path, Path, Path, Path], tmp_path: Path
) -> None:
    tflite, manifest, private, public = wrap
    out = tmp_path / "v7.bundle"
    argv = ["convert", "--tflite", str(tflite), "--manifest", str(manifest), "--out", str(out)]
    assert main([*argv, "--sign-key", str(private), "--version", "7"]) == 0
    assert load_bundle(out, [public.read_bytes()]).manifest.version == 7


def test_without_version_the_conversion_time_is_used(
    wrap: tuple[Path, Path, Path, Path], tmp_path: Path
) -> None:
    tflite, manifest, private, public = wrap
    before = default_version(dt.datetime.now(dt.UTC))
    result = wrap_tflite(tflite, manifest, tmp_path / "b.bundle", sign_key=private)
    after = default_version(dt.datetime.now(dt.UTC))
    assert before <= result.manifest.version <= after
    assert (
        load_bundle(result.path, [public.read_bytes()]).manifest.version == result.manifest.version
    )


@pytest.mark.parametrize("value", ["-1", "x", str(2**63)])
def test_a_bad_version_is_one_line_and_exit_2(
    value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["convert", "--tflite", "t", "--manifest", "m", "--out", str(tmp_path / "o")]
    with pytest.raises(SystemExit) as info:
        main([*argv, "--version", value])
    assert info.value.code == 2
    assert "--version" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
