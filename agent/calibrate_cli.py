"""``iotids agent calibrate``: site thresholds from a capture of the site, or reset the saved ones.

``calibrate --bundle B --trust-key K --capture site.pcap --out cal.json`` replays the capture
through the agent's own path (the bundle's signed thresholds armed, windows inside a detection
left out) and writes the calibration; ``iotids agent replay --calibration cal.json`` uses it.
Copy it to ``<state_dir>/calibration-<model>.json`` to give it to a gateway.
``calibrate --reset --config F [--model NAME]`` deletes the saved calibrations so the agent
starts over (collecting again at its next start when the config has ``[calibration]``).
Standard library only at import time (the command registry's rule).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def configure(sub: Any) -> None:
    """Add the ``calibrate`` action to ``iotids agent``'s sub-parsers."""
    p = sub.add_parser("calibrate", help="site thresholds from a capture (or --reset)")
    p.add_argument("--bundle", help="signed model bundle")
    p.add_argument("--capture", help="pcap / pcapng of the site's everyday traffic")
    p.add_argument("-o", "--out", type=Path, help="calibration JSON to write")
    p.add_argument(
        "--trust-key", action="append", default=[], metavar="PUB", help="trusted public key"
    )
    p.add_argument("--target-false-alarms-per-day", type=float, default=1.0, help="aim (default 1)")
    p.add_argument(
        "--attack-free",
        action="store_true",
        help="the capture holds no attack: learn every window of it, its rare events too",
    )
    p.add_argument("--reset", action="store_true", help="delete the agent's saved calibrations")
    p.add_argument("--config", help="agent TOML file (with --reset: where its state is)")
    p.add_argument("--model", help="with --reset: only this model's calibration")


def add_replay_option(parser: argparse.ArgumentParser) -> None:
    """``iotids agent replay --calibration cal.json``."""
    parser.add_argument("--calibration", type=Path, help="site calibration JSON (calibrate)")


def run(args: argparse.Namespace) -> int:
    """Calibrate offline or reset; problems are ConfigError (one line, exit 2)."""
    from agent.config import ConfigError

    if args.reset:
        return _reset(args)
    missing = [f"--{n}" for n in ("bundle", "capture", "out") if getattr(args, n) is None]
    if missing:
        raise ConfigError(f"calibrate: {', '.join(missing)} required (or --reset)")
    if not 0.001 <= args.target_false_alarms_per_day <= 1000:
        raise ConfigError("--target-false-alarms-per-day: must be 0.001..1000")
    from agent import calibration as cal

    target = args.target_false_alarms_per_day
    found = offline(args.bundle, args.trust_key, args.capture, target, args.attack_free)
    try:
        cal.save(found, args.out)
    except OSError as exc:
        raise ConfigError(f"--out {args.out}: {exc.strerror}") from None
    groups = found.group_thresholds
    edges = f"; group edges {[round(g, 3) for g in groups]}" if groups is not None else ""
    said = cal.effects(found.thresholds, found.start_quiet_windows)
    start = "".join(f"; {s}" for s in said)
    print(  # noqa: T201 - the CLI talks to its user
        f"wrote {args.out}: {found.windows} windows over {found.seconds:.0f} s "
        f"({found.excluded} flagged left out, {found.flagged_fraction:.1%} flagged"
        f"{'; vouched attack-free' if found.attack_free else ''}); "
        f"anomaly threshold {found.anomaly_threshold} (stream start "
        f"{found.start_anomaly_threshold}){edges}; thresholds {dict(found.thresholds)}{start}",
        file=sys.stderr,
    )
    return 0


def trusted(paths: list[str]) -> list[Any]:
    """Public keys from ``--trust-key`` paths; ConfigError names the bad one."""
    from agent.bundle import load_public_key
    from agent.config import ConfigError

    keys = []
    for path in paths:
        try:
            keys.append(load_public_key(path))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"--trust-key {path}: {exc}") from None
    return keys


def offline(
    bundle_path: str, keys: list[str], capture: str, target: float, attack_free: bool = False
) -> Any:
    """Verify the bundle, then calibrate it on ``capture``."""
    from agent.bundle import load_bundle

    bundle = load_bundle(bundle_path, trusted(keys))
    return calibrate_bundle(bundle, capture, target, True, attack_free)


