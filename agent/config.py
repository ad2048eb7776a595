"""The agent's one TOML file, read into frozen dataclasses and validated once at start-up.

Every table mirrors a dataclass (``[mqtt]`` -> ``MqttConfig``). A generic loader, ``build``,
turns a dict into any of these dataclasses from its type hints, rejects unknown keys, and
turns every mistake into one ``ConfigError`` line that names the key path
(``mqtt.port: must be 1..65535, got 70000``); it lives in ``agent.config_loader``. Secrets
never live in this file: MQTT credentials come from the environment or systemd's credentials
directory.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from agent.bundle_archive import DEFAULT_MAX_BUNDLE_BYTES, MAX_BUNDLE_BYTES, MIN_BUNDLE_BYTES
from agent.config_calibration import CalibrationConfig
from agent.config_loader import (
    MAX_CLIENT_ID_BYTES,
    MAX_TOPIC_BYTES,
    ConfigError,
    FieldError,
    build,
    check,
    read_toml,
    utf8_len,
    valid_topic_prefix,
)
from agent.config_loader import join_key as _join
from agent.config_loader import type_name as _type_name
from agent.config_sources import (
    CsvOptions,
    HostOptions,
    LiveOptions,
    MqttSensorsOptions,
    PcapOptions,
    SensorTopic,
    SourceOptions,
)
from agent.runtime import KERNEL_CHOICES
from agent.sources.registry import SOURCE_KINDS, kinds, options_class

__all__ = [  # names that moved out stay importable from here, where callers always found them
    "AgentConfig",
    "ConfigError",
    "CsvOptions",
    "FieldError",
    "HostOptions",
    "LiveOptions",
    "MqttSensorsOptions",
    "PcapOptions",
    "SensorTopic",
    "SourceOptions",
    "build",
    "check",
    "load_config",
    "parse_config",
]

_DEVICE_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
_LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
# Periods and rates are bounded where the agent turns them into waits and sleeps: Event.wait
# raises OverflowError past ~2.9e8 s (the thread dies), and a period of 1e-300 s is a busy loop
# that fills the outbox with stats rows.
MAX_PERIOD_S = 86_400.0
MIN_STATS_INTERVAL_S = 0.1
MAX_CONFIG_BYTES = 1024 * 1024  # a config file is a few KB; anything larger is not one
_CREDENTIALS_ELSEWHERE = (
    "secrets come from the environment or systemd credentials, not the config file"
)


# ---------------------------------------------------------------------------------------------
# [agent]


@dataclass(frozen=True)
class AgentSection:
    """``[agent]``: who this gateway is, where it keeps state, how often it reports.

    ``queue_size`` counts feature steps waiting for inference (all sources together); when a
    live source finds it full the oldest steps are dropped and counted.
    """

    device_id: str
    state_dir: str = "/var/lib/iotids"
    stats_interval: float = 10.0
    log_level: str = "info"
    queue_size: int = 256
    trusted_keys: tuple[str, ...] = ()
    # model/set payloads (and the bundles loaded at start) larger than this are refused unread
    max_bundle_bytes: int = DEFAULT_MAX_BUNDLE_BYTES
    allow_downgrade: bool = False  # accept a bundle whose version is not above the active one
    # interpreter kernels: auto times XNNPACK and the built-ins on each model and keeps the faster
    kernels: str = "auto"

    def __post_init__(self) -> None:
        check(
            _DEVICE_ID.fullmatch(self.device_id) is not None,
            "device_id",
            "must be 1..64 characters of [A-Za-z0-9._-] (one MQTT topic level), "
            f"got {self.device_id!r}",
        )
        check(self.state_dir != "", "state_dir", "must not be empty")
        check(
            self.kernels in KERNEL_CHOICES,
            "kernels",
            f"must be one of {', '.join(KERNEL_CHOICES)}, got {self.kernels!r}",
        )
        check(
            MIN_STATS_INTERVAL_S <= self.stats_interval <= MAX_PERIOD_S,
            "stats_interval",
            f"must be {MIN_STATS_INTERVAL_S}..{MAX_PERIOD_S:.0f} seconds,"
            f" got {self.stats_interval}",
        )
        check(
            self.log_level in _LOG_LEVELS,
            "log_level",
            f"must be one of {', '.join(_LOG_LEVELS)}, got {self.log_level!r}",
        )
        check(
            2 <= self.queue_size <= 1_000_000,
            "queue_size",
            f"must be 2..1000000, got {self.queue_size}",
        )
        check(
            MIN_BUNDLE_BYTES <= self.max_bundle_bytes <= MAX_BUNDLE_BYTES,
            "max_bundle_bytes",
            f"must be {MIN_BUNDLE_BYTES}..{MAX_BUNDLE_BYTES}, got {self.max_bundle_bytes}",
        )


# ---------------------------------------------------------------------------------------------
# [mqtt], [outbox]


@dataclass(frozen=True)
class TlsConfig:
    """``[mqtt.tls]``: an empty ``ca_file`` means the system trust store."""

    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    server_hostname: str = ""

    def __post_init__(self) -> None:
        check(
            bool(self.cert_file) == bool(self.key_file),
            "key_file" if self.cert_file else "cert_file",
            "cert_file and key_file go together (a client certificate needs its key)",
        )


@dataclass(frozen=True)
class HomeAssistantConfig:
    """``[mqtt.homeassistant]``: MQTT discovery for Home Assistant."""

    enabled: bool = True
    discovery_prefix: str = "homeassistant"

    def __post_init__(self) -> None:
        check(
            valid_topic_prefix(self.discovery_prefix),
            "discovery_prefix",
            f"must be a topic of 1..{MAX_TOPIC_BYTES} bytes without '+', '#', NUL or a leading '$',"
            f" got {self.discovery_prefix[:40]!r}",
        )


@dataclass(frozen=True)
class MqttConfig:
    """``[mqtt]``: the broker the agent reports to (credentials come from the environment)."""

    REJECTED_KEYS: ClassVar[Mapping[str, str]] = {
        "password": _CREDENTIALS_ELSEWHERE,
        "username": _CREDENTIALS_ELSEWHERE,
    }

    enabled: bool = True
    host: str = "localhost"
    port: int = 1883
    protocol: Literal["3.1.1", "5"] = "3.1.1"
    client_id: str = ""
    keepalive: int = 30
    topic_prefix: str = "iotids"
    stats_qos: int = 0
    username_env: str = "IOTIDS_MQTT_USERNAME"
    password_env: str = "IOTIDS_MQTT_PASSWORD"  # noqa: S105 - a variable name
    credentials_dir_env: str = "CREDENTIALS_DIRECTORY"
    backoff_min: float = 1.0
    backoff_max: float = 60.0
    auth_backoff: float = 300.0
    replay_rate: float = 50.0
    drain_on_close: float = 2.0  # seconds to keep delivering queued rows at shutdown
    tls: TlsConfig | None = None
    homeassistant: HomeAssistantConfig = field(default_factory=HomeAssistantConfig)

    def __post_init__(self) -> None:
        check(self.host != "", "host", "must not be empty")
        check(1 <= self.port <= 65535, "port", f"must be 1..65535, got {self.port}")
        check(5 <= self.keepalive <= 65535, "keepalive", f"must be 5..65535, got {self.keepalive}")
        check(
            valid_topic_prefix(self.topic_prefix),
            "topic_prefix",
            f"must be a topic of 1..{MAX_TOPIC_BYTES} bytes without '+', '#', NUL or a leading '$',"
            f" got {self.topic_prefix[:40]!r}",
        )
        check(self.stats_qos in (0, 1, 2), "stats_qos", f"must be 0, 1 or 2, got {self.stats_qos}")
        check(
            utf8_len(self.client_id) <= MAX_CLIENT_ID_BYTES
            and not any(c in self.client_id for c in "\x00+#/"),
            "client_id",
            f"must be at most {MAX_CLIENT_ID_BYTES} bytes without NUL, '+', '#' or '/',"
            f" got {self.client_id[:40]!r}",
        )
        check(
            0 < self.backoff_min <= 3600,
            "backoff_min",
            f"must be in (0, 3600] seconds, got {self.backoff_min}",
        )
        check(
            self.backoff_max >= self.backoff_min,
            "backoff_max",
            f"must be >= backoff_min ({self.backoff_min}), got {self.backoff_max}",
        )
        check(
            self.backoff_max <= MAX_PERIOD_S,
            "backoff_max",
            f"must be at most {MAX_PERIOD_S:.0f} seconds, got {self.backoff_max}",
        )
        check(
            0 < self.auth_backoff <= MAX_PERIOD_S,
            "auth_backoff",
            f"must be in (0, {MAX_PERIOD_S:.0f}] seconds, got {self.auth_backoff}",
        )
        check(
            0.1 <= self.replay_rate <= 100_000,
            "replay_rate",
            f"must be 0.1..100000 messages per second, got {self.replay_rate}",
        )
        check(
            0 <= self.drain_on_close <= 60,
            "drain_on_close",
            f"must be 0..60 seconds, got {self.drain_on_close}",
        )

    def resolved_client_id(self, device_id: str) -> str:
        """The client id to connect with: the configured one, else ``iotids-<device_id>``."""
        return self.client_id or f"iotids-{device_id}"


@dataclass(frozen=True)
class OutboxConfig:
    """``[outbox]``: the durable on-disk queue; an empty path means <state_dir>/outbox.sqlite."""

    path: str = ""
    max_messages: int = 100_000
    max_bytes: int = 50_000_000

    def __post_init__(self) -> None:
        check(self.max_messages >= 1, "max_messages", f"must be >= 1, got {self.max_messages}")
        check(self.max_bytes >= 1024, "max_bytes", f"must be >= 1024, got {self.max_bytes}")

    def resolved_path(self, state_dir: str) -> str:
        """Where the outbox file lives."""
        return self.path or str(Path(state_dir) / "outbox.sqlite")


# ---------------------------------------------------------------------------------------------
# [[sources]]: the options of each kind live in agent.config_sources


# The step of a source that sets none and runs no bundle that names one.
DEFAULT_STEP = "1s"


@dataclass(frozen=True)
class SourceConfig:
    """``[[sources]]``: a named feature source; the keys besides name/kind/step are its options.

    ``step`` is how the source cuts time into steps (``"1s"``, ``"0.5s"``, ``"100p"``); a model
    on this source must have been trained with the same step. Left out (``""``), the source takes
    the step of the bundles run on it (``model_steps``), else one second.
    """

    name: str
    kind: str
    # The options dataclass agent.sources.registry names for ``kind``; typed Any so a new source
    # brings its own class without widening a union here. Each source checks it with isinstance.
    options: Any
    step: str = ""

    def __post_init__(self) -> None:
        check(
            _NAME.fullmatch(self.name) is not None,
            "name",
            f"must be 1..64 characters of [A-Za-z0-9._-], got {self.name!r}",
        )
        check(
            self.kind in SOURCE_KINDS,
            "kind",
            f"unknown source {self.kind!r} (valid: {_kinds()})",
        )
        try:
            from agent.features.steps import StepSpec

            spec = StepSpec.parse(self.step or DEFAULT_STEP)
        except ValueError:
            raise FieldError(
                "step", f"must look like '1s', '0.5s' or '100p', got {self.step!r}"
            ) from None
        check(
            not (self.kind == "host" and spec.counts_packets),
            "step",
            "a host source steps by time, not by packets",
        )

    @classmethod
    def from_table(cls, data: Mapping[str, Any], path: str) -> SourceConfig:
        """Build from a flat ``[[sources]]`` table: name, kind, step, then the kind's options."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"{path}: must be a table, got {_type_name(data)}")
        kind = data.get("kind")
        if not isinstance(kind, str):
            raise ConfigError(f"{_join(path, 'kind')}: required, one of {_kinds()}")
        if kind not in SOURCE_KINDS:
            raise ConfigError(f"{_join(path, 'kind')}: unknown source {kind!r} (valid: {_kinds()})")
        own = {k: data[k] for k in ("name", "kind", "step") if k in data}
        rest = {k: v for k, v in data.items() if k not in own}
        options = build(options_class(kind), rest, path)
        return build(cls, {**own, "options": options}, path)

    @property
    def step_spec(self) -> Any:
        """The parsed step (an ``agent.features.steps.StepSpec``)."""
        from agent.features.steps import StepSpec

        return StepSpec.parse(self.step or DEFAULT_STEP)


