"""The agent process: sources -> bounded queue -> one inference thread -> sinks.

Built from the config: one thread per source, one inference thread that owns every model
slot, a stats thread, and a model-update thread that verifies bundles arriving on
``model/set`` away from the hot path. One stop Event ends them all; SIGTERM/SIGINT only set
it, so a handler never runs shutdown code inside an interrupted frame. Under a flood the
queue drops its oldest batch and counts it, and the inference thread scores only every n-th
window while it is behind.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from agent.bundle import Bundle, BundleError
from agent.config import AgentConfig, ConfigError, ModelConfig
from agent.config_loader import DEVICE_AWAY, SourceUnavailable
from agent.health import Health
from agent.inference import (
    Debounce,
    ModelSlot,
    SlotBundle,
    calibration_state,
    describe,
    fit_bundle,
)
from agent.keys import raw_public_key
from agent.model_update import (
    BundlePolicy,
    SlotSpec,
    bundle_for_slot,
    persist_bundle,
    persisted_bundle,
    startup_choice,
)
from agent.pipeline import Pipeline
from agent.replay import ReplayResult, replay_capture
from agent.report import Sink
from agent.signals import SignalLatch
from agent.signature import ChildVerifier
from agent.site import SiteCalibrator, saved_calibration
from agent.sources import FeatureSource, StepBatch, open_source
from agent.step_queue import DropOldestQueue, sample_every
from agent.supervise import EXIT_FAILED, SourceRunner

logger = logging.getLogger(__name__)

# Moved to their own modules; still importable from here, where callers always found them.
__all__ = [
    "App",
    "DropOldestQueue",
    "Pipeline",
    "ReplayResult",
    "replay_capture",
    "sample_every",
    "trusted_keys",
]

JOIN_TIMEOUT = 5.0
DRAIN_SECONDS = 2.0  # on stop, keep scoring what is already queued for at most this long


def trusted_keys(config: AgentConfig) -> list[bytes]:
    """The public keys listed in ``agent.trusted_keys``; ConfigError names a bad one."""
    keys: list[bytes] = []
    for i, path in enumerate(config.agent.trusted_keys):
        try:
            keys.append(raw_public_key(Path(path).read_bytes()))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"agent.trusted_keys[{i}]: {path}: {exc}") from None
    return keys


class App:
    """The running agent: owns the stop Event, the threads, the slots and the sinks."""

    def __init__(
        self,
        config: AgentConfig,
        *,
        sinks: Sequence[Sink] | None = None,
        verify: ChildVerifier | None = None,
    ) -> None:
        from agent.config_checks import check_calibration_period, model_steps

        # signatures are checked in a child: this long-running process never loads cryptography
        self.verify = verify or ChildVerifier()
        self.config = config = model_steps(
            config, self.verify
        )  # a source without ``step``: its bundle's
        check_calibration_period(config)  # before anything starts: exit 2, as validate-config
        self.stop = threading.Event()
        self._signals = SignalLatch()  # SIGTERM/SIGINT, acted on by the run loop
        self.health = Health()
        self.queue: DropOldestQueue[tuple[str, StepBatch]] = DropOldestQueue(
            config.agent.queue_size, weigh=lambda item: len(item[1])
        )
        self._policy = BundlePolicy(
            tuple(trusted_keys(config)),
            config.agent.max_bundle_bytes,
            config.agent.allow_downgrade,
            self.verify,
        )
        self.update_failures = 0  # bundles (saved or received) that failed in an unexpected way
        self.update_results: dict[str, int] = {}  # "activated" / "refused: <why>" -> count
        self.sources = self._build_sources()
        self._calibrators: dict[str, SiteCalibrator] = {}
        slots = self._build_slots()
        self._outbox: Any = None
        self.pipeline = Pipeline(slots, list(sinks) if sinks is not None else self._build_sinks())
        # Bytes of bundles waiting for verification, the oldest dropped first; a payload over
        # the limit is queued as its length only, to be refused without holding it.
        self._updates: DropOldestQueue[bytes | int] = DropOldestQueue(
            config.agent.max_bundle_bytes,
            weigh=lambda item: len(item) if isinstance(item, bytes) else 1,
        )
        self._threads: list[threading.Thread] = []
        self._last_sample = 1
        self._lossy = any(not s.lossless for s in self.sources.values())
        self._runner = SourceRunner(
            config, self.sources, self.health, self.stop, self._deliver, self._fail
        )
        self._interval_seen = self._interval_scored = 0
        self.exit_code = 0

    # -- building -----------------------------------------------------------------------------

    def _build_sources(self) -> dict[str, FeatureSource]:
        sources: dict[str, FeatureSource] = {}
        for i, source in enumerate(self.config.sources):
            try:
                sources[source.name] = open_source(source, self.config)
            except (OSError, ValueError) as exc:
                for opened in sources.values():
                    opened.close()
                if isinstance(exc, OSError) and exc.errno in DEVICE_AWAY:
                    # the interface may come back (a USB NIC, a bridge made later): exit 1 so
                    # a service manager starts the agent again, not 2, which it is told not to
                    raise SourceUnavailable(f"sources[{i}] ({source.name}): {exc}") from None
                raise ConfigError(f"sources[{i}] ({source.name}): {exc}") from None
        return sources

    def _build_slots(self) -> dict[str, list[ModelSlot]]:
        slots: dict[str, list[ModelSlot]] = {}
        for i, model in enumerate(self.config.models):
            if not model.enabled:
                continue
            source = self.sources[model.source]
            debounce = Debounce(
                model.raise_k,
                model.raise_n,
                model.clear_m,
                model.raise_score,
                model.merge_horizon,
                model.quiet,
                hold=model.hold,
                recur=model.recur,
            )
            slot = ModelSlot(
                model.name,
                model.source,
                source.feature_set,
                source.step,
                self._startup_bundle(i, model, source, debounce),
                debounce,
                on_latency=self.health.record_latency,
                calibration=saved_calibration(self.config.agent.state_dir, model.name),
            )
            slots.setdefault(model.source, []).append(slot)
            calibrate = self.config.calibration
            if calibrate is not None and slot.calibration is None:
                self._calibrators[slot.name] = SiteCalibrator(
                    slot,
                    self.config.agent.state_dir,
                    calibrate.seconds,
                    calibrate.target_false_alarms_per_day,
                    lambda state: self.pipeline.publish_model(state),
                    calibrate.attack_free,
                )
        return slots

    def _startup_bundle(
        self, index: int, model: ModelConfig, source: FeatureSource, debounce: Debounce
    ) -> SlotBundle:
        """The bundle a model starts with: the saved one or the config's, the higher version.

        Both go through ``bundle_for_slot``, the step remote updates use too.
        """

        def fits(bundle: Bundle) -> SlotBundle:
            return fit_bundle(bundle, source.feature_set, source.step, debounce, source.name)

        spec = [SlotSpec(model.name, fits, model.threads)]
        path = persisted_bundle(self.config.agent.state_dir, model.name)
        saved: SlotBundle | None = None
        if path.is_file():
            try:
                saved = bundle_for_slot(path, spec, self._policy)[1]
            except BundleError as exc:
                logger.warning("%s: saved bundle %s unusable (%s)", model.name, path, exc)
            except Exception:  # whatever else is wrong with it, the config's bundle remains
                self.update_failures += 1
                logger.exception("%s: saved bundle %s failed to load", model.name, path)
        try:
            configured = bundle_for_slot(model.bundle, spec, self._policy)[1]
        except BundleError as exc:
            if saved is None:
                raise ConfigError(f"models[{index}].bundle: {exc}") from None
            logger.warning(
                "%s: the config's bundle is unusable (%s); resuming with the saved bundle %s",
                model.name,
                exc,
                saved.bundle.manifest.bundle_id,
            )
            return saved
        chosen, why = startup_choice(saved.bundle if saved else None, configured.bundle)
        logger.info("%s: %s", model.name, why)
        return saved if saved is not None and chosen is saved.bundle else configured

    def _build_sinks(self) -> list[Sink]:
        if not self.config.mqtt.enabled:
            return []
        from agent.report.mqtt import MqttSink
        from agent.report.outbox import Outbox

        # A ConfigError (exit 2) when the path is unusable; only a corrupt SQLite file is
        # moved aside.
        self._outbox = Outbox.from_config(self.config.outbox, self.config.agent.state_dir)
        sink = MqttSink(
            self.config.mqtt,
            self.config.agent.device_id,
            self._outbox,
            on_model_set=self.on_model_set,
        )
        return [sink]

    # -- running ------------------------------------------------------------------------------

    def run(self, stopping: SignalLatch | None = None) -> int:
        """Start everything, wait for the stop Event (or the end of every file), shut down.

        ``stopping``: the latch that took SIGTERM/SIGINT while the agent was loading; a signal
        it caught stops this run as one arriving now would (a clean shutdown, exit 0)."""
        if stopping is not None:
            stopping.restore()
            self._signals.received = stopping.received
        self._signals.install()
        for sink in self.pipeline.sinks:
            sink.start()
        for slot in self.pipeline.slot_list():
            collecting = slot.name in self._calibrators
            self.pipeline.publish_model(
                {
                    **describe(slot.bundle),
                    "name": slot.name,
                    "calibration": calibration_state(slot, collecting),
                }
            )
        self._start(self._inference_loop, "inference")
        self._start(self._stats_loop, "stats")
        self._start(self._update_loop, "model-update")
        for name, source in self.sources.items():
            self._start(functools.partial(self._runner.run, source), f"source-{name}")
        logger.info(
            "agent %s running: %d sources, %d models",
            self.config.agent.device_id,
            len(self.sources),
            len(self.pipeline.slot_list()),
        )
        while not self.stop.wait(0.5):
            if self._signals.received is not None:
                logger.info("signal %s: stopping", self._signals.name())
                break
            if self._threads and not self._threads[0].is_alive():
                break  # the inference thread ended: every finite source is done
        self.shutdown()
        return self.exit_code

    def shutdown(self) -> None:
        """Stop -> join threads (with a timeout) -> end open detections -> close sinks."""
        self.stop.set()
        for thread in self._threads:
            thread.join(JOIN_TIMEOUT)
            if thread.is_alive():
                logger.warning("thread %s did not stop within %.0f s", thread.name, JOIN_TIMEOUT)
        self.pipeline.finish()
        self._publish_stats()
        for source in self.sources.values():
            source.close()
        for sink in self.pipeline.sinks:
            try:
                sink.close()
            except Exception:
                logger.exception("closing sink %s failed", type(sink).__name__)
        if self._outbox is not None:
            self._outbox.close()
        logger.info("agent stopped")

    def on_model_set(self, data: bytes) -> None:
        """A bundle arrived on ``model/set`` (paho's thread): queue it, verify it elsewhere."""
        too_big = len(data) > self._policy.max_bundle_bytes
        self._updates.put(len(data) if too_big else data)

    def _start(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=self._guarded(target, name), name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _guarded(self, target: Callable[[], None], name: str) -> Callable[[], None]:
        """``target``, but an exception escaping it ends the agent non-zero instead of a thread."""

        def guarded() -> None:
            try:
                target()
            except Exception as exc:
                self._fail(f"thread {name} died: {exc!r}")

        return guarded

    def _fail(self, message: str) -> None:
        """Log one line and end the agent with EXIT_FAILED (systemd restarts it)."""
        logger.error("%s; the agent exits with status %d", message, EXIT_FAILED)
        self.exit_code = EXIT_FAILED
        self.stop.set()

    def _deliver(self, source: FeatureSource, batch: StepBatch) -> None:
        """Queue a source's batch: a file waits for room, a live source drops the oldest."""
        if source.lossless:
            self.queue.put_wait((source.name, batch), self.stop)
        else:
            self.health.queue_drops += self.queue.put((source.name, batch))

    def _inference_loop(self) -> None:
        """Score queued batches; after stop, drain what is queued for a moment, then end."""
        drain_until: float | None = None
        while True:
            if self.stop.is_set() and drain_until is None:
                drain_until = time.monotonic() + DRAIN_SECONDS
            if drain_until is not None and time.monotonic() > drain_until:
                break
            item = self.queue.get(timeout=0.5)
            if item is None:
                if drain_until is not None or self._all_finished():
                    break
                continue
            name, batch = item
            # Falling behind matters only when a live source would drop; files just wait.
            if self._lossy:
                self._last_sample = sample_every(self.queue.weight, self.queue.maxsize)
            try:
                self.pipeline.process(name, batch, self._last_sample)
            except Exception:
                logger.exception("scoring a batch of %s failed", name)

    def _all_finished(self) -> bool:
        return bool(self.sources) and self._runner.drained >= set(self.sources)

    def _stats_loop(self) -> None:
        while not self.stop.wait(self.config.agent.stats_interval):
            self._publish_stats()

    def _publish_stats(self) -> None:
        try:
            self.pipeline.publish_stats(self.stats())
        except Exception:
            logger.exception("stats failed")

    def stats(self) -> dict[str, Any]:
        """The current health figures (sampling ratio over the last interval)."""
        seen = self.pipeline.windows_seen - self._interval_seen
        scored = self.pipeline.windows_scored - self._interval_scored
        self._interval_seen, self._interval_scored = (
            self.pipeline.windows_seen,
            self.pipeline.windows_scored,
        )
        ratio = scored / seen if seen else 1.0
        snapshot = self.health.snapshot(
            {name: s.stats for name, s in self.sources.items()},
            queue_depths={"steps": self.queue.weight, "model_updates": len(self._updates)},
            sampling_ratio=ratio,
            active_models=self.pipeline.active_models,
        )
        snapshot["model_updates"] = dict(self.update_results)
        return snapshot

    def _update_loop(self) -> None:
        """Verify queued bundles; no bundle may end this thread (it serves every slot)."""
        while not self.stop.is_set():
            data = self._updates.get(timeout=0.5)
            if data is None:
                continue
            try:
                self._apply_update(data)
            except Exception:
                self.update_failures += 1
                logger.exception("model update: unexpected failure; the current model stays")

    def _apply_update(self, data: bytes | int) -> None:
        """Verify a received bundle; stage it on the slot it fits, or report why not."""
        slots = {s.name: s for s in self.pipeline.slot_list()}
        threads = {m.name: m.threads for m in self.config.models}
        specs = [SlotSpec(n, s.check, threads.get(n, 1), s.latest) for n, s in slots.items()]
        try:
            if isinstance(data, int):  # refused on arrival, so that it was never held
                limit = self._policy.max_bundle_bytes
                raise BundleError(f"bundle file: {data} bytes, larger than {limit}")
            spec, fitted = bundle_for_slot(data, specs, self._policy)
        except BundleError as exc:
            logger.warning("model update refused: %s", exc)
            kind = "refused: " + str(exc).split(":", 1)[0]
            self.update_results[kind] = self.update_results.get(kind, 0) + 1
            current = describe(next(iter(slots.values())).latest) if slots else {}
            self.pipeline.publish_model({**current, "last_update": _result("refused", str(exc))})
            return
        slot, bundle = slots[spec.name], fitted.bundle
        if bundle.raw == slot.latest.raw:
            # A retained model/set comes back on every reconnect: swapping in the same bundle
            # would end and re-raise every open detection each time the link flaps.
            logger.info("model update: %s is already active on %s", slot.bundle_id, slot.name)
            return
        self.update_results["activated"] = self.update_results.get("activated", 0) + 1
        reason = ""
        try:
            persist_bundle(persisted_bundle(self.config.agent.state_dir, slot.name), data)
        except OSError as exc:  # a full or read-only SD card must not block a verified model
            reason = f"not saved, the previous bundle returns after a restart: {exc}"
            logger.error("model update: %s", reason)
        slot.stage(fitted)
        logger.info("model update: %s staged on %s", bundle.manifest.bundle_id, slot.name)
        self.pipeline.publish_model(
            {**describe(bundle), "name": slot.name, "last_update": _result("activated", reason)}
        )


def _result(result: str, reason: str) -> dict[str, object]:
    return {"result": result, "reason": reason, "time": time.time()}
