"""The ``iotids`` command: one entry point, a subcommand per job.

Subcommands live beside the code they drive (``agent/features/cli.py``, ``console/monitor.py`` ...)
and are found through a registry of import paths, so an unused command's dependencies never
load on the gateway. A command module imports only the standard library at top level and
exposes ``configure(parser)`` and ``run(args) -> int``. Desktop commands that need TensorFlow
print the one install line that fixes a gateway-only install and exit 1.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import os
import select
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import TypeVar

INSTALL_TRAIN = "pip install 'iotids[train]'"
# A reader that closed our stdout early (``iotids features X --json | head``): exit quietly with
# the status a shell reports for a process SIGPIPE ended (128 + 13), as ``cat`` or ``yes`` do.
EXIT_CLOSED_PIPE = 141

A = TypeVar("A")


@dataclass(frozen=True)
class Command:
    """A registered subcommand: where it lives and what it needs."""

    module: str
    help: str
    needs_tensorflow: bool = False


COMMANDS: dict[str, Command] = {
    "features": Command("agent.features.cli", "decode a capture and compute feature windows"),
    "synth": Command(
        "training.synth.cli", "generate gateway traffic / telemetry with ground truth"
    ),
    "train": Command("training.cli_train", "train a CNN / LSTM / GRU / DNN model", True),
    "evaluate": Command("training.cli_evaluate", "score a trained model on other data", True),
    "convert": Command("converters.cli_convert", "quantize a model into a signed bundle", True),
    "openset": Command(
        "console.openset", "pair a classifier bundle with a benign traffic model", True
    ),
    "verify": Command("converters.cli_verify", "prove a bundle on the gateway's runtime"),
    "keys": Command("converters.cli_keys", "make an Ed25519 signing key pair"),
    "agent": Command(
        "agent.__main__", "run the gateway agent (run, validate-config, replay, calibrate)"
    ),
    "provision": Command("firmware_configs.provision", "render a gateway's first-boot files"),
    "monitor": Command("console.monitor", "watch a fleet of gateways through the broker"),
    "collect": Command("console.collector.cli", "store a fleet's events and stats, serve metrics"),
    "demo": Command("console.demo", "the whole pipeline end to end on built-in data", True),
}


class MissingCommandError(ImportError):
    """A registered command's module is not installed: the package was built wrong."""


def _load(command: Command) -> ModuleType:
    """Import a command module; every package ships in every install, so absence is a bug."""
    try:
        return importlib.import_module(command.module)
    except ModuleNotFoundError as exc:
        if exc.name is not None and command.module.startswith(exc.name):
            raise MissingCommandError(
                f"{command.module} is missing from this install (a packaging bug: every "
                "iotids install ships agent, training, converters and firmware_configs)"
            ) from exc
        raise


def version() -> str:
    """The installed package's version, else the source tree's."""
    from importlib import metadata

    try:
        return metadata.version("iotids")
    except metadata.PackageNotFoundError:
        from agent import __version__

        return __version__


def _add_log_options(parser: argparse.ArgumentParser) -> None:
    """``-v`` / ``-q`` on a (sub)command's parser, unless it defines its own.

    SUPPRESS keeps a subcommand's parser from resetting what was given before the subcommand
    (``iotids -v train``), so either position works (``iotids train -v``).
    """
    known = parser._option_string_actions  # argparse has no public lookup of its options
    if "-v" not in known and "--verbose" not in known:
        parser.add_argument(
            "-v", "--verbose", action="count", default=argparse.SUPPRESS, help="more logging"
        )
    if "-q" not in known and "--quiet" not in known:
        parser.add_argument(
            "-q",
            "--quiet",
            action="store_true",
            default=argparse.SUPPRESS,
            help="warnings and errors only, no progress",
        )


def _subparsers(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser]]:
    """Each (help, parser) directly under ``parser``'s subcommands."""
    found: list[tuple[str, argparse.ArgumentParser]] = []
    for action in parser._actions:  # argparse has no public walk of its subparsers
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            found.extend((helps.get(name, ""), sub) for name, sub in action.choices.items())
    return found


