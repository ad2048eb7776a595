"""``iotids keys generate``: a key pair, the private half 0600 from birth, never overwritten."""

from __future__ import annotations

import argparse
import json
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from agent.bundle import key_id, load_public_key
from agent.cli import main
from converters.signing import load_private_key, sign


def test_generate_writes_a_private_0600_key_and_prints_its_id(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prefix = tmp_path / "fleet"
    assert main(["keys", "generate", "--out", str(prefix)]) == 0
    private = Path(f"{prefix}.key")
    public = Path(f"{prefix}.pub")
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert private.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    pub = load_public_key(public)
    assert isinstance(pub, Ed25519PublicKey)
    ident = key_id(pub)
    assert ident in capsys.readouterr().out
    signature = sign(b"manifest", load_private_key(private))
    pub.verify(signature, b"manifest")  # raises if the halves do not belong together
    assert len(signature) == 64


def test_existing_keys_are_never_overwritten(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prefix = tmp_path / "fleet"
    assert main(["keys", "generate", "--out", str(prefix)]) == 0
    before = Path(f"{prefix}.key").read_bytes()
    assert main(["keys", "generate", "--out", str(prefix)]) == 1
    assert "already exists" in capsys.readouterr().err
    assert Path(f"{prefix}.key").read_bytes() == before


def test_generate_makes_a_missing_keys_folder_private(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["keys", "generate", "-o", "keys/release", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["private"] == "keys/release.key"
    assert result["public"] == "keys/release.pub"
    assert len(result["key_id"]) > 0
    assert stat.S_IMODE((tmp_path / "keys").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "keys/release.key").stat().st_mode) == 0o600


@pytest.mark.parametrize(
    ("value", "says"),
    [("", "--sign-key: empty path"), (".", "is a folder"), ("nope.key", "does not exist")],
)
def test_convert_names_the_sign_key_option_when_it_is_no_key_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str, says: str
) -> None:
    from converters.cli_convert import configure, run

    parser = argparse.ArgumentParser()
    configure(parser)
    args = parser.parse_args(["model", "-o", str(tmp_path / "b.bundle"), "--sign-key", value])
    assert run(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("iotids convert: --sign-key:")
    assert says in err[0]
    assert not (tmp_path / "b.bundle").exists()
