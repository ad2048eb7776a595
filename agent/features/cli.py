"""``iotids features``: a capture to traffic-v1 steps and windows, summarised or saved."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections import Counter
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def configure(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``iotids features``."""
    parser.add_argument(
        "capture", type=Path, help="a pcap or pcapng file (format by magic number), or a folder"
    )
    parser.add_argument(
        "--step",
        default="1s",
        help="step: seconds ('1s'), packets ('100p') or whichever first ('20p/1s'); default 1s",
    )
    parser.add_argument("--window", type=int, default=16, help="steps per window (default 16)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument(
        "-o",
        "--out",
        type=Path,
        help="save steps, timestamps and schema to this .npz (a folder: a dir)",
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="a folder: captures featurized in N processes"
    )
    parser.add_argument(
        "--ray",
        metavar="ADDRESS",
        help="a folder: run on the Ray cluster at ADDRESS ('local' starts one here)",
    )


def _fail(message: str) -> int:
    print(f"iotids features: {message}", file=sys.stderr)  # noqa: T201 - the CLI talks to its user
    return 2


def _run_folder(args: argparse.Namespace) -> int:
    """A folder of captures, in parallel; a summary line per capture and the totals."""
    from agent.features.batch import BatchError, run_folder

    try:
        summary = run_folder(args.capture, args.step, args.window, args.out, args.workers, args.ray)
    except BatchError as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(f"{args.capture}: {exc}")
    if args.json:
        print(json.dumps(summary, indent=2))  # noqa: T201
        return 1 if summary["failed"] else 0
    for result in summary["results"]:
        what = result.get("error") or f"{result['packets']} packets -> {result['steps']} steps"
        print(f"{Path(result['capture']).name}: {what}")  # noqa: T201
    for key, value in summary.items():
        if key != "results":
            print(f"{key:>20}: {value}")  # noqa: T201
    return 1 if summary["failed"] else 0


def run(args: argparse.Namespace) -> int:
    """Read the capture, featurize it, print a summary; 2 on a bad path, step or capture."""

    from agent.features.capture import iter_capture
    from agent.features.steps import StepSpec, sliding_windows
    from agent.features.traffic import TRAFFIC_V1, Steps, TrafficFeaturizer
    from agent.progress import Progress

    try:
        step = StepSpec.parse(args.step)
    except ValueError as exc:
        return _fail(f"--step {args.step!r}: {exc}")
    if args.window < 1:
        return _fail(f"--window must be >= 1, got {args.window}")
    if args.capture.is_dir():
        return _run_folder(args)
    if not args.capture.is_file():
        return _fail(f"{args.capture}: no such file")
    # streamed chunk by chunk: memory holds one chunk and the steps, whatever the file size
    featurizer = TrafficFeaturizer(step)
    parts: list[Steps] = []
    packets = frames = 0
    malformed: Counter[str] = Counter()
    truncated = False
    try:
        with Progress(f"reading {args.capture.name}", args.capture.stat().st_size, "B") as bar:
            for chunk in iter_capture(args.capture, progress=bar.update):
                parts.append(featurizer.push(chunk.packets))
                packets += len(chunk.packets)
                frames += chunk.frames
                malformed.update(chunk.malformed)
                truncated = truncated or chunk.truncated_file
    except (OSError, ValueError) as exc:
        return _fail(f"{args.capture}: {exc}")
    steps = Steps.concat([*parts, featurizer.flush()])
    windows = sliding_windows(steps.values, args.window).shape[0]
    summary: dict[str, Any] = {
        "capture": str(args.capture),
        "packets": packets,
        "frames": frames,
        "malformed": sum(malformed.values()),
        "malformed_by_reason": dict(sorted(malformed.items())),
        "truncated_file": truncated,
        "steps": len(steps),
        "windows": windows,
        "window": args.window,
        "features": TRAFFIC_V1.width,
        "feature_set": TRAFFIC_V1.id,
        "schema_id": TRAFFIC_V1.schema_id,
        "step": step.to_dict(),
    }
    if args.out is not None:
        try:
            from agent.features.batch import save_steps

            with args.out.open("wb") as fh:
                save_steps(fh, steps, step, args.window)
        except OSError as exc:
            return _fail(f"--out {args.out}: {exc}")
        summary["out"] = str(args.out)
    logger.debug("featurized %s: %d packets -> %d steps", args.capture, packets, len(steps))
    if args.json:
        print(json.dumps(summary, indent=2))  # noqa: T201
    else:
        for key, value in summary.items():
            print(f"{key:>20}: {value}")  # noqa: T201
    return 0
