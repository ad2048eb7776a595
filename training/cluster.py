"""Which TensorFlow workers train together, and the few collectives training needs besides fit.

A cluster spec is JSON, inline or in a file: ``{"worker": ["host:port", ...]}``, or a whole
``TF_CONFIG`` document (``{"cluster": {"worker": [...]}, "task": {"type": "worker", "index":
i}}``), whose task index is this worker's unless ``--worker-index`` says otherwise. Worker 0 is
the chief. Only ``worker`` jobs: MultiWorkerMirroredStrategy is synchronous data parallelism,
so there is no parameter server and no separate chief job.

The strategy is built from a ``SimpleClusterResolver`` rather than the ``TF_CONFIG`` variable,
so the process environment (and any child it starts) is left as the user set it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from training.config import ConfigError

_ADDRESS = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):([0-9]{1,5})$")
MAX_WORKERS = 1024
MAX_SPEC_BYTES = 1 << 20


@dataclass(frozen=True)
class Cluster:
    """The workers' ``host:port`` addresses and this process's index among them."""

    workers: tuple[str, ...]
    index: int

    @property
    def chief(self) -> bool:
        """Worker 0 writes the model directory; the others write nothing."""
        return self.index == 0

    @property
    def size(self) -> int:
        """How many workers train together."""
        return len(self.workers)


def read_cluster(spec: str, index: int | None) -> Cluster:
    """The cluster of ``spec`` (JSON text or a JSON file) with this worker's index."""
    text = spec if spec.lstrip().startswith("{") else _read_file(spec)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"train.cluster_spec: not JSON ({exc.msg} at line {exc.lineno})"
        ) from None
    if not isinstance(data, dict):
        raise ConfigError("train.cluster_spec: must be a JSON object")
    cluster = data.get("cluster", data)
    if not isinstance(cluster, dict) or set(cluster) != {"worker"}:
        jobs = sorted(cluster) if isinstance(cluster, dict) else cluster
        raise ConfigError(f"train.cluster_spec: needs exactly one job, 'worker', got {jobs!r}")
    workers = cluster["worker"]
    if not isinstance(workers, list) or not 1 <= len(workers) <= MAX_WORKERS:
        raise ConfigError(
            f"train.cluster_spec: 'worker' must list 1..{MAX_WORKERS} 'host:port' addresses"
        )
    for address in workers:
        match = _ADDRESS.match(address) if isinstance(address, str) else None
        if match is None or not 1 <= int(match.group(2)) <= 65535:
            raise ConfigError(f"train.cluster_spec: {address!r} is not a 'host:port' address")
    if len(set(workers)) != len(workers):
        raise ConfigError("train.cluster_spec: a worker address is listed twice")
    if index is None:
        index = _task_index(data)
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(workers):
        raise ConfigError(
            f"train.worker_index: must be 0..{len(workers) - 1} for {len(workers)} workers, "
            f"got {index!r}"
        )
    return Cluster(tuple(workers), index)


def _read_file(path: str) -> str:
    """The spec file's text, bounded; a missing or unreadable file is a config error."""
    try:
        with Path(path).open("rb") as handle:
            raw = handle.read(MAX_SPEC_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"train.cluster_spec: cannot read {path!r} ({exc.strerror})") from None
    if len(raw) > MAX_SPEC_BYTES:
        raise ConfigError(f"train.cluster_spec: {path!r} is over {MAX_SPEC_BYTES} bytes")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"train.cluster_spec: {path!r} is not UTF-8") from None


def _task_index(data: dict[str, Any]) -> Any:
    """The index of a TF_CONFIG document's ``task``; without one the index must be given."""
    task = data.get("task")
    if task is None:
        raise ConfigError(
            "train.worker_index: required (--worker-index N) when the spec has no task"
        )
    if not isinstance(task, dict) or task.get("type", "worker") != "worker":
        raise ConfigError(f"train.cluster_spec: task must be a 'worker' task, got {task!r}")
    return task.get("index")


class ClusterError(RuntimeError):
    """The workers could not train together: TensorFlow's runtime failed between them."""