def finish_parsers(parser: argparse.ArgumentParser) -> None:
    """Every subcommand, at every depth: its help as description when it has none, -v/-q."""
    for help_text, sub in _subparsers(parser):
        if not sub.description and help_text:
            sub.description = help_text
        _add_log_options(sub)
        finish_parsers(sub)


def build_parser(
    only: str | None = None,
) -> tuple[argparse.ArgumentParser, dict[str, ModuleType]]:
    """The top-level parser with every subcommand configured, or just ``only``.

    Running one command configures only its module: the others are listed by name and help, so
    ``iotids verify`` on a gateway never imports a desktop command's module.
    """
    parser = argparse.ArgumentParser(
        prog="iotids", description="Deep-learning intrusion detection for IoT gateways."
    )
    parser.add_argument("--version", action="version", version=f"iotids {version()}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="warnings and errors only, no progress"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    modules: dict[str, ModuleType] = {}
    for name, command in COMMANDS.items():
        subparser = sub.add_parser(name, help=command.help, description=command.help)
        if only is None or name == only:
            module = _load(command)
            modules[name] = module
            module.configure(subparser)
    finish_parsers(parser)
    return parser, modules


def log_level(verbose: int, quiet: bool) -> int:
    """``-q``: warnings only; default: progress (INFO); ``-v``: INFO, ``-vv``: DEBUG."""
    if quiet:
        return logging.WARNING
    return logging.DEBUG if verbose >= 2 else logging.INFO


def _has_tensorflow() -> bool:
    """Whether TensorFlow can be imported here, without importing it (that takes seconds)."""
    try:
        return importlib.util.find_spec("tensorflow") is not None
    except (ImportError, ValueError):  # blocked, or a broken half-installed package
        return False


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, check the command's dependencies, run it; returns the exit code."""
    return closed_pipe_safe(_main, argv)


def _command_in(argv: Sequence[str]) -> str | None:
    """The subcommand named in ``argv``: the first word that is not an option (the top-level
    options take no values), when it is a registered command."""
    word = next((a for a in argv if not a.startswith("-")), None)
    return word if word in COMMANDS else None


def _main(argv: Sequence[str] | None) -> int:
    parser, modules = build_parser(_command_in(sys.argv[1:] if argv is None else argv))
    args = parser.parse_args(argv)
    from agent.log_sink import configure_logging

    configure_logging(log_level(args.verbose, args.quiet))
    if args.command is None:
        parser.print_help()
        return 2
    command = COMMANDS[args.command]
    if command.needs_tensorflow and not _has_tensorflow():
        print(  # noqa: T201 - the CLI talks to its user
            f"iotids {args.command}: needs TensorFlow, which this install lacks."
            f" Fix: {INSTALL_TRAIN}",
            file=sys.stderr,
        )
        return 1
    from agent.log_sink import drain

    try:
        result: int = modules[args.command].run(args)
    finally:
        drain()  # the command's log is written before whatever its caller prints next
    return result


def _stdout_closed() -> bool:
    """True when stdout is a pipe whose reader has gone (poll reports an error on it)."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (OSError, ValueError, AttributeError):  # no descriptor (a test's capture), no poll
        return False


def closed_pipe_safe(run: Callable[[A], int], args: A) -> int:
    """``run(args)``, but a closed stdout ends the command quietly with EXIT_CLOSED_PIPE."""
    try:
        try:
            result = run(args)
        except SystemExit:  # argparse's --help exits from inside, swallowing a write error
            sys.stdout.flush()
            if _stdout_closed():
                raise BrokenPipeError from None
            raise
        sys.stdout.flush()  # what is still buffered must meet the closed pipe here, not at exit
    except BrokenPipeError:
        # Point stdout at /dev/null so the interpreter's own flush at exit cannot fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):  # a stdout without a descriptor (a test's capture)
            pass
        finally:
            os.close(devnull)
        return EXIT_CLOSED_PIPE
    return result


if __name__ == "__main__":
    sys.exit(main())
