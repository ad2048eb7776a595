"""A folder of captures featurized in parallel: worker processes here, or a Ray cluster.

Each capture is featurized on its own, by the same streamed path as one file
(``iter_capture`` chunk by chunk into one ``TrafficFeaturizer``), so a capture's steps and
windows are identical whichever worker ran it; only the order of work changes, and results
come back in file-name order. A worker holds one capture's steps at a time: with ``--out``
they are written beside the others as ``<name>.npz`` and only a summary travels back, so the
parent's memory does not grow with the folder.

Ray (``pip install 'iotids[cluster]'``) is imported only when a Ray address is given: the
gateway never needs it. On a multi-machine cluster every worker must see the folder at the same
path (a shared filesystem).
"""

from __future__ import annotations

import hashlib
import multiprocessing
import resource
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

CAPTURE_SUFFIXES: Final = (".pcap", ".pcapng", ".cap")
INSTALL_CLUSTER: Final = "pip install 'iotids[cluster]'"


class BatchError(Exception):
    """The folder or the engine cannot be used; the message names the fix."""


@dataclass(frozen=True)
class Job:
    """One capture to featurize."""

    capture: str
    step: str
    window: int
    out: str | None  # where to save its .npz, None for a summary only


def find_captures(folder: Path) -> list[Path]:
    """The capture files directly in ``folder``, by name (sub-folders are not descended)."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in CAPTURE_SUFFIXES)


def featurize_job(job: Job) -> dict[str, Any]:
    """Featurize one capture (the single-file path); its summary, with a digest of its steps."""
    import numpy as np

    from agent.features.capture import iter_capture
    from agent.features.steps import StepSpec, sliding_windows
    from agent.features.traffic import Steps, TrafficFeaturizer

    step = StepSpec.parse(job.step)
    featurizer = TrafficFeaturizer(step)
    parts: list[Steps] = []
    packets = 0
    malformed: Counter[str] = Counter()
    try:
        for chunk in iter_capture(job.capture):
            parts.append(featurizer.push(chunk.packets))
            packets += len(chunk.packets)
            malformed.update(chunk.malformed)
    except (OSError, ValueError) as exc:
        return {"capture": job.capture, "error": str(exc)}
    steps = Steps.concat([*parts, featurizer.flush()])
    digest = hashlib.sha256()
    for array in (steps.values, steps.start_ns, steps.packets):
        digest.update(np.ascontiguousarray(array).tobytes())
    summary: dict[str, Any] = {
        "capture": job.capture,
        "packets": packets,
        "malformed": sum(malformed.values()),
        "steps": len(steps),
        "windows": int(sliding_windows(steps.values, job.window).shape[0]),
        "digest": digest.hexdigest(),
        "worker_peak_rss_kb": _peak_rss_kb(),
    }
    if job.out is not None:
        with open(job.out, "wb") as fh:
            save_steps(fh, steps, step, job.window)
        summary["out"] = job.out
    return summary


def _peak_rss_kb() -> int:
    """This process's peak RSS in kB: VmHWM where /proc has it (getrusage's ru_maxrss survives
    exec, so a spawned worker would report its parent's peak), else ru_maxrss."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def jobs_for(folder: Path, step: str, window: int, out: Path | None) -> list[Job]:
    """One job per capture in ``folder``; ``out`` (a folder) gets ``<capture name>.npz``."""
    captures = find_captures(folder)
    if not captures:
        raise BatchError(f"{folder}: no {', '.join(CAPTURE_SUFFIXES)} files in it")
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    return [
        Job(str(p), step, window, str(out / f"{p.name}.npz") if out is not None else None)
        for p in captures
    ]


def _counted(results: Iterable[dict[str, Any]], done: Callable[[], None]) -> list[dict[str, Any]]:
    found = []
    for result in results:
        found.append(result)
        done()
    return found


