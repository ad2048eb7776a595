"""``iotids agent``: run the gateway service, check its config, or replay a capture offline.

``run --config F`` is what the systemd unit starts; ``validate-config F`` checks a file before
it is deployed; ``replay --bundle B --capture P`` tries a bundle on a capture with no broker
(forensics), printing detection events. Also runnable as ``python -m agent run --config F``.
Bad config or a bundle that does not fit: one clear line on stderr, exit 2.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from agent.signals import SignalLatch  # standard library only

if TYPE_CHECKING:
    from agent.inference import Debounce
    from agent.signature import ChildVerifier

logger = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_USAGE = 2


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the ``run``, ``validate-config``, ``replay`` and ``calibrate`` sub-subcommands."""
    sub = parser.add_subparsers(dest="agent_command", metavar="ACTION", required=True)
    run_p = sub.add_parser("run", help="run the agent (the systemd service)")
    run_p.add_argument("--config", required=True, help="agent TOML file")
    check_p = sub.add_parser(
        "validate-config", help="check a config file and the paths it names, and exit"
    )
    check_p.add_argument("config", help="agent TOML file")
    check_p.add_argument(
        "--file-only",
        action="store_true",
        help="check the file alone, not the paths it names (on a machine other than the gateway)",
    )
    check_p.add_argument(
        "--json",
        action="store_true",
        help='print {"ok": ..., "error": ...} on stdout (also for a bad config, still exit 2)',
    )
    replay_p = sub.add_parser("replay", help="run a bundle over a capture, print detections")
    replay_p.add_argument("--bundle", required=True, help="signed model bundle")
    replay_p.add_argument("--capture", required=True, help="pcap / pcapng file")
    replay_p.add_argument(
        "--trust-key",
        action="append",
        default=[],
        metavar="PUB",
        help="public key allowed to sign the bundle (repeatable)",
    )
    replay_p.add_argument("--realtime", action="store_true", help="pace by capture timestamps")
    replay_p.add_argument(
        "--device", default="replay", help="the events' device id (default: replay)"
    )
    replay_p.add_argument("--json", action="store_true", help="events as JSON lines on stdout")
    # defaults (None) are the agent's own, from agent.inference.Debounce
    replay_p.add_argument("--raise-k", type=int, help="windows to raise (of n; 2)")
    replay_p.add_argument("--raise-n", type=int, help="window span for raising (3)")
    replay_p.add_argument("--clear-m", type=int, help="clean windows to end (3)")
    replay_p.add_argument(
        "--raise-score", type=float, help="one window this sure raises at once (off by default)"
    )
    replay_p.add_argument(
        "--kernels",
        default="auto",
        help="interpreter kernels, as [agent] kernels: auto (time XNNPACK and the built-ins on "
        "the model, keep the faster), xnnpack or builtin",
    )
    replay_p.add_argument(
        "--hold",
        type=_seconds_up_to(3600),
        help="seconds a quiet detection waits for its label to resume it (30; as [[models]] hold)",
    )
    replay_p.add_argument(
        "--recur",
        type=_seconds_up_to(86_400),
        help="seconds after a detection's last hit a new one may recur it (3600; as [[models]] "
        "recur)",
    )
    from agent import calibrate_cli  # standard library only at import time

    calibrate_cli.add_replay_option(replay_p)
    calibrate_cli.configure(sub)


def run(args: argparse.Namespace) -> int:
    """Dispatch to the chosen action; returns the exit code."""
    verify = None
    starting = SignalLatch()
    if args.agent_command == "run":
        from agent.malloc import limit_arenas

        # a stop asked for while bundles load is honoured once the agent runs: exit 0, as later
        starting.install()
        limit_arenas()  # before any thread starts: threads take arenas when they first allocate
        verify = _preverified(args.config)
    from agent.bundle import BundleError
    from agent.calibrate_cli import run as calibrate
    from agent.config import ConfigError

    actions = {
        "run": lambda a: _run(a, verify, starting),
        "validate-config": _validate,
        "replay": _replay,
        "calibrate": calibrate,
    }
    from agent.config_loader import SourceUnavailable

    try:
        result: int = actions[args.agent_command](args)
    except (ConfigError, BundleError) as exc:
        print(f"iotids agent: {exc}", file=sys.stderr)  # noqa: T201 - the CLI talks to its user
        return EXIT_USAGE
    except SourceUnavailable as exc:
        print(f"iotids agent: {exc}", file=sys.stderr)  # noqa: T201
        return 1
    return result


