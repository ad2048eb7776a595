"""Board profiles: what differs between Raspberry Pi gateways, as data the agent's loader checks.

One TOML file per board under ``profiles/``. They are validated by ``agent.config.build``, the
same code that validates the agent's own configuration, so a profile mistake reads like a config
mistake: ``pi4.toml: service.memory_max_mb: must be below ram_mb (1024), got 2048``.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from agent.config import ConfigError, FieldError, build, check

PROFILES_DIR = Path(__file__).resolve().parent / "profiles"

_INTERFACE = re.compile(r"[A-Za-z0-9._-]{1,15}")


@dataclass(frozen=True)
class CaptureProfile:
    """``[capture]``: the interface the agent watches by default on this board."""

    interface: str
    promiscuous: bool = False

    def __post_init__(self) -> None:
        # Linux refuses "." and ".." as interface names too.
        valid = _INTERFACE.fullmatch(self.interface) is not None and self.interface not in (
            ".",
            "..",
        )
        check(
            valid,
            "interface",
            "must be an interface name (1..15 of [A-Za-z0-9._-], not . or ..), "
            f"got {self.interface!r}",
        )


@dataclass(frozen=True)
class ServiceLimits:
    """``[service]``: the systemd resource budget and the interpreter's thread count."""

    cpu_quota_percent: int
    memory_max_mb: int
    threads: int

    def __post_init__(self) -> None:
        check(
            self.cpu_quota_percent >= 10,
            "cpu_quota_percent",
            f"must be >= 10 (systemd CPUQuota=, 100 per core), got {self.cpu_quota_percent}",
        )
        check(
            self.memory_max_mb >= 64,
            "memory_max_mb",
            f"must be >= 64 (the agent and its runtime need it), got {self.memory_max_mb}",
        )
        check(self.threads >= 1, "threads", f"must be >= 1, got {self.threads}")


@dataclass(frozen=True)
class ModelProfile:
    """``[model]``: which bundle variant suits the board (int8 everywhere: RAM and NEON)."""

    bundle_variant: Literal["int8", "float16", "float32"] = "int8"


@dataclass(frozen=True)
class QueueProfile:
    """``[queues]``: the in-memory window queue and the on-disk outbox bounds."""

    queue_size: int
    outbox_max_messages: int
    outbox_max_bytes: int


@dataclass(frozen=True)
class JournalLimits:
    """``[journal]``: journald caps, so logs never fill or wear out an SD card."""

    system_max_mb: int
    runtime_max_mb: int

    def __post_init__(self) -> None:
        check(
            8 <= self.system_max_mb <= 4096,
            "system_max_mb",
            f"must be 8..4096, got {self.system_max_mb}",
        )
        check(
            4 <= self.runtime_max_mb <= 1024,
            "runtime_max_mb",
            f"must be 4..1024, got {self.runtime_max_mb}",
        )


@dataclass(frozen=True)
class ThermalProfile:
    """``[thermal]``: SoC temperatures (°C) where the firmware throttles and where it stops."""

    throttle_c: float
    critical_c: float
    active_cooling: bool
    notes: str = ""

    def __post_init__(self) -> None:
        check(
            self.throttle_c < self.critical_c,
            "throttle_c",
            f"must be below critical_c ({self.critical_c}), got {self.throttle_c}",
        )


@dataclass(frozen=True)
class BoardProfile:
    """One Raspberry Pi board: capture, service budget, model variant, queues, journal, thermal."""

    name: str
    board: str
    soc: str
    cores: int
    ram_mb: int
    capture: CaptureProfile
    service: ServiceLimits
    model: ModelProfile
    queues: QueueProfile
    journal: JournalLimits
    thermal: ThermalProfile

    def __post_init__(self) -> None:
        check(1 <= self.cores <= 64, "cores", f"must be 1..64, got {self.cores}")
        limit = self.service
        check(
            limit.memory_max_mb < self.ram_mb,
            "service.memory_max_mb",
            f"must be below ram_mb ({self.ram_mb}), got {limit.memory_max_mb}",
        )
        check(
            limit.cpu_quota_percent <= 100 * self.cores,
            "service.cpu_quota_percent",
            f"must be <= {100 * self.cores} ({self.cores} cores), got {limit.cpu_quota_percent}",
        )
        check(
            limit.threads <= self.cores,
            "service.threads",
            f"must be <= cores ({self.cores}), got {limit.threads}",
        )


def available_profiles() -> tuple[str, ...]:
    """Names of the shipped profiles, sorted (what an unknown-profile error lists)."""
    return tuple(sorted(p.stem for p in PROFILES_DIR.glob("*.toml")))


def load_profile(name: str) -> BoardProfile:
    """The shipped profile called ``name``; ConfigError lists the valid ones when there is none."""
    valid = available_profiles()
    if name not in valid:
        raise ConfigError(f"unknown profile {name!r} (valid: {', '.join(valid)})")
    return load_profile_file(PROFILES_DIR / f"{name}.toml")


def load_profile_file(path: Path) -> BoardProfile:
    """Read and validate one profile file; the file name must match its ``name`` key."""
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    try:
        profile = build(BoardProfile, data)
        check(profile.name == path.stem, "name", f"must match the file name {path.stem!r}")
    except FieldError as exc:
        raise ConfigError(f"{path.name}: {exc.key}: {exc}") from None
    except ConfigError as exc:
        raise ConfigError(f"{path.name}: {exc}") from None
    return profile
