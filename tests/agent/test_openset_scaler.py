"""The benign model's log1p scaler: fit by training, carried in the signed section, applied by
the agent; a hostile section is refused in one line."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agent.bundle import BundleError, Manifest, load_bundle, load_public_key
from agent.cli import main as iotids
from agent.features.traffic import TRAFFIC_V1
from agent.openset import LOG_MINMAX, LogScaler, OpenSetSpec, load_benign_model, summarize
from converters.openset import pair
from tests.agent.flood_bundle import FloodKit, flood_kit
from tests.agent.openset_kit import benign_spec, zero_benign_model
from training.openset import fit_scaler

WIDTH = TRAFFIC_V1.width


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> FloodKit:
    return flood_kit(tmp_path_factory.mktemp("flood"))


def _raw_windows(seed: int, n: int = 64) -> np.ndarray:
    """Counts spanning orders of magnitude, like packets and bytes per step."""
    rng = np.random.default_rng(seed)
    return rng.lognormal(3.0, 2.0, (n, 4, WIDTH)).astype(np.float32)


def _log_pair(kit: FloodKit, folder: Path) -> Path:
    """The flood classifier paired with the zero benign model under a fitted log1p scaler."""
    model = zero_benign_model(kit.folder)
    spec = dataclasses.replace(benign_spec(model), scaler=fit_scaler(_raw_windows(0), LOG_MINMAX))
    out = folder / "log.bundle"
    pair(kit.bundle, model, spec, kit.signer, out)  # type: ignore[arg-type]
    return out


def test_the_scaler_training_fits_is_the_one_the_agent_applies(
    kit: FloodKit, tmp_path: Path
) -> None:
    fitted = fit_scaler(_raw_windows(0), LOG_MINMAX)
    assert isinstance(fitted, LogScaler)
    assert fitted.kind == LOG_MINMAX
    bundle = load_bundle(_log_pair(kit, tmp_path), [load_public_key(kit.public_key)])
    benign = load_benign_model(bundle)
    assert benign is not None
    assert benign.spec.scaler == fitted  # through JSON, signature and the agent's parser
    fresh = _raw_windows(1)
    np.testing.assert_array_equal(benign.spec.scaler.transform(fresh), fitted.transform(fresh))
    # the zero model's score is the energy of the summary: the agent scores what training scaled
    summary = summarize(fitted.transform(fresh)).astype(np.float64)
    np.testing.assert_allclose(benign.scores(fresh), np.mean(summary**2, axis=1), rtol=1e-5)


def test_log_scaling_measures_ratios_not_differences() -> None:
    low = (0.0,) * WIDTH
    scaler = LogScaler(low, (math.log1p(1e6),) * WIDTH)  # benign up to a 1 MB download
    steps = np.array([[[1e3] * WIDTH, [1e4] * WIDTH, [2e6] * WIDTH, [-5.0] * WIDTH]], np.float32)
    scaled = scaler.transform(steps)[0, :, 0]
    # 1 kB sits half-way, 10 kB two-thirds up; twice the largest download clips to the edge and
    # a negative count (never made by traffic-v1) reads as zero
    np.testing.assert_allclose(scaled, [0.5, 0.667, 1.0, 0.0], atol=1e-3)


def _section(kit: FloodKit, **scaler: Any) -> dict[str, Any]:
    spec = benign_spec(zero_benign_model(kit.folder))
    good = LogScaler((0.0,) * WIDTH, (10.0,) * WIDTH)
    spec = dataclasses.replace(spec, scaler=good)
    section = spec.to_dict()
    section["scaler"].update(scaler)
    return section


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"min": [math.nan] * WIDTH}, "openset.min: values must be finite"),
        ({"max": [math.inf] * WIDTH}, "openset.max: values must be finite"),
        ({"max": [-1.0] * WIDTH}, "scaler.max: values must be >= min"),
        ({"max": [10.0] * (WIDTH - 1)}, f"openset.max: expected a list of {WIDTH} numbers"),
        ({"max": [True] * WIDTH}, "openset.max: expected numbers"),
        ({"kind": "zscore"}, "openset.scaler: expected a scaler object of kind"),
    ],
)
def test_a_hostile_scaler_is_refused_naming_the_key(
    kit: FloodKit, change: dict[str, Any], words: str
) -> None:
    manifest = Manifest.from_json(
        load_bundle(kit.bundle, [load_public_key(kit.public_key)]).manifest.to_json()
    )
    hostile = dataclasses.replace(manifest, extra={"openset": _section(kit, **change)})
    with pytest.raises(BundleError, match=words):
        OpenSetSpec.from_manifest(hostile)


def test_a_signed_bundle_with_a_backwards_scaler_is_one_line_exit_2(
    kit: FloodKit, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from agent.bundle import read_bundle
    from converters.openset import write_pair
    from converters.signing import sign

    good = _log_pair(kit, tmp_path)
    raw = read_bundle(good)
    manifest = Manifest.from_json(raw.manifest_bytes)
    section = dict(manifest.extra["openset"])
    section["scaler"] = {**section["scaler"], "max": [-1.0] * WIDTH}  # a negative scale
    data = dataclasses.replace(manifest, extra={"openset": section}).to_json()
    hostile = tmp_path / "hostile.bundle"
    write_pair(hostile, data, raw.model_content, raw.companion or b"", sign(data, kit.signer))  # type: ignore[arg-type]
    code = iotids(
        [
            *("agent", "replay", "--bundle", str(hostile), "--capture", str(kit.capture)),
            *("--trust-key", str(kit.public_key)),
        ]
    )
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "scaler.max: values must be >= min" in err[-1]
    assert "Traceback" not in "\n".join(err)
