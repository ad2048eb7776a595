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

import json
import re
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

    def __init__(self, strategy: Any) -> None:
        import tensorflow as tf

        self._strategy = strategy
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

        return np.asarray(self._sum(tf.constant(np.asarray(values, np.float64))).numpy())

    def gather(self, values: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Every worker's ``values`` (same shape everywhere) stacked on a new first axis."""
        import tensorflow as tf

        local = np.asarray(values, np.float64)[None, ...]
        return np.asarray(self._gather(tf.constant(local)).numpy())

    def barrier(self) -> None:
        """Return once every worker got here: the chief's writes end before anyone exits."""
        self.sum(np.zeros(1))