def run_local(
    jobs: Sequence[Job], workers: int, done: Callable[[], None] = lambda: None
) -> list[dict[str, Any]]:
    """``workers`` processes on this machine (1: in this process, the single-file path);
    ``done`` is called as each capture finishes."""
    if workers <= 1:
        return _counted((featurize_job(job) for job in jobs), done)
    # spawn, not fork: a forked child would inherit whatever threads and memory the parent
    # holds; a fresh interpreter per worker keeps each one's memory its own.
    context = multiprocessing.get_context("spawn")
    with context.Pool(min(workers, len(jobs))) as pool:
        return _counted(pool.imap(featurize_job, jobs), done)


def run_ray(
    jobs: Sequence[Job], address: str, workers: int, done: Callable[[], None] = lambda: None
) -> list[dict[str, Any]]:
    """The jobs as Ray tasks (one CPU each, at most ``workers`` at a time; 0: no cap)."""
    try:
        import ray
    except ImportError as exc:
        raise BatchError(f"--ray needs Ray: {INSTALL_CLUSTER}") from exc
    started = not ray.is_initialized()
    if started:
        ray.init(address=None if address == "local" else address, log_to_driver=False)
    try:
        task: Callable[..., Any] = ray.remote(num_cpus=1)(featurize_job).remote
        pending: list[Any] = []
        results: list[Any] = []
        for job in jobs:  # a bounded number in flight: the driver never queues the whole folder
            if workers and len(pending) >= workers:
                results.append(ray.get(pending.pop(0)))
                done()
            pending.append(task(job))
        results.extend(_counted((ray.get(p) for p in pending), done))
        return [dict(r) for r in results]
    finally:
        if started:
            ray.shutdown()


def run_folder(
    folder: Path, step: str, window: int, out: Path | None, workers: int, ray: str | None
) -> dict[str, Any]:
    """Featurize every capture in ``folder``; the totals and each capture's summary."""
    import time

    from agent.features.steps import StepSpec
    from agent.progress import Progress

    StepSpec.parse(step)  # a bad step fails here, once, not in every worker
    if workers < 0 or (workers == 0 and ray is None):
        raise BatchError(f"--workers must be >= 1 (0 only with --ray: no cap), got {workers}")
    jobs = jobs_for(folder, step, window, out)
    began = time.perf_counter()
    with Progress(f"featurizing {folder.name}", len(jobs), "captures") as bar:

        def done() -> None:
            bar.update(advance=1)

        if ray is not None:
            results = run_ray(jobs, ray, workers, done)
        else:
            results = run_local(jobs, workers, done)
    seconds = time.perf_counter() - began
    packets = sum(int(r.get("packets", 0)) for r in results)
    return {
        "folder": str(folder),
        "engine": f"ray ({ray})" if ray is not None else "processes",
        "workers": workers,
        "captures": len(results),
        "failed": sum("error" in r for r in results),
        "packets": packets,
        "steps": sum(int(r.get("steps", 0)) for r in results),
        "windows": sum(int(r.get("windows", 0)) for r in results),
        "seconds": seconds,
        "packets_per_s": packets / seconds if seconds > 0 else 0.0,
        "worker_peak_rss_kb": max(
            (int(r.get("worker_peak_rss_kb", 0)) for r in results), default=0
        ),
        "results": results,
    }


def save_steps(fh: Any, steps: Any, step: Any, window: int) -> None:
    """The ``.npz`` of ``iotids features --out``: steps, their times and the schema they follow."""
    import numpy as np

    from agent.features.traffic import TRAFFIC_V1

    np.savez_compressed(
        fh,
        steps=steps.values,
        start_ns=steps.start_ns,
        packets=steps.packets,
        columns=np.array(TRAFFIC_V1.columns),
        schema_id=np.array(TRAFFIC_V1.schema_id),
        feature_set=np.array(TRAFFIC_V1.id),
        step_kind=np.array(step.kind),
        step_size=np.array(step.size),
        # a packets-or-time step's time limit: without it "20p/1s" would read back as "20p"
        step_seconds=np.array(step.seconds),
        window=np.array(window),
    )
