"""Training across TensorFlow workers: MultiWorkerMirroredStrategy over streamed feature shards.

Keras 3 (3.15) cannot run ``model.fit`` under ``tf.distribute.MultiWorkerMirroredStrategy``:
its TensorFlow trainer hands the per-replica batch to ops that take one tensor and fails
("Attempt to convert a value (PerReplica...)"), the failure TensorFlow's own multi-worker Keras
tutorial hits since TF 2.16. ``keras.distribution`` is for JAX. So the fit here is a custom
training loop: ``strategy.run`` of one gradient step per replica, gradients all-reduced over
gRPC by the strategy's collectives, the same Keras model and optimizer as ``iotids train``.

Every worker reads only its shard of recordings (``training.feature_shards``) through
``tf.data``; the global batch (``batch_size``) is split evenly between workers, each worker's
stream repeats so all take the same number of steps an epoch (the collectives need it).
What needs the whole data is summed or gathered, never read twice: windows per class (class
weights, split counts), a uniform sample of training steps (the scaler), each epoch's
validation confusion matrix and loss (early stopping: every worker takes the same decision
from the same sums) and the test confusion matrix (the metrics). The chief (worker 0) writes
the model directory; the others write nothing anywhere (best weights are kept in memory, no
checkpoints), and all wait at a final barrier so none exits while another still talks to it.
"""

from __future__ import annotations

import json
import logging
import math
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from training import feature_shards as shards
from training import split
from training.cluster import (
    Cluster,
    ClusterError,
    Collectives,
    Watchdog,
    read_cluster,
    strategy_for,
)
from training.config import ConfigError, TrainConfig
from training.datasets.base import BENIGN_NAMES
from training.fit import SMALL_VALIDATION
from training.preprocess import Scaler

logger = logging.getLogger(__name__)

SAMPLE_ROWS = 50_000  # training steps the scaler is fit on, over all workers
TEST_KEEP = 20_000  # the chief's scaled test windows saved to data/test.npz for the converters
STEPS_PER_CALL = 32  # training steps per traced call (and per sign of life to the watchdog)
WORKER_FIELDS = ("index", "recordings", "steps_read", "train", "val", "test", "peak_rss_kb")


@dataclass
class Run:
    """What every part of one worker's run shares."""

    config: TrainConfig
    cluster: Cluster
    labels: list[str]
    benign: int | None
    mine: list[shards.Recording]
    window: int
    padding: str
    spec: Any = None
    scaler: Scaler | None = None
    sample: npt.NDArray[np.float32] | None = None  # every worker's training-step sample


def train_multiworker(config: TrainConfig) -> dict[str, Any]:
    """Train on this worker of the cluster; the chief writes ``config.out``."""
    if config.model in ("gru-anomaly", "gru-forecast") or config.seeds > 1 or config.stream:
        raise ConfigError("train.cluster_spec: across workers trains one seed of cnn/lstm/gru/dnn")
    _check_mapping(config.mapping)
    if config.cluster_spec is None:
        raise ConfigError("train.cluster_spec: required to train on the features dataset")
    cluster = read_cluster(config.cluster_spec, config.worker_index)
    found = shards.recordings(config.path)
    labels = shards.labels_of(found)
    run = Run(
        config,
        cluster,
        labels,
        0 if labels[0].lower() in BENIGN_NAMES else None,
        shards.deal(found, cluster.size)[cluster.index],
        1 if config.model == "dnn" else config.window,
        config.padding if config.model != "dnn" else "none",
    )
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(config.seed)
    watchdog = Watchdog(cluster, config.cluster_timeout)
    try:
        return _train(run, Collectives(strategy_for(cluster), watchdog))
    except tf.errors.OpError as exc:
        first = str(exc.message).strip().splitlines()[0] if exc.message else type(exc).__name__
        raise ClusterError(f"worker {cluster.index} of {cluster.size}: {first}") from None
    finally:
        watchdog.stop()


