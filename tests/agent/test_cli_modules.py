"""Every registered command's module ships: a missing one is an error, never a silent gap."""

from __future__ import annotations

import pytest

from agent import cli


def test_every_command_module_imports() -> None:
    _, modules = cli.build_parser()
    assert set(modules) == set(cli.COMMANDS)


def test_a_missing_command_module_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    missing = cli.Command("agent.no_such_command", "not shipped")
    monkeypatch.setitem(cli.COMMANDS, "ghost", missing)
    with pytest.raises(cli.MissingCommandError, match=r"agent\.no_such_command is missing"):
        cli.build_parser()


def test_running_one_command_configures_only_its_module() -> None:
    _, modules = cli.build_parser(only="verify")
    assert set(modules) == {"verify"}
