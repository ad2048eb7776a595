"""Bundle limits in-process: hostile archives are refused by reason with bounded memory, the
signed version is parsed compatibly, and the new ``[agent]`` keys are validated.

The agent-process versions (pushed through a real Mosquitto, peak RSS read from /proc) are in
tests/e2e/test_bundle_security.py.
"""

from __future__ import annotations

import json
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.bundle import (
    DEFAULT_MAX_BUNDLE_BYTES,
    MAX_BUNDLE_BYTES,
    BundleError,
    Manifest,
    load_bundle,
)
from agent.config import ConfigError, parse_config
from agent.features.traffic import TRAFFIC_V1
from tests.agent.bundles import manifest_for, new_key, with_fields
from tests.agent.flood_bundle import FloodKit, flood_kit
from tests.agent.hostile_zips import Member, archive, bomb, deflated, stored

PEAK_BYTES = 16 * 1024 * 1024  # what refusing one ~1 MB hostile payload may cost, at most
GIB = 1 << 30


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> FloodKit:
    return flood_kit(tmp_path_factory.mktemp("limits"))


def _peak(call: Callable[[], object]) -> tuple[int, BaseException | None]:
    """Peak traced Python allocation while ``call`` runs, and what it raised."""
    tracemalloc.start()
    error: BaseException | None = None
    try:
        call()
    except BundleError as exc:
        error = exc
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return peak, error


def _key() -> bytes:
    return Ed25519PrivateKey.generate().public_key().public_bytes_raw()


_SIG = stored("manifest.sig", bytes(64))
_MANIFEST = stored("manifest.json", b"{}")
_MODEL = stored("model.tflite", b"TFL3")
_HOSTILE: dict[str, tuple[Callable[[], bytes], str]] = {
    "many-members": (
        lambda: archive(
            [_MANIFEST, _MODEL, _SIG, stored("anomaly.tflite", b""), stored("extra", b"")]
        ),
        "5 members, a bundle holds at most 4",
    ),
    "count-lies-directory-huge": (
        lambda: archive([stored(f"m{i}", b"") for i in range(2000)], entries=3),
        "central directory of",
    ),
    "duplicate-names": (
        lambda: archive([_MANIFEST, _MANIFEST, _MODEL]),
        "duplicate member 'manifest.json'",
    ),
    "nested-path": (
        lambda: archive([stored("bundle/manifest.json", b"{}"), _MODEL, _SIG]),
        "unexpected member 'bundle/manifest.json'",
    ),
    "parent-path": (
        lambda: archive([_MANIFEST, stored("../model.tflite", b""), _SIG]),
        "unexpected member '../model.tflite'",
    ),
    "huge-archive-comment": (
        lambda: archive([_MANIFEST, _MODEL, _SIG], comment=b"c" * 60_000),
        "archive comment of 60000 bytes",
    ),
    "huge-member-comment": (
        lambda: archive([Member("manifest.json", b"{}", comment=b"c" * 60_000), _MODEL, _SIG]),
        "central directory of",
    ),
    "manifest-bomb-small-declared": (
        lambda: archive([bomb("manifest.json"), _MODEL, _SIG]),
        "corrupt archive",  # inflated only up to the declared size: its CRC cannot match
    ),
    "manifest-bomb-true-size": (
        lambda: archive([bomb("manifest.json", declared=GIB), _MODEL, _SIG]),
        "manifest.json declares 1073741824 bytes",
    ),
    "signature-bomb": (
        lambda: archive([_MANIFEST, _MODEL, bomb("manifest.sig", declared=64)]),
        "corrupt archive",
    ),
    "long-signature": (
        lambda: archive([_MANIFEST, _MODEL, deflated("manifest.sig", bytes(100_000))]),
        "manifest.sig declares 100000 bytes",
    ),
    "no-model": (lambda: archive([_MANIFEST, _SIG]), "missing model.tflite"),
}


@pytest.mark.parametrize("name", sorted(_HOSTILE))
def test_hostile_archives_are_refused_by_reason_with_bounded_memory(name: str) -> None:
    make, reason = _HOSTILE[name]
    data = make()
    peak, error = _peak(lambda: load_bundle(data, [_key()], max_bytes=DEFAULT_MAX_BUNDLE_BYTES))
    assert error is not None, f"{name} was accepted"
    assert reason in str(error)
    assert "\n" not in str(error)
    assert peak < PEAK_BYTES, f"{name}: {peak / 2**20:.1f} MiB traced"


def test_a_payload_over_the_limit_is_refused_before_it_is_parsed() -> None:
    data = archive([_MANIFEST, _MODEL, _SIG])
    with pytest.raises(BundleError, match=f"{len(data)} bytes, larger than 100$"):
        load_bundle(data, [_key()], max_bytes=100)
    with pytest.raises(BundleError, match="larger than"):
        load_bundle(
            b"\0" * (DEFAULT_MAX_BUNDLE_BYTES + 1), [_key()], max_bytes=DEFAULT_MAX_BUNDLE_BYTES
        )


def _signed(kit: FloodKit, model: Member, **fields: Any) -> bytes:
    signer: Any = kit.signer
    manifest = with_fields(manifest_for(kit.model, TRAFFIC_V1, signer=signer), **fields)
    text = manifest.to_json()
    return archive(
        [stored("manifest.json", text), model, stored("manifest.sig", signer.sign(text))]
    )