def strategy_for(cluster: Cluster) -> Any:
    """A MultiWorkerMirroredStrategy over the cluster (CPU, gRPC between workers)."""
    import tensorflow as tf

    resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
        tf.train.ClusterSpec({"worker": list(cluster.workers)}),
        task_type="worker",
        task_id=cluster.index,
        rpc_layer="grpc",
    )
    options = tf.distribute.experimental.CommunicationOptions(
        implementation=tf.distribute.experimental.CommunicationImplementation.RING
    )
    return tf.distribute.MultiWorkerMirroredStrategy(
        cluster_resolver=resolver, communication_options=options
    )


class Collectives:
    """Sums and gathers of small numpy arrays across the workers (every worker must call)."""

    def __init__(self, strategy: Any, watchdog: Watchdog | None = None) -> None:
        import tensorflow as tf

        self.strategy = strategy
        self.watchdog = watchdog
        # traced once per shape: eager collectives warn and are slow
        self._sum = tf.function(
            lambda v: strategy.reduce(
                tf.distribute.ReduceOp.SUM, strategy.run(tf.identity, args=(v,)), axis=None
            )
        )
        self._gather = tf.function(
            lambda v: strategy.gather(strategy.run(tf.identity, args=(v,)), axis=0)
        )

    def sum(self, values: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """The element-wise sum of every worker's ``values`` (same shape everywhere)."""
        import tensorflow as tf

        total = np.asarray(self._sum(tf.constant(np.asarray(values, np.float64))).numpy())
        self.alive()
        return total

    def gather(self, values: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Every worker's ``values`` (same shape everywhere) stacked on a new first axis."""
        import tensorflow as tf

        local = np.asarray(values, np.float64)[None, ...]
        everyone = np.asarray(self._gather(tf.constant(local)).numpy())
        self.alive()
        return everyone

    def alive(self) -> None:
        """The workers just met: the watchdog's clock restarts."""
        if self.watchdog is not None:
            self.watchdog.alive()

    def barrier(self) -> None:
        """Return once every worker got here: the chief's writes end before anyone exits."""
        self.sum(np.zeros(1))


# The watchdog's own process: it reads a byte per sign of progress on stdin, and when none
# came for TIMEOUT seconds says why on stderr and kills the worker; EOF (the worker ended,
# however it ended) ends it too.
_WATCHDOG = """
import os, select, signal, sys
timeout, worker, message = float(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
signal.signal(signal.SIGINT, signal.SIG_IGN)
while True:
    ready, _, _ = select.select([0], [], [], timeout)
    if not ready:
        sys.stderr.write(message + "\\n")
        sys.stderr.flush()
        os.kill(worker, signal.SIGKILL)
        break
    if not os.read(0, 4096):
        break
"""


class Watchdog:
    """Kills this worker, after one line on stderr, when the workers make no progress for
    ``timeout`` seconds.

    Without it a worker whose peers never start, or died, waits inside TensorFlow's gRPC
    set-up and collectives with no deadline, holding the GIL (so no thread of this process
    runs) and handling SIGTERM itself (so ``timeout`` cannot end it either): hence a separate
    small process. Every collective and training step calls ``alive``; its clock restarts.
    """

    def __init__(self, cluster: Cluster, timeout: float) -> None:
        import subprocess
        import sys

        message = (
            f"iotids train: worker {cluster.index} of {cluster.size}: no progress with the other "
            f"workers ({', '.join(cluster.workers)}) for {timeout:g} s (train.cluster_timeout): "
            "a worker did not start or has stopped; stopped this one"
        )
        self._last = 0.0
        self._process = subprocess.Popen(
            [sys.executable, "-c", _WATCHDOG, str(timeout), str(os.getpid()), message],
            stdin=subprocess.PIPE,
            close_fds=True,
        )
        self.alive()

    def alive(self) -> None:
        """The workers just made progress together (told at most once a second)."""
        now = time.monotonic()
        if now - self._last >= 1.0 and self._process.stdin is not None:
            self._last = now
            with contextlib.suppress(OSError):  # a watchdog gone has nothing left to tell
                self._process.stdin.write(b".")
                self._process.stdin.flush()

    def stop(self) -> None:
        """The run is over (or failed by itself): the watchdog ends."""
        if self._process.stdin is not None:
            with contextlib.suppress(OSError):
                self._process.stdin.close()
        self._process.wait(timeout=10)
