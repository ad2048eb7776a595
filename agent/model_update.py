"""Which bundle a model slot runs: one path for the bundle it starts with and for remote updates.

``bundle_for_slot`` is the one step from bundle bytes to what a slot runs, the same whether the
bundle comes from the config, from the state directory or from ``model/set``: size limit,
signature, model, golden vectors (``load_bundle``), then the slot's source (schema, step,
window), its decision policy and benign model (``agent.inference.fit_bundle``), then its
version against the slot's current bundle. It returns a ``SlotBundle`` the slot activates as is.

Versions only go up. A bundle whose version is below the slot's is refused as ``downgrade``;
one with the same version but other bytes as ``same-version`` (an unversioned bundle is version
0, so two of them cannot prove which is newer). ``agent.allow_downgrade = true`` accepts both.
At start the saved bundle (the last one activated remotely) and the config's are both read and
the higher version wins; on a tie the saved one does, as it did before bundles had versions.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from agent.bundle import Bundle, BundleError, load_bundle
from agent.inference import SlotBundle
from agent.signature import Verifier, verify_here

logger = logging.getLogger(__name__)

DOWNGRADE = "downgrade"
SAME_VERSION = "same-version"


@dataclass(frozen=True)
class BundlePolicy:
    """What every bundle must pass on this agent (from ``[agent]``), and who checks signatures."""

    trusted_keys: tuple[bytes, ...]
    max_bundle_bytes: int
    allow_downgrade: bool = False
    verify: Verifier = verify_here


@dataclass(frozen=True)
class SlotSpec:
    """A model slot as a bundle sees it; ``current`` is its newest bundle (None at start).

    ``check`` fits a bundle to the slot's source (``ModelSlot.check`` or ``fit_bundle``), or
    raises BundleError saying why it does not fit.
    """

    name: str
    check: Callable[[Bundle], SlotBundle]
    threads: int = 1
    current: Bundle | None = None


def bundle_for_slot(
    source: str | Path | bytes, slots: Sequence[SlotSpec], policy: BundlePolicy
) -> tuple[SlotSpec, SlotBundle]:
    """Read, verify and fit a bundle: the first slot it fits, if not older than that slot's.

    BundleError says why not. A bundle identical to the slot's current one passes: the caller
    decides what "already active" means.
    """
    if not slots:
        raise BundleError("bundle: this agent runs no models to replace")
    threads = slots[0].threads if len(slots) == 1 else 1
    bundle = load_bundle(
        source, policy.trusted_keys, threads, policy.max_bundle_bytes, policy.verify
    )
    slot, fitted = _fitting_slot(bundle, slots)
    if slot.current is not None and not policy.allow_downgrade:
        check_version(bundle, slot.current)
    if slot.threads != threads:  # verified on one thread; run on as many as the config gives
        bundle = load_bundle(
            source, policy.trusted_keys, slot.threads, policy.max_bundle_bytes, policy.verify
        )
        fitted = slot.check(bundle)
    return slot, fitted


def _fitting_slot(bundle: Bundle, slots: Sequence[SlotSpec]) -> tuple[SlotSpec, SlotBundle]:
    """The first slot whose source computes the bundle's features; BundleError otherwise."""
    first_error: BundleError | None = None
    for slot in slots:
        try:
            return slot, slot.check(bundle)
        except BundleError as exc:
            first_error = first_error or exc
    assert first_error is not None
    raise first_error


def check_version(candidate: Bundle, current: Bundle) -> None:
    """Refuse a bundle not newer than ``current`` (``downgrade`` / ``same-version``)."""
    if candidate.raw == current.raw:
        return
    new, old = candidate.manifest, current.manifest
    if new.version > old.version:
        return
    allow = "set agent.allow_downgrade = true to accept it"
    if new.version < old.version:
        raise BundleError(
            f"{DOWNGRADE}: {new.bundle_id} is version {new.version}, older than the active "
            f"{old.bundle_id} (version {old.version}); {allow}"
        )
    raise BundleError(
        f"{SAME_VERSION}: {new.bundle_id} has the version of the active {old.bundle_id} "
        f"({old.version}); convert it with a higher --version, or {allow}"
    )


def startup_choice(saved: Bundle | None, configured: Bundle) -> tuple[Bundle, str]:
    """The bundle a slot starts with, and why: the higher version; the saved one on a tie."""
    new = configured.manifest
    if saved is None:
        return configured, f"the config's bundle {new.bundle_id} (version {new.version})"
    old = saved.manifest
    if old.version >= new.version:
        return saved, (
            f"resuming with bundle {old.bundle_id} (version {old.version}) activated remotely: "
            f"not older than the config's {new.bundle_id} (version {new.version})"
        )
    return configured, (
        f"the config's bundle {new.bundle_id} (version {new.version}): newer than the saved "
        f"{old.bundle_id} (version {old.version})"
    )


def persisted_bundle(state_dir: str, model: str) -> Path:
    """Where the active bundle of model ``model`` survives restarts."""
    return Path(state_dir) / "models" / f"{model}.bundle"


def persist_bundle(path: Path, data: bytes) -> None:
    """Write a bundle atomically (temp file, fsync, rename): a power cut leaves old or new."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)