# ---------------------------------------------------------------------------------------------
# [[models]]


@dataclass(frozen=True)
class ModelConfig:
    """``[[models]]``: a bundle run on one source's windows, with its debounce settings.

    An event is raised when ``raise_k`` of the last ``raise_n`` windows cross the threshold,
    or at once when a classifier's window scores at least ``raise_score``, and ended after
    ``clear_m`` clean windows in a row and ``quiet`` seconds without a hit, or, when ``hold`` is
    longer, once ``hold`` seconds pass without its labels hitting its targets again.
    """

    name: str
    bundle: str
    source: str
    raise_k: int = 2
    raise_n: int = 3
    clear_m: int = 3
    # a classifier window scoring at least this raises at once; off unless set (> 1 is off):
    # measured on generated traffic it did not cut time to detect but raised false alarms
    raise_score: float = 2.0
    merge_horizon: float = 300.0  # s: other labels on its targets join a detection this young
    quiet: float = 3.0  # s without a hit before a detection ends, besides clear_m clean windows
    # s from its last hit a quiet detection waits for the same label on its targets to resume
    # it (a model fires on a long attack in bursts); <= quiet: it ends after quiet
    hold: float = 30.0
    # s from a detection's last hit in which the same label raised on its targets or from its
    # sender is a recurrence: a new detection carrying its incident id; 0: never linked
    recur: float = 3600.0
    enabled: bool = True
    threads: int = 1  # interpreter threads (a Pi 4/5 has 4 cores; the capture needs one)

    def __post_init__(self) -> None:
        check(
            _NAME.fullmatch(self.name) is not None,
            "name",
            f"must be 1..64 characters of [A-Za-z0-9._-], got {self.name!r}",
        )
        check(self.bundle != "", "bundle", "must not be empty")
        check(1 <= self.raise_n <= 1000, "raise_n", f"must be 1..1000, got {self.raise_n}")
        check(
            1 <= self.raise_k <= self.raise_n,
            "raise_k",
            f"must be 1..raise_n ({self.raise_n}), got {self.raise_k}",
        )
        check(1 <= self.clear_m <= 1000, "clear_m", f"must be 1..1000, got {self.clear_m}")
        check(
            self.raise_score >= 0.5,
            "raise_score",
            f"must be >= 0.5 (a softmax score; > 1 disables it), got {self.raise_score}",
        )
        for key, top in (
            ("merge_horizon", 86_400),
            ("quiet", 3600),
            ("hold", 3600),
            ("recur", 86_400),
        ):
            value = getattr(self, key)
            check(0 <= value <= top, key, f"must be 0..{top} seconds, got {value}")
        check(1 <= self.threads <= 16, "threads", f"must be 1..16, got {self.threads}")


