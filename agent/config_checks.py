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

import os
from pathlib import Path

from agent.config import AgentConfig, ConfigError


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
    while not existing.exists():  # the nearest ancestor that exists decides
        if existing.parent == existing:
            break
        existing = existing.parent
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
    for i, model in enumerate(config.models):
        if not model.enabled:
            continue
        try:
            load_bundle(model.bundle, keys)
        except BundleError as exc:
            raise ConfigError(f"models[{i}].bundle: {exc}") from None


def _check_outbox_file(config: AgentConfig) -> None:
    """An outbox file already there must be one the agent can open (a directory is not)."""
    from agent.report.outbox import OutboxError, check_existing

    path = Path(config.outbox.resolved_path(config.agent.state_dir))
    try:
        check_existing(path)
    except OutboxError as exc:
        key = "outbox.path" if config.outbox.path else "agent.state_dir"
        raise ConfigError(f"{key}: {exc}") from None
