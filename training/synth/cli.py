"""``iotids synth traffic|telemetry``: built-in data with ground truth, no datasets needed."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

logger = logging.getLogger(__name__)


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the ``traffic`` and ``telemetry`` sub-subcommands."""
    from training.synth.scenario import PRESETS  # stdlib-only module: cheap on the gateway

    sub = parser.add_subparsers(dest="synth_command", metavar="KIND", required=True)
    traffic = sub.add_parser("traffic", help="gateway packets: pcap + per-packet / per-step labels")
    traffic.add_argument("-o", "--out", type=Path, required=True, help="output directory")
    source = traffic.add_mutually_exclusive_group()
    source.add_argument("--scenario", type=Path, help="scenario JSON file")
    source.add_argument(
        "--preset",
        default="default",
        help=f"built-in scenario: {', '.join(PRESETS)} (default: default)",
    )
    traffic.add_argument("--seed", type=int, help="override the scenario's seed")
    traffic.add_argument(
        "--duration", type=float, help="seconds; attack windows scale with the duration"
    )
    traffic.add_argument("--step", type=float, help="seconds per labelled step in steps.csv")

    telemetry = sub.add_parser("telemetry", help="sensor time series with labelled faults")
    telemetry.add_argument("-o", "--out", type=Path, required=True, help="output directory")
    telemetry.add_argument("--kind", choices=("industrial", "smarthome"), default="industrial")
    telemetry.add_argument("--seed", type=int, default=0)
    telemetry.add_argument("--duration", type=float, help="seconds (default: one day)")
    telemetry.add_argument("--step", type=float, default=1.0, help="seconds between rows")


def run(args: argparse.Namespace) -> int:
    """Generate; a bad scenario is one line on stderr and exit code 2."""
    if args.synth_command == "traffic":
        return _traffic(args)
    return _telemetry(args)


def _fail(message: str) -> int:
    print(f"iotids synth: {message}", file=sys.stderr)  # noqa: T201 - the CLI talks to its user
    return 2


def _traffic(args: argparse.Namespace) -> int:
    import dataclasses

    from training.synth.scenario import ScenarioError, load_scenario, preset
    from training.synth.traffic import generate_traffic

    try:
        scenario = load_scenario(args.scenario) if args.scenario else preset(args.preset)
        scenario = scenario.with_overrides(seed=args.seed, duration=args.duration)
        if args.step is not None:
            if not args.step > 0:
                raise ScenarioError(f"step: must be > 0, got {args.step}")
            scenario = dataclasses.replace(scenario, step=args.step)
    except ScenarioError as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(f"{args.scenario}: {exc.strerror}")
    result = generate_traffic(scenario, args.out)
    print(  # noqa: T201 - the CLI talks to its user
        f"{result.packets} packets, {len(result.step_labels)} steps, "
        f"{result.packets_per_second:,.0f} packets/s -> {args.out}"
    )
    return 0


def _telemetry(args: argparse.Namespace) -> int:
    from training.synth.telemetry import TelemetryError, generate_telemetry, scenario_from_args

    try:
        scenario = scenario_from_args(
            kind=args.kind, seed=args.seed, duration=args.duration, step=args.step
        )
    except TelemetryError as exc:
        return _fail(str(exc))
    result = generate_telemetry(scenario, args.out)
    print(  # noqa: T201 - the CLI talks to its user
        f"{len(result.type)} rows, {int(result.label.sum())} labelled -> {result.path}"
    )
    return 0