def _preverified(config: str) -> ChildVerifier:
    """A signature verifier that has checked the config's bundles already: before numpy and
    LiteRT load, so its child process lives beside a small one."""
    from agent.preverify import preverify
    from agent.signature import ChildVerifier

    verify = ChildVerifier()
    preverify(config, verify)
    return verify


def _run(
    args: argparse.Namespace,
    verify: ChildVerifier | None = None,
    starting: SignalLatch | None = None,
) -> int:
    from agent.app import App
    from agent.config import load_config
    from agent.config_checks import check_deployment
    from agent.runtime import use_kernels

    config = load_config(args.config)
    check_deployment(config, create=True)
    if not getattr(args, "verbose", 0):
        logging.getLogger().setLevel(config.agent.log_level.upper())
    uses_paho = config.mqtt.enabled or any(s.kind == "mqtt-sensors" for s in config.sources)
    if uses_paho and config.mqtt.tls is None:
        from agent.deferred import import_paho_without_tls

        import_paho_without_tls()  # before anything imports paho: no OpenSSL for plain MQTT
    use_kernels(config.agent.kernels)
    app = App(config, verify=verify)
    settle()
    return app.run(starting)


def settle() -> None:
    """After start-up: what was loaded (modules, config, bundles) lives as long as the process.

    Frozen, the collector stops walking those objects again on every full collection (a replay
    of the shared captures ran ~15 % faster), and their pages are not touched by it.
    """
    gc.collect()
    gc.freeze()


def _validate(args: argparse.Namespace) -> int:
    from agent.bundle import BundleError
    from agent.config import ConfigError, load_config
    from agent.config_checks import (
        check_calibration_period,
        check_contents,
        check_deployment,
        model_steps,
    )

    try:
        config = load_config(args.config)
        check_calibration_period(config)
        if not args.file_only:
            check_deployment(config)
            config = model_steps(config)
            check_calibration_period(config)
            check_contents(config)
    except (ConfigError, BundleError) as exc:
        if args.json:
            print(json.dumps({"config": args.config, "ok": False, "error": str(exc)}))  # noqa: T201
        raise
    models = sum(1 for m in config.models if m.enabled)
    if args.json:
        result = {
            "config": args.config,
            "ok": True,
            "device_id": config.agent.device_id,
            "sources": {s.name: {"kind": s.kind, "step": s.step_spec.text} for s in config.sources},
            "models": [m.name for m in config.models if m.enabled],
        }
        print(json.dumps(result))  # noqa: T201 - the result, for a script
        return EXIT_OK
    print(  # noqa: T201 - the CLI talks to its user
        f"{args.config}: ok (device {config.agent.device_id}, "
        f"{len(config.sources)} sources, {models} models)"
    )
    return EXIT_OK


