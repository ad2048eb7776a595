"""Signatures checked in a child process: the same answers as in process, and anything but a
well-formed answer from the child is a refusal."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent import signature
from agent.bundle import check_signature
from agent.bundle_archive import BundleError
from agent.signature import ChildVerifier, verify_here

MESSAGE = b'{"format": 1, "key_id": "x"}'


class _Signed:
    def __init__(self, manifest_bytes: bytes, signature: bytes) -> None:
        self.manifest_bytes = manifest_bytes
        self.signature = signature


@pytest.fixture(scope="module")
def keys() -> tuple[Ed25519PrivateKey, list[bytes]]:
    signer = Ed25519PrivateKey.generate()
    other = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    return signer, [other, signer.public_key().public_bytes_raw()]


def test_child_answers_as_in_process_and_remembers(
    keys: tuple[Ed25519PrivateKey, list[bytes]],
) -> None:
    signer, trusted = keys
    sig = signer.sign(MESSAGE)
    verify = ChildVerifier()
    assert verify(trusted, sig, MESSAGE) == verify_here(trusted, sig, MESSAGE) == 1
    assert verify(trusted, sig, MESSAGE + b" ") is None  # altered manifest
    assert verify(trusted[:1], sig, MESSAGE) is None  # signer not trusted
    assert verify.children == 3
    assert verify(trusted, sig, MESSAGE) == 1
    assert verify.children == 3  # the same inputs again: no new child


def test_check_signature_through_the_child_refuses_a_tampered_manifest(
    keys: tuple[Ed25519PrivateKey, list[bytes]],
) -> None:
    signer, trusted = keys
    sig = signer.sign(MESSAGE)
    assert len(check_signature(_Signed(MESSAGE, sig), trusted, ChildVerifier())) == 16
    with pytest.raises(BundleError, match="untrusted key"):
        check_signature(_Signed(MESSAGE.replace(b"1", b"2"), sig), trusted, ChildVerifier())


@pytest.mark.parametrize(
    ("program", "why"),
    [
        ("/bin/false", "verifier failed"),  # crashes / exits non-zero
        ("/bin/echo", "no answer"),  # exits 0 printing garbage
        ("/nonexistent/python", "did not start"),
    ],
)
def test_a_child_that_fails_is_a_refusal(
    keys: tuple[Ed25519PrivateKey, list[bytes]],
    monkeypatch: pytest.MonkeyPatch,
    program: str,
    why: str,
) -> None:
    signer, trusted = keys
    monkeypatch.setattr(signature.sys, "executable", program)
    with pytest.raises(BundleError, match=why):
        ChildVerifier()(trusted, signer.sign(MESSAGE), MESSAGE)


def test_a_child_that_hangs_is_a_refusal(
    keys: tuple[Ed25519PrivateKey, list[bytes]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    signer, trusted = keys
    hang = tmp_path / "hang"
    hang.write_text("#!/bin/sh\nexec sleep 30\n")
    hang.chmod(0o755)
    monkeypatch.setattr(signature.sys, "executable", str(hang))
    with pytest.raises(BundleError, match="timed out"):
        ChildVerifier(timeout=0.5)(trusted, signer.sign(MESSAGE), MESSAGE)


def test_a_child_answer_out_of_range_is_a_refusal() -> None:
    with pytest.raises(BundleError, match="no answer"):
        signature._answer(b'{"key": 2}\n', 2)
    with pytest.raises(BundleError, match="no answer"):
        signature._answer(b'{"key": true}\n', 2)
    assert signature._answer(b'{"key": null}\n', 2) is None


def test_the_child_reads_manifests_as_large_as_the_archive_allows() -> None:
    from agent import bundle_archive, signature_child

    assert signature_child.MAX_MANIFEST_BYTES == bundle_archive.MAX_MANIFEST_BYTES


def test_preverify_asks_once_per_bundle_and_the_agent_reuses_the_answer(tmp_path: Path) -> None:
    from agent.bundle_archive import open_archive
    from agent.keys import raw_public_key
    from agent.preverify import preverify
    from tests.agent.flood_bundle import flood_kit

    kit = flood_kit(tmp_path)
    config = tmp_path / "agent.toml"
    config.write_text(
        f'[agent]\nstate_dir = "{tmp_path}"\ntrusted_keys = ["{kit.public_key}"]\n'
        f'[[models]]\nname = "flood"\nbundle = "{kit.bundle}"\nsource = "cap"\n'
    )
    verify = ChildVerifier()
    preverify(config, verify)
    assert verify.children == 1  # no saved bundle yet: only the config's
    archive = open_archive(kit.bundle)
    key = raw_public_key(Path(kit.public_key).read_bytes())
    assert len(check_signature(archive, [key], verify)) == 16
    assert verify.children == 1
    for broken in ("[agent\n", "[agent]\ntrusted_keys = 3\n", ""):
        config.write_text(broken)
        preverify(config, verify)  # skipped without a word: the real checks report it
    preverify(tmp_path / "missing.toml", verify)
