"""What ``agent run`` needs from the machine, checked before anything starts.

``load_config`` checks the file alone; these checks look at the paths it names: the state
directory must be a directory the agent can create and write, and every file the agent will
open (TLS files, trusted keys, capture/CSV replays, model bundles) must be a readable file. Each
problem is one ``ConfigError`` naming the key, so ``validate-config`` and ``run`` refuse the
same config with the same line (exit 2) instead of ``run`` dying in a thread later.
``check_contents`` goes further for ``validate-config``: it opens the replay files and verifies
the bundles as ``run`` does at start (``run`` itself does that while building, once).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import TYPE_CHECKING

from agent.config import AgentConfig, ConfigError, SourceConfig

if TYPE_CHECKING:
    from agent.bundle import Manifest
    from agent.features.schema import FeatureSet
    from agent.signature import Verifier


def check_deployment(config: AgentConfig, *, create: bool = False) -> None:
    """Raise ConfigError naming the first key whose path ``run`` could not use.

    ``create`` makes a missing state directory (what ``run`` does anyway); without it the check
    changes nothing and only proves the directory could be made.
    """
    check_state_dir("agent.state_dir", config.agent.state_dir, create=create)
    if config.outbox.path:
        check_state_dir("outbox.path", str(Path(config.outbox.path).parent), create=create)
    _check_outbox_file(config)
    for i, key in enumerate(config.agent.trusted_keys):
        check_readable_file(f"agent.trusted_keys[{i}]", key)
    tls = config.mqtt.tls
    if config.mqtt.enabled and tls is not None:
        for name in ("ca_file", "cert_file", "key_file"):
            path = getattr(tls, name)
            if path:
                check_readable_file(f"mqtt.tls.{name}", path)
    for i, source in enumerate(config.sources):
        path = getattr(source.options, "path", "")
        if path:
            check_readable_file(f"sources[{i}].path", path)
    for i, model in enumerate(config.models):
        if model.enabled:
            check_readable_file(f"models[{i}].bundle", model.bundle)


def check_readable_file(key: str, path: str) -> None:
    """ConfigError unless ``path`` is a regular file this process may read."""
    target = Path(path)
    try:
        if not target.exists():
            raise ConfigError(f"{key}: {path}: no such file")
        if not target.is_file():
            raise ConfigError(f"{key}: {path}: not a regular file")
        with target.open("rb"):
            pass
    except OSError as exc:
        raise ConfigError(f"{key}: {path}: cannot read: {exc.strerror or exc}") from None


def check_state_dir(key: str, path: str, *, create: bool) -> None:
    """ConfigError unless ``path`` is (or could be made) a directory this process may write."""
    target = Path(path)
    existing = target
    try:
        while not existing.exists():  # the nearest ancestor that exists decides
            if existing.parent == existing:
                break
            existing = existing.parent
    except OSError as exc:  # a name longer than the file system allows
        raise ConfigError(f"{key}: {path[:120]}: {exc.strerror or exc}") from None
    if existing.exists() and not existing.is_dir():
        raise ConfigError(f"{key}: {path}: {existing} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{key}: {path}: {existing} is not writable by this user")
    if not create:
        return
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{key}: {path}: cannot create: {exc.strerror or exc}") from None


def check_contents(config: AgentConfig) -> None:
    """Open each file source and verify each enabled model's bundle, as ``run`` does at start.

    Messages match the ones ``run`` gives for the same problem. Live sources are not opened:
    that needs the service's capabilities and would touch the network.
    """
    from agent.app import trusted_keys
    from agent.bundle import BundleError, load_bundle
    from agent.sources import open_source

    for i, source in enumerate(config.sources):
        if source.kind not in ("pcap", "csv"):
            continue
        try:
            open_source(source, config).close()
        except (OSError, ValueError) as exc:
            raise ConfigError(f"sources[{i}] ({source.name}): {exc}") from None
    keys = trusted_keys(config)
    by_name = {source.name: source for source in config.sources}
    for i, model in enumerate(config.models):
        if not model.enabled:
            continue
        try:
            bundle = load_bundle(model.bundle, keys)
        except BundleError as exc:
            raise ConfigError(f"models[{i}].bundle: {exc}") from None
        runs_on = by_name.get(model.source)
        if runs_on is not None:
            check_fits(f"models[{i}].bundle", bundle.manifest, runs_on)


def _feature_set(source: SourceConfig) -> FeatureSet | None:
    """The feature set a source computes, known without opening it (None: it depends on data)."""
    from agent.features.host import HOST_V1
    from agent.features.traffic import TRAFFIC_V1

    return {"pcap": TRAFFIC_V1, "live": TRAFFIC_V1, "host": HOST_V1}.get(source.kind)


def check_fits(key: str, manifest: Manifest, source: SourceConfig) -> None:
    """The bundle fits its source's schema and step, as ``run`` checks at start; ConfigError
    names the key and the setting that fixes it."""
    from agent.bundle import BundleError, check_compatible, step_problem

    features = _feature_set(source)
    if features is not None:
        try:
            check_compatible(manifest, features, source.step_spec, manifest.window, source.name)
        except BundleError as exc:
            raise ConfigError(f"{key}: {exc}") from None
    elif manifest.step != source.step_spec:
        raise ConfigError(f"{key}: {step_problem(manifest.step, source.step_spec, source.name)}")


def model_steps(config: AgentConfig, verify: Verifier | None = None) -> AgentConfig:
    """Give each source that sets no ``step`` the step its bundles were trained with.

    Only a bundle signed by a trusted key is read (the full verification follows at start);
    a bundle that cannot be read leaves the default, so ``run`` reports the real problem.
    Bundles on one source that want different steps are a ConfigError naming the fix.
    """
    from agent.app import trusted_keys
    from agent.bundle import BundleError, Manifest, check_signature
    from agent.bundle_archive import open_archive
    from agent.signature import verify_here

    keys = trusted_keys(config)
    sources = list(config.sources)
    for i, source in enumerate(sources):
        if source.step:
            continue
        wanted: dict[str, str] = {}
        for j, model in enumerate(config.models):
            if not model.enabled or model.source != source.name:
                continue
            try:
                archive = open_archive(model.bundle, config.agent.max_bundle_bytes)
                try:
                    check_signature(archive, keys, verify or verify_here)
                    manifest = Manifest.from_json(archive.manifest_bytes)
                finally:
                    archive.close()
            except (BundleError, OSError):
                continue
            wanted[manifest.step.text] = f"models[{j}] ({model.name})"
        if len(wanted) > 1:
            which = ", ".join(f'{who} "{step}"' for step, who in wanted.items())
            raise ConfigError(
                f"sources[{i}].step: its models want different steps ({which}); "
                f"run them on separate sources, each with its step"
            )
        if wanted:
            sources[i] = dataclasses.replace(source, step=next(iter(wanted)))
    return dataclasses.replace(config, sources=tuple(sources))


def check_calibration_period(config: AgentConfig) -> None:
    """``[calibration] duration`` must hold enough windows for every calibrated model whose
    source steps by time (packet steps come as fast as the traffic: no bound to check); a
    source without a ``step`` yet is checked once ``model_steps`` has given it its bundle's."""
    if config.calibration is None:
        return
    by_name = {source.name: source for source in config.sources}
    for i, model in enumerate(config.models):
        source = by_name.get(model.source)
        if not model.enabled or source is None or not source.step:
            continue
        spec = source.step_spec
        if spec.kind == "time":
            config.calibration.check_step(spec.size_ns / 1e9, f"models[{i}] ({model.name})")


def _check_outbox_file(config: AgentConfig) -> None:
    """An outbox file already there must be one the agent can open (a directory is not)."""
    path = Path(config.outbox.resolved_path(config.agent.state_dir))
    key = "outbox.path" if config.outbox.path else "agent.state_dir"
    try:
        if not path.exists() and not path.is_symlink():
            return  # nothing to check: the outbox module (and SQLite) loads only when MQTT is on
    except OSError as exc:  # a name longer than the file system allows
        raise ConfigError(f"{key}: {str(path)[:120]}: {exc.strerror or exc}") from None
    from agent.report.outbox import OutboxError, check_existing

    try:
        check_existing(path)
    except OutboxError as exc:
        raise ConfigError(f"{key}: {exc}") from None
