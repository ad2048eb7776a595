"""Conventions every ``iotids`` command keeps: --version, -o, -v/-q after the subcommand,
a description on every (sub-)subcommand's --help, --json results for scripts."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import pytest

from agent.cli import build_parser, log_level
from agent.cli import main as iotids


def _every_parser(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> list[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.append(((*path, name), sub))
                found.extend(_every_parser(sub, (*path, name)))
    return found


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        iotids(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith("iotids 0.")


def test_every_subcommand_has_a_description_and_takes_v_and_q() -> None:
    parser, _ = build_parser()
    parsers = _every_parser(parser)
    names = {" ".join(path) for path, _ in parsers}
    assert {"agent run", "agent replay", "agent validate-config", "agent calibrate"} <= names
    assert {"synth traffic", "provision wheelhouse", "keys"} <= names
    for path, sub in parsers:
        assert sub.description, f"iotids {' '.join(path)} --help has no description"
        options = sub._option_string_actions
        assert "-v" in options, path
        assert "-q" in options, path


def test_v_and_quiet_after_the_subcommand() -> None:
    parser, _ = build_parser()
    train = ["--dataset", "synthetic", "--path", "p", "--model", "dnn"]
    args = parser.parse_args(["train", *train, "-o", "out", "-v"])
    assert (args.verbose, args.quiet, args.out) == (1, False, "out")
    args = parser.parse_args(["train", *train, "--quiet"])
    assert args.quiet is True
    args = parser.parse_args(["-q", "synth", "traffic", "-o", "x"])
    assert args.quiet is True  # before the subcommand still counts
    assert log_level(0, True) == logging.WARNING
    assert log_level(0, False) == logging.INFO
    assert log_level(2, False) == logging.DEBUG


def test_out_has_o_everywhere() -> None:
    parser, _ = build_parser()
    for path, sub in _every_parser(parser):
        options = sub._option_string_actions
        if "--out" in options:
            assert options["-o"] is options["--out"], path


def test_validate_config_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "agent.toml"
    good.write_text(
        f'[agent]\ndevice_id = "gw"\nstate_dir = "{tmp_path}"\n[mqtt]\nenabled = false\n'
        '[[sources]]\nname = "sys"\nkind = "host"\n'
    )
    assert iotids(["agent", "validate-config", str(good), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["ok"] is True
    assert result["sources"] == {"sys": {"kind": "host", "step": "1.0s"}}
    bad = tmp_path / "bad.toml"
    bad.write_text('[agent]\ndevice_id = "gw"\n[mqtt]\nport = 70000\n')
    assert iotids(["agent", "validate-config", str(bad), "--json"]) == 2
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert result["ok"] is False
    assert result["error"].startswith("mqtt.port")
    assert captured.err.startswith("iotids agent: mqtt.port")


def test_agent_help_names_every_action() -> None:
    from agent.cli import COMMANDS

    for action in ("run", "validate-config", "replay", "calibrate"):
        assert action in COMMANDS["agent"].help


def test_keys_generate_says_wrote_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        assert iotids(["keys", "generate", "-o", str(tmp_path / "keys" / "release")]) == 0
    out = capsys.readouterr().out
    assert len(out.splitlines()) == 1
    assert out.startswith("wrote ")
    assert "release.key" in out
    assert "release.pub" in out
    assert not [r for r in caplog.records if r.getMessage().startswith("wrote ")]


def test_python_m_agent_takes_q_after_the_action(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from agent.__main__ import main as python_m_agent

    config = tmp_path / "agent.toml"
    config.write_text(
        f'[agent]\ndevice_id = "gw"\nstate_dir = "{tmp_path}"\n[mqtt]\nenabled = false\n'
        '[[sources]]\nname = "sys"\nkind = "host"\n'
    )
    assert python_m_agent(["validate-config", str(config), "-q"]) == 0
    assert ": ok (device gw" in capsys.readouterr().out


BAD_INPUTS = [
    ["features", "nope.pcap"],
    ["keys", "generate", "-o", ""],
    ["verify", "nope.bundle", "--trust-key", "nope.pub"],
    ["agent", "validate-config", "nope.toml"],
    ["agent", "replay", "--bundle", "nope.bundle", "--capture", "nope.pcap"],
    ["agent", "calibrate", "--bundle", "nope.bundle"],
    ["monitor", "--broker", "bad://x", "--once"],
    ["collect", "--broker", "bad://x"],
    ["synth", "traffic", "-o", "out", "--preset", "nope"],
    ["provision", "--profile", "pi4", "--device-id", "gw", "-o", "out"],
]


@pytest.mark.parametrize("argv", BAD_INPUTS, ids=lambda argv: " ".join(argv[:2]))
def test_bad_input_is_one_line_naming_the_command(
    argv: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    assert iotids([*argv, "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"iotids {argv[0]}: "), err


def test_a_missing_training_path_names_the_fix(tmp_path: Path) -> None:
    from training.datasets import load

    with pytest.raises(FileNotFoundError) as captures:
        load("captures", str(tmp_path / "nope"))
    assert str(captures.value).startswith(f"--path {tmp_path / 'nope'}: no such file or folder")
    assert "benign-a.pcap" in str(captures.value)
    with pytest.raises(FileNotFoundError) as empty:
        load("captures", str(tmp_path))
    assert "no .pcap/.pcapng files in it" in str(empty.value)
    with pytest.raises(FileNotFoundError) as synthetic:
        load("synthetic", str(tmp_path / "nope"))
    assert f"iotids synth traffic -o {tmp_path / 'nope'}" in str(synthetic.value)


def test_json_where_a_script_needs_the_result() -> None:
    parser, _ = build_parser()
    parsers = dict(_every_parser(parser))
    for path in [("keys",), ("convert",), ("provision",), ("agent", "validate-config")]:
        assert "--json" in parsers[path]._option_string_actions, path


def test_one_placeholder_per_kind_of_key() -> None:
    """``PUB`` is always a public key and ``KEY`` the private one, as the README says."""
    parser, _ = build_parser()
    for path, sub in _every_parser(parser):
        options = sub._option_string_actions
        if "--trust-key" in options:
            assert options["--trust-key"].metavar == "PUB", path
        if "--sign-key" in options:
            assert options["--sign-key"].metavar == "KEY", path