def calibrate_bundle(
    bundle: Any, capture: str, target: float, progress: bool = False, attack_free: bool = False
) -> Any:
    """Replay ``capture`` collecting window scores, then compute the site calibration
    (``attack_free``: the capture is vouched to hold no attack, see agent.calibration)."""
    import numpy as np

    from agent import calibration as cal
    from agent import classifier_unknown
    from agent.config import ConfigError
    from agent.replay import replay_capture
    from agent.stream_start import START_WINDOWS

    parts: list[tuple[Any, Any, Any, Any, Any, Any]] = []
    try:
        result = replay_capture(
            bundle, capture, on_scores=lambda *row: parts.append(row), progress=progress
        )
    except (OSError, ValueError) as exc:
        raise ConfigError(f"--capture {capture}: {exc}") from None
    if not parts:
        raise ConfigError(f"--capture {capture}: no windows to learn from")
    ends = np.concatenate([p[0] for p in parts])
    busy = np.concatenate([p[3] for p in parts])
    probabilities = np.concatenate([p[1] for p in parts])
    has_benign = parts[0][2] is not None
    anomaly = np.concatenate([p[2] for p in parts]) if has_benign else None
    numbers = np.concatenate([p[4] for p in parts])
    early = np.concatenate([p[5] for p in parts])  # the stream's start period
    manifest = bundle.manifest
    step_s = manifest.step.size_ns / 1e9 if manifest.step.kind == "time" else 0.0
    seconds = float(result.windows_scored * step_s) or (ends[-1] - ends[0]) / 1e9
    from agent.decide import DecisionPolicy
    from agent.inference import Debounce, policy_for
    from agent.openset import load_benign_model

    benign = load_benign_model(bundle)
    policy: DecisionPolicy = policy_for(bundle, Debounce(), open_set=benign is not None)
    n = len(manifest.labels)  # the classifier's; a decided ``unknown`` comes after them
    own_unknown = benign is None and len(policy.labels) > n
    try:
        return cal.compute(
            bundle_id=manifest.bundle_id,
            labels=policy.labels[:n],
            watched=[i for i in policy.watched() if i < n],
            signed=policy.thresholds[:n],
            probabilities=probabilities,
            anomaly=anomaly,
            anomaly_floor=benign.spec.threshold if benign is not None else None,
            seconds=seconds,
            target_per_day=target,
            window=manifest.window,
            total=result.windows_scored,
            in_detection=busy,
            start_anomaly=anomaly[early] if anomaly is not None else None,
            unknown_edge=classifier_unknown.EDGE if own_unknown else None,
            start_probabilities=probabilities[numbers < START_WINDOWS],
            start_ends=ends[early],
            steady=~early,
            attack_free=attack_free,
        )
    except cal.CalibrationError as exc:
        raise ConfigError(str(exc)) from None


def load_for_replay(path: Path | None, bundle_id: str) -> Any:
    """The ``--calibration`` file for a replay; ConfigError when unusable or for another bundle."""
    if path is None:
        return None
    from agent import calibration as cal
    from agent.config import ConfigError

    try:
        found = cal.load(path)
    except cal.CalibrationError as exc:
        raise ConfigError(f"--calibration: {exc}") from None
    if found.bundle_id != bundle_id:
        raise ConfigError(f"--calibration: made for bundle {found.bundle_id}, not {bundle_id}")
    return found


def _reset(args: argparse.Namespace) -> int:
    from agent import calibration as cal
    from agent.config import ConfigError, load_config

    if args.config is None:
        raise ConfigError("calibrate --reset: --config F required (it names the state directory)")
    config = load_config(args.config)
    names = [m.name for m in config.models]
    if args.model is not None and args.model not in names:
        raise ConfigError(f"--model: unknown model {args.model!r} (valid: {', '.join(names)})")
    removed = 0
    for name in [args.model] if args.model else names:
        path = cal.state_path(config.agent.state_dir, name)
        try:
            path.unlink()
            removed += 1
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise ConfigError(f"calibrate --reset: {path}: {exc.strerror}") from None
    print(  # noqa: T201 - the CLI talks to its user
        f"removed {removed} calibration file(s); restart the agent to start over", file=sys.stderr
    )
    return 0