def _train(run: Run, collectives: Collectives) -> dict[str, Any]:
    """The run once the workers met: survey, scaler, fit, test, the chief's writing."""
    config, cluster, labels = run.config, run.cluster, run.labels
    strategy = collectives.strategy
    local = shards.survey(
        run.mine,
        labels,
        run.window,
        run.padding,
        SAMPLE_ROWS // cluster.size,
        config.seed + cluster.index,
        collectives.alive,
    )
    logger.info(
        "worker %d of %d: %d recordings, %d steps read, windows %s",
        cluster.index,
        cluster.size,
        len(run.mine),
        local.steps_read,
        dict(zip(split.SPLITS, local.counts.sum(axis=1).astype(int).tolist(), strict=True)),
    )
    layouts = collectives.gather(local.layout.code())
    if not (layouts == layouts[0]).all():
        raise ConfigError("train.path: the workers' recordings differ in feature set or step")
    counts = collectives.sum(local.counts)
    if counts[0].sum() == 0 or counts[2].sum() == 0:
        raise ConfigError("train: the split left no training or no test windows (window too long?)")
    run.sample = _gathered_sample(collectives, local.sample, SAMPLE_ROWS // cluster.size)
    run.scaler = Scaler.fit(run.sample, kind=run.config.scaler)
    model, optimizer = _build(run, strategy)
    run.sample = None
    started = time.perf_counter()
    history, monitor = _fit(run, strategy, collectives, model, optimizer, counts)
    train_seconds = time.perf_counter() - started
    confusion, _ = _local_scores(run, model, "test", collectives.alive)
    metrics = _metrics(collectives.sum(confusion), labels, run.benign)
    workers = collectives.gather(_worker_row(run, local))
    summary = {
        "model": metrics,
        "history": history,
        "early_stopping": monitor,
        "train_seconds": round(train_seconds, 2),
        "parameters": int(model.count_params()),
        "windows": {s: int(counts[i].sum()) for i, s in enumerate(split.SPLITS)},
        "cluster": {"workers": cluster.size, "index": cluster.index, "chief": cluster.chief},
        "workers": [
            dict(zip(WORKER_FIELDS, (int(v) for v in row), strict=True)) for row in workers
        ],
        "warnings": split.warn_small(_counts(counts, labels)),
    }
    if cluster.chief:
        from training.multiworker_save import save_chief

        save_chief(run, model, summary, counts)
    collectives.barrier()
    return summary


def _check_mapping(mapping: str | None) -> None:
    """Recordings are labelled by name: a mapping's [[rule]] tables cannot apply to them."""
    if mapping is None:
        return
    from training.datasets.captures import read_rules

    if read_rules(mapping):
        raise ConfigError(
            "train.mapping: [[rule]] tables label captures' packets; recordings of `iotids "
            "features` are labelled by name, so only the [families] table applies here"
        )


def _gathered_sample(
    collectives: Collectives, sample: npt.NDArray[np.float32], rows: int
) -> npt.NDArray[np.float32]:
    """Every worker's training-step sample, padded to ``rows`` so all gather the same shape."""
    padded = np.zeros((rows, sample.shape[1] + 1), np.float64)
    padded[: len(sample), :-1] = sample[:rows]
    padded[: len(sample), -1] = 1.0  # the row is real
    everyone = collectives.gather(padded).reshape(-1, sample.shape[1] + 1)
    return everyone[everyone[:, -1] == 1.0, :-1].astype(np.float32)


def _build(run: Run, strategy: Any) -> tuple[Any, Any]:
    """The model and optimizer, their variables mirrored on every worker."""
    import keras

    from training.models import ModelSpec, build, encoding_knots, encoding_width, fit_encoding
    from training.train import ENCODE_MODELS

    config = run.config
    assert run.scaler is not None
    assert run.sample is not None
    features = len(run.scaler.min)
    knots: list[Any] = []
    if config.model in ENCODE_MODELS:
        # the scaler's own sample, scaled: the same knots on every worker
        knots = encoding_knots(run.scaler.transform(run.sample))
    run.spec = ModelSpec(
        config.model,
        run.window,
        features,
        len(run.labels),
        config.units,
        config.dropout,
        encoding_width(knots),
        config.members if config.model == "dnn" else 1,
    )
    with strategy.scope():
        model = build(run.spec)
        if knots:
            fit_encoding(model, knots)
        optimizer = keras.optimizers.Adam(config.learning_rate)
        optimizer.build(model.trainable_variables)
    return model, optimizer


def _to_input(run: Run) -> Any:
    """(N, T, F) windows to the model's input shape."""
    from training.train import to_model_input

    return lambda w: to_model_input(run.spec, w)


def _class_weights(run: Run, train_counts: npt.NDArray[np.float64]) -> npt.NDArray[np.float32]:
    """Balanced class weights from the summed counts, to ``class_weight_power``."""
    present = train_counts > 0
    total, k = train_counts.sum(), max(1, int(present.sum()))
    balanced = np.where(present, total / (k * np.maximum(train_counts, 1)), 0.0)
    return (balanced**run.config.class_weight_power).astype(np.float32)


def _monitor(counts: npt.NDArray[np.float64]) -> str:
    """What early stopping watches, chosen as ``iotids train`` chooses it."""
    train, val = counts[0], counts[1]
    if val.sum() == 0:
        return "loss"
    if (val[train > 0] < SMALL_VALIDATION).any():
        return "val_loss"
    return "val_macro_f1"


def _train_data(run: Run, strategy: Any, per_replica: int) -> Any:
    """Each worker's own shard through tf.data: stream, shuffle, repeat, batch."""
    import tensorflow as tf

    assert run.scaler is not None
    shape = tuple(run.spec.input_shape)
    to_input = _to_input(run)

    def dataset(context: Any) -> Any:
        data = tf.data.Dataset.from_generator(
            lambda: shards.batches(
                run.mine, "train", run.labels, run.window, run.padding, run.scaler, to_input
            ),
            output_signature=(
                tf.TensorSpec((None, *shape), tf.float32),
                tf.TensorSpec((None,), tf.int64),
            ),
        ).unbatch()
        data = data.shuffle(10_000, seed=run.config.seed + run.cluster.index).repeat()
        options = tf.data.Options()
        # the shard is this worker's recordings already: tf.data must not shard it again
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
        data = data.with_options(options)
        return data.batch(per_replica, drop_remainder=True).prefetch(tf.data.AUTOTUNE)

    return strategy.distribute_datasets_from_function(dataset)


def _fit(
    run: Run,
    strategy: Any,
    collectives: Collectives,
    model: Any,
    optimizer: Any,
    counts: npt.NDArray[np.float64],
) -> tuple[dict[str, list[float]], str]:
    """Synchronous data-parallel epochs with early stopping as ``iotids train`` stops."""
    import tensorflow as tf

    config = run.config
    per_replica = max(1, config.batch_size // run.cluster.size)
    global_batch = per_replica * run.cluster.size
    steps = max(1, math.ceil(counts[0].sum() / global_batch))
    weights = tf.constant(_class_weights(run, counts[0]))
    n_classes = len(run.labels)
    loss_of = tf.keras.losses.CategoricalCrossentropy(reduction="none")

    def replica_step(x: Any, y: Any) -> Any:
        with tf.GradientTape() as tape:
            predicted = model(x, training=True)
            per_window = loss_of(tf.one_hot(y, n_classes), predicted) * tf.gather(weights, y)
            loss = tf.reduce_sum(per_window) / global_batch
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return loss

    @tf.function  # type: ignore[untyped-decorator]
    def train_steps(iterator: Any, count: Any) -> Any:
        # several steps a call, this worker's loss summed here and all-reduced once an epoch:
        # the gradients' all-reduce is then the only collective of a step, and Python and
        # the host see one call per STEPS_PER_CALL steps
        total = tf.constant(0.0)
        for _ in tf.range(count):
            x, y = next(iterator)
            per_replica = strategy.run(replica_step, args=(x, y))
            total += tf.add_n(strategy.experimental_local_results(per_replica))
        return total

    monitor = _monitor(counts)
    history: dict[str, list[float]] = {"loss": []}
    best, best_weights, wait = None, None, 0
    start_from = min(config.min_epochs, config.epochs) - 1
    iterator = iter(_train_data(run, strategy, per_replica))
    for epoch in range(config.epochs):
        local = 0.0
        for first in range(0, steps, STEPS_PER_CALL):
            local += float(train_steps(iterator, tf.constant(min(STEPS_PER_CALL, steps - first))))
            collectives.alive()
        loss = float(collectives.sum([local])[0]) / steps
        history["loss"].append(loss)
        if counts[1].sum():
            confusion, val_loss = _local_scores(run, model, "val", collectives.alive)
            summed = collectives.sum(np.append(confusion.ravel(), val_loss))
            history.setdefault("val_loss", []).append(float(summed[-1] / counts[1].sum()))
            cm = summed[:-1].reshape(n_classes, n_classes)
            history.setdefault("val_macro_f1", []).append(_macro_f1(cm))
        logger.info(
            "epoch %d/%d: %s",
            epoch + 1,
            config.epochs,
            ", ".join(f"{k} {v[-1]:.4f}" for k, v in history.items()),
        )
        if epoch < start_from:
            continue
        value = history[monitor][-1] * (-1.0 if monitor.endswith("macro_f1") else 1.0)
        if best is None or value < best:
            best, best_weights, wait = value, model.get_weights(), 0
        else:
            wait += 1
            if wait >= config.patience:
                logger.info("early stop after epoch %d (%s)", epoch + 1, monitor)
                break
    if best_weights is not None:
        model.set_weights(best_weights)
    return history, monitor


def _local_scores(
    run: Run, model: Any, which: str, alive: Callable[[], None] = lambda: None
) -> tuple[npt.NDArray[np.float64], float]:
    """This worker's confusion matrix and summed cross-entropy on one split of its shard."""
    n = len(run.labels)
    confusion = np.zeros((n, n), np.float64)
    loss = 0.0
    for x, y in shards.batches(
        run.mine, which, run.labels, run.window, run.padding, run.scaler, _to_input(run)
    ):
        p = np.asarray(model(x, training=False), np.float64)
        alive()
        np.add.at(confusion, (y, p.argmax(axis=1)), 1.0)
        loss -= float(np.log(np.clip(p[np.arange(len(y)), y], 1e-7, 1.0)).sum())
    return confusion, loss


def _macro_f1(confusion: npt.NDArray[np.float64]) -> float:
    """Macro-F1 over the classes in the truth or the predictions (as sklearn's ``f1_score``)."""
    tp = np.diag(confusion)
    truth, predicted = confusion.sum(axis=1), confusion.sum(axis=0)
    present = (truth + predicted) > 0
    f1 = np.where(present, 2 * tp / np.maximum(truth + predicted, 1), 0.0)
    return float(f1[present].mean()) if present.any() else 0.0


def _metrics(
    confusion: npt.NDArray[np.float64], labels: list[str], benign: int | None
) -> dict[str, Any]:
    """The report's figures from the summed confusion matrix (every one of them derives from it)."""
    from training.evaluate import classification_metrics

    n = len(labels)
    cells = np.repeat(np.arange(n * n), confusion.ravel().astype(np.int64))
    return classification_metrics(cells // n, cells % n, labels, benign)


def _counts(counts: npt.NDArray[np.float64], labels: list[str]) -> dict[str, dict[str, int]]:
    """Windows per split per class, as a dict (the report's and warn_small's form)."""
    return {
        s: {label: int(counts[i, j]) for j, label in enumerate(labels)}
        for i, s in enumerate(split.SPLITS)
    }


def _worker_row(run: Run, local: shards.Survey) -> list[float]:
    """This worker's line of the table every worker gets: what it read and its peak RSS."""
    peak_kb = _peak_rss_kb()
    return [
        run.cluster.index,
        len(run.mine),
        local.steps_read,
        *local.counts.sum(axis=1).tolist(),
        peak_kb,
    ]


def _peak_rss_kb() -> int:
    """This process's peak RSS (VmHWM: ru_maxrss would carry a parent's peak across exec)."""
    try:
        for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def write_json(path: Path, data: dict[str, Any]) -> None:
    """A JSON document, indented."""
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")