def _replay(args: argparse.Namespace) -> int:
    """Single-threaded: capture -> steps -> windows -> model -> events, as fast as it goes."""
    from agent.bundle import load_bundle, load_public_key
    from agent.calibrate_cli import load_for_replay
    from agent.config import ConfigError
    from agent.inference import Debounce
    from agent.replay import replay_capture
    from agent.report.jsonl import JsonLinesSink
    from agent.runtime import use_kernels

    try:
        use_kernels(args.kernels)
    except ValueError as exc:
        raise ConfigError(f"--kernels: {exc}") from None
    keys = []
    for path in args.trust_key:
        try:
            keys.append(load_public_key(path))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"--trust-key {path}: {exc}") from None
    bundle = load_bundle(args.bundle, keys)
    calibration = load_for_replay(args.calibration, bundle.manifest.bundle_id)
    sink = JsonLinesSink(sys.stdout, device=args.device) if args.json else _TextSink()
    settle()
    try:
        result = replay_capture(
            bundle,
            args.capture,
            realtime=args.realtime,
            debounce=_debounce(args, Debounce),
            sinks=[sink],
            calibration=calibration,
            progress=True,
        )
    except BrokenPipeError:
        raise  # stdout closed by the reader: the CLI's entry point ends quietly
    except (OSError, ValueError) as exc:
        raise ConfigError(f"--capture {args.capture}: {exc}") from None
    from agent.log_sink import drain

    stats = result.source
    drain()  # the replay's event lines first, its summary last
    print(  # noqa: T201 - the CLI talks to its user
        f"replayed {stats.packets} packets ({sum(stats.malformed.values())} malformed) in "
        f"{result.seconds:.2f} s ({result.packets_per_s:,.0f} packets/s): {stats.steps} steps, "
        f"{result.windows_scored} windows, {len(result.events)} events, model {result.bundle_id}",
        file=sys.stderr,
    )
    return EXIT_OK


class _TextSink:
    """Human-readable event lines for a replay without ``--json``."""

    def start(self) -> None:
        """Nothing to start."""

    def publish_event(self, event: Any) -> None:
        """One line per event."""
        evidence = event["evidence"]
        sources = ", ".join(f"{s['address']}×{s['packets']}" for s in evidence["top_sources"][:3])
        back = event["recurrence"]
        print(  # noqa: T201 - the CLI talks to its user
            f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(event['window_end']))} "
            f"{event['type']:<6} {event['label']} ({event['category']}) "
            f"{_score_text(event)} "
            f"packets {evidence['packets']} from {sources or '-'}"
            + (f"; recurs incident {event['incident'][:8]} (#{back + 1})" if back else "")
        )

    def publish_stats(self, stats: Any) -> None:
        """Not shown."""

    def publish_model(self, state: Any) -> None:
        """Not shown."""

    def close(self) -> None:
        """Nothing to close."""


def _score_text(event: Any) -> str:
    """``score 2.4x threshold (raw 0.009)``: readable for a classifier and an anomaly alike."""
    ratio, peak = event.get("score_ratio"), event.get("peak_ratio")
    if ratio is None:
        return f"score {event['score']:.3f} peak {event['peak_score']:.3f}"
    return (
        f"score {ratio:.2f}x threshold (raw {event['score']:.3g}), "
        f"peak {peak:.2f}x (raw {event['peak_score']:.3g})"
    )


def _seconds_up_to(top: float) -> Callable[[str], float]:
    """An argparse type: 0..``top`` seconds, the range the config allows."""

    def seconds(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
        if not 0 <= value <= top:
            raise argparse.ArgumentTypeError(f"must be 0..{top:g} seconds, got {text}")
        return value

    return seconds


def _debounce(args: argparse.Namespace, debounce: type[Debounce]) -> Debounce:
    """The replay's debounce: the agent's defaults, overridden by the flags that were given."""
    given = {
        name: getattr(args, name)
        for name in ("raise_k", "raise_n", "clear_m", "raise_score", "hold", "recur")
        if getattr(args, name) is not None
    }
    return debounce(**given)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m agent ...``: the same as ``iotids agent ...``."""
    from agent.cli import closed_pipe_safe

    return closed_pipe_safe(_main, argv)


def _main(argv: Sequence[str] | None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agent", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    configure(parser)
    from agent.cli import finish_parsers

    finish_parsers(parser)  # -v / -q after the action too, descriptions from the help
    args = parser.parse_args(argv)
    from agent.log_sink import configure_logging, drain

    configure_logging(
        logging.WARNING if args.quiet else logging.DEBUG if args.verbose else logging.INFO
    )
    try:
        return run(args)
    finally:
        drain()


if __name__ == "__main__":
    sys.exit(main())