# ---------------------------------------------------------------------------------------------
# the whole file


@dataclass(frozen=True)
class AgentConfig:
    """The whole configuration file."""

    agent: AgentSection
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    outbox: OutboxConfig = field(default_factory=OutboxConfig)
    sources: tuple[SourceConfig, ...] = ()
    models: tuple[ModelConfig, ...] = ()
    calibration: CalibrationConfig | None = None  # absent: the bundle's thresholds only

    def __post_init__(self) -> None:
        _check_unique("sources", [s.name for s in self.sources])
        _check_unique("models", [m.name for m in self.models])
        names = [s.name for s in self.sources]
        for i, model in enumerate(self.models):
            if model.source not in names:
                valid = ", ".join(names) or "none configured"
                raise FieldError(
                    f"models[{i}].source", f"unknown source {model.source!r} (valid: {valid})"
                )

    def source(self, name: str) -> SourceConfig:
        """The source called ``name`` (KeyError when absent)."""
        for source in self.sources:
            if source.name == name:
                return source
        raise KeyError(name)


def load_config(path: str | Path) -> AgentConfig:
    """Read and validate a TOML file; every problem is a one-line ConfigError."""
    data = read_toml(path, MAX_CONFIG_BYTES)
    return parse_config(data, source=str(path))


def parse_config(data: Mapping[str, Any], *, source: str = "<dict>") -> AgentConfig:
    """Validate an already-parsed TOML document (``source`` only names it in errors)."""
    if "agent" not in data:
        raise ConfigError("agent: required table [agent] is missing (it holds device_id)")
    del source  # the key path is what names the problem; the file name is the caller's
    return build(AgentConfig, data)


def _check_unique(key: str, names: list[str]) -> None:
    seen: set[str] = set()
    for i, name in enumerate(names):
        if name in seen:
            raise FieldError(f"{key}[{i}].name", f"duplicate name {name!r}")
        seen.add(name)


def _kinds() -> str:
    return kinds()
