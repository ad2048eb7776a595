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
        if path == ("demo",):
            continue  # the demo's folder option is its own, with a default
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