@pytest.mark.parametrize(
    ("declared", "reason"),
    [(len(b"x" * 42_000), "corrupt archive"), (GIB, "model.tflite declares 1073741824 bytes")],
    ids=["declared-small", "declared-true"],
)
def test_a_model_bomb_under_a_valid_signature_inflates_no_further_than_model_size(
    kit: FloodKit, declared: int, reason: str
) -> None:
    data = _signed(kit, bomb("model.tflite", declared=declared), model_size=42_000)
    peak, error = _peak(lambda: load_bundle(data, [kit.public_key.read_bytes()]))
    assert error is not None
    assert reason in str(error)
    assert peak < PEAK_BYTES


def test_a_model_bomb_under_a_bad_signature_is_never_inflated(
    kit: FloodKit, tmp_path: Path
) -> None:
    data = _signed(kit, bomb("model.tflite", declared=GIB))
    _, stranger = new_key(tmp_path)
    peak, error = _peak(lambda: load_bundle(data, [stranger.read_bytes()]))
    assert error is not None
    assert "bundle signature: signed by untrusted key" in str(error)
    assert peak < PEAK_BYTES


def test_a_manifest_model_size_over_the_absolute_limit_is_refused(kit: FloodKit) -> None:
    data = _signed(kit, stored("model.tflite", kit.model), model_size=65 * 2**20)
    with pytest.raises(BundleError, match="larger than the limit of 67108864"):
        load_bundle(data, [kit.public_key.read_bytes()])


# --- version ------------------------------------------------------------------------------------


def test_a_manifest_without_version_is_version_0_and_versions_round_trip(kit: FloodKit) -> None:
    manifest = manifest_for(kit.model, TRAFFIC_V1, version=20261204150301)
    assert Manifest.from_json(manifest.to_json()).version == 20261204150301
    older = json.loads(manifest.to_json())
    del older["version"]  # as written before bundles had versions
    assert Manifest.from_json(json.dumps(older).encode()).version == 0


@pytest.mark.parametrize(
    ("value", "reason"),
    [(-1, "must be 0.."), (2**63, "must be 0.."), (True, "expected int"), ("3", "expected int")],
)
def test_a_bad_version_names_the_key(kit: FloodKit, value: object, reason: str) -> None:
    raw = json.loads(manifest_for(kit.model, TRAFFIC_V1).to_json())
    raw["version"] = value
    with pytest.raises(BundleError, match=f"bundle manifest: version: {reason}"):
        Manifest.from_json(json.dumps(raw).encode())


# --- config -------------------------------------------------------------------------------------


def _agent(**agent: object) -> dict[str, Any]:
    return {
        "agent": {"device_id": "gw", **agent},
        "sources": [{"name": "lan", "kind": "pcap", "path": "x.pcap"}],
        "models": [{"name": "cnn", "bundle": "b.bundle", "source": "lan"}],
    }


@pytest.mark.parametrize(
    ("agent", "message"),
    [
        ({"max_bundle_bytes": 1000}, "agent.max_bundle_bytes: must be 65536.."),
        ({"max_bundle_bytes": MAX_BUNDLE_BYTES + 1}, "agent.max_bundle_bytes: must be"),
        ({"max_bundle_bytes": "4M"}, "agent.max_bundle_bytes"),
        ({"allow_downgrade": "yes"}, "agent.allow_downgrade"),
    ],
)
def test_bundle_keys_are_validated(agent: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        parse_config(_agent(**agent))


def test_bundle_keys_default_to_4_mib_and_no_downgrade() -> None:
    config = parse_config(_agent()).agent
    assert (config.max_bundle_bytes, config.allow_downgrade) == (4 * 2**20, False)
    assert parse_config(_agent(allow_downgrade=True)).agent.allow_downgrade


# --- fuzz ---------------------------------------------------------------------------------------

FUZZ_CASES = 1000


def test_mutated_bundles_are_either_valid_or_one_bundle_error(kit: FloodKit) -> None:
    import random

    good = kit.bundle.read_bytes()
    keys = [kit.public_key.read_bytes()]
    rng = random.Random(13)
    outcomes = {"refused": 0, "loaded": 0}
    messages: list[str] = []
    for _ in range(FUZZ_CASES):
        data = bytearray(good)
        kind = rng.randrange(3)
        if kind == 0:  # flip a few bytes anywhere, headers included
            for _ in range(rng.randint(1, 8)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        elif kind == 1:  # cut it short
            del data[rng.randrange(len(data)) :]
        else:  # flip bytes in the last 200: the central directory and end record
            for _ in range(rng.randint(1, 4)):
                data[len(data) - 1 - rng.randrange(200)] = rng.randrange(256)
        try:
            load_bundle(bytes(data), keys, max_bytes=DEFAULT_MAX_BUNDLE_BYTES)
        except BundleError as exc:
            messages.append(str(exc))
        else:
            outcomes["loaded"] += 1  # a flip in a byte nothing reads (e.g. a header timestamp)
    outcomes["refused"] = len(messages)
    assert not [m for m in messages if "\n" in m]
    assert outcomes["refused"] > FUZZ_CASES * 0.9
    assert sum(outcomes.values()) == FUZZ_CASES
