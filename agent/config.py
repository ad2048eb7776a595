"""The agent's one TOML file, read into frozen dataclasses and validated once at start-up.

Every table mirrors a dataclass (``[mqtt]`` -> ``MqttConfig``). A generic loader, ``build``,
turns a dict into any of these dataclasses from its type hints, rejects unknown keys, and
turns every mistake into one ``ConfigError`` line that names the key path
(``mqtt.port: must be 1..65535, got 70000``). Secrets never live in this file: MQTT
credentials come from the environment or systemd's credentials directory (issue 7).
"""

from __future__ import annotations

import dataclasses
import math
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

T = TypeVar("T")

_DEVICE_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
_LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
_CREDENTIALS_ELSEWHERE = (
    "secrets come from the environment or systemd credentials, not the config file"
)


class ConfigError(ValueError):
    """A bad configuration: one line that names the key path and what is wrong."""


class FieldError(ValueError):
    """Raised by a dataclass check about one of its own fields; the loader adds the path."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


def check(condition: bool, key: str, message: str) -> None:
    """Raise FieldError(key, message) unless ``condition`` holds (for __post_init__ checks)."""
    if not condition:
        raise FieldError(key, message)


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

    def __post_init__(self) -> None:
        check(
            _DEVICE_ID.fullmatch(self.device_id) is not None,
            "device_id",
            "must be 1..64 characters of [A-Za-z0-9._-] (one MQTT topic level), "
            f"got {self.device_id!r}",
        )
        check(self.state_dir != "", "state_dir", "must not be empty")
        check(
            self.stats_interval > 0,
            "stats_interval",
            f"must be > 0 seconds, got {self.stats_interval}",
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
            _valid_topic_prefix(self.discovery_prefix),
            "discovery_prefix",
            f"must be a non-empty topic without '+', '#' or NUL, got {self.discovery_prefix!r}",
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
            _valid_topic_prefix(self.topic_prefix),
            "topic_prefix",
            f"must be a non-empty topic without '+', '#' or NUL, got {self.topic_prefix!r}",
        )
        check(self.stats_qos in (0, 1, 2), "stats_qos", f"must be 0, 1 or 2, got {self.stats_qos}")
        check(self.backoff_min > 0, "backoff_min", f"must be > 0, got {self.backoff_min}")
        check(
            self.backoff_max >= self.backoff_min,
            "backoff_max",
            f"must be >= backoff_min ({self.backoff_min}), got {self.backoff_max}",
        )
        check(self.auth_backoff > 0, "auth_backoff", f"must be > 0, got {self.auth_backoff}")
        check(self.replay_rate > 0, "replay_rate", f"must be > 0, got {self.replay_rate}")
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
# [[sources]]: one options dataclass per kind


@dataclass(frozen=True)
class PcapOptions:
    """``kind = "pcap"``: replay a pcap/pcapng file, as fast as possible or paced by timestamps."""

    path: str
    realtime: bool = False
    loop: bool = False
    speed: float = 1.0  # with realtime: capture seconds per wall second (a demo replays at 15)

    def __post_init__(self) -> None:
        check(self.path != "", "path", "must not be empty")
        check(0 < self.speed <= 10_000, "speed", f"must be in (0, 10000], got {self.speed}")


@dataclass(frozen=True)
class LiveOptions:
    """``kind = "live"``: an AF_PACKET raw socket on one interface (Linux, CAP_NET_RAW)."""

    interface: str
    promiscuous: bool = False
    batch_frames: int = 4096
    batch_timeout: float = 0.05
    buffer_bytes: int = 8 * 1024 * 1024

    def __post_init__(self) -> None:
        check(
            0 < len(self.interface) < 16 and "/" not in self.interface,
            "interface",
            f"must be an interface name (1..15 characters), got {self.interface!r}",
        )
        check(
            1 <= self.batch_frames <= 1_000_000,
            "batch_frames",
            f"must be 1..1000000, got {self.batch_frames}",
        )
        check(
            0 < self.batch_timeout <= 10,
            "batch_timeout",
            f"must be in (0, 10] seconds, got {self.batch_timeout}",
        )
        check(
            self.buffer_bytes >= 65536,
            "buffer_bytes",
            f"must be >= 65536, got {self.buffer_bytes}",
        )


@dataclass(frozen=True)
class SensorTopic:
    """One MQTT topic feeding one sensor: the payload is a number, or ``field`` of a JSON object."""

    topic: str
    sensor: str
    field: str = ""

    def __post_init__(self) -> None:
        check(
            self.topic != "" and "\x00" not in self.topic,
            "topic",
            f"must be a non-empty MQTT topic filter, got {self.topic!r}",
        )
        check(
            _NAME.fullmatch(self.sensor) is not None,
            "sensor",
            f"must be 1..64 characters of [A-Za-z0-9._-], got {self.sensor!r}",
        )


@dataclass(frozen=True)
class MqttSensorsOptions:
    """``kind = "mqtt-sensors"``: readings from topics on a (local) broker."""

    topics: tuple[SensorTopic, ...]
    host: str = ""
    port: int = 0

    def __post_init__(self) -> None:
        check(len(self.topics) > 0, "topics", "must list at least one topic")
        check(
            0 <= self.port <= 65535, "port", f"must be 0..65535 (0: [mqtt].port), got {self.port}"
        )
        names = [t.sensor for t in self.topics]
        check(len(set(names)) == len(names), "topics", f"sensor names must be unique: {names}")

    @property
    def sensors(self) -> tuple[str, ...]:
        """Sensor names in the order they were configured (the feature columns' order)."""
        return tuple(t.sensor for t in self.topics)


@dataclass(frozen=True)
class CsvOptions:
    """``kind = "csv"``: replay sensor readings from a CSV file (one row per reading time)."""

    path: str
    sensors: tuple[str, ...]
    timestamp: str = "timestamp"
    realtime: bool = False
    speed: float = 1.0  # with realtime: recorded seconds per wall second

    def __post_init__(self) -> None:
        check(self.path != "", "path", "must not be empty")
        check(0 < self.speed <= 10_000, "speed", f"must be in (0, 10000], got {self.speed}")
        check(len(self.sensors) > 0, "sensors", "must list at least one column")
        check(
            self.timestamp not in self.sensors,
            "timestamp",
            f"the timestamp column {self.timestamp!r} cannot also be a sensor",
        )


@dataclass(frozen=True)
class HostOptions:
    """``kind = "host"``: psutil metrics of the gateway itself, one snapshot per time step."""


SourceOptions = PcapOptions | LiveOptions | MqttSensorsOptions | CsvOptions | HostOptions

SOURCE_OPTIONS: dict[str, type[Any]] = {
    "csv": CsvOptions,
    "host": HostOptions,
    "live": LiveOptions,
    "mqtt-sensors": MqttSensorsOptions,
    "pcap": PcapOptions,
}


@dataclass(frozen=True)
class SourceConfig:
    """``[[sources]]``: a named feature source; the keys besides name/kind/step are its options.

    ``step`` is how the source cuts time into steps (``"1s"``, ``"0.5s"``, ``"100p"``); a model
    on this source must have been trained with the same step.
    """

    name: str
    kind: str
    options: SourceOptions
    step: str = "1s"

    def __post_init__(self) -> None:
        check(
            _NAME.fullmatch(self.name) is not None,
            "name",
            f"must be 1..64 characters of [A-Za-z0-9._-], got {self.name!r}",
        )
        check(
            self.kind in SOURCE_OPTIONS,
            "kind",
            f"unknown source {self.kind!r} (valid: {', '.join(sorted(SOURCE_OPTIONS))})",
        )
        try:
            from agent.features.steps import StepSpec

            spec = StepSpec.parse(self.step)
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
        if kind not in SOURCE_OPTIONS:
            raise ConfigError(f"{_join(path, 'kind')}: unknown source {kind!r} (valid: {_kinds()})")
        own = {k: data[k] for k in ("name", "kind", "step") if k in data}
        rest = {k: v for k, v in data.items() if k not in own}
        options = build(SOURCE_OPTIONS[kind], rest, path)
        return build(cls, {**own, "options": options}, path)

    @property
    def step_spec(self) -> Any:
        """The parsed step (an ``agent.features.steps.StepSpec``)."""
        from agent.features.steps import StepSpec

        return StepSpec.parse(self.step)


# ---------------------------------------------------------------------------------------------
# [[models]]


@dataclass(frozen=True)
class ModelConfig:
    """``[[models]]``: a bundle run on one source's windows, with its debounce settings.

    An event is raised when ``raise_k`` of the last ``raise_n`` windows cross the threshold,
    or at once when a classifier's window scores at least ``raise_score``, and ended after
    ``clear_m`` clean windows in a row.
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
    path = Path(path)
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse_config(data, source=str(path))


def parse_config(data: Mapping[str, Any], *, source: str = "<dict>") -> AgentConfig:
    """Validate an already-parsed TOML document (``source`` only names it in errors)."""
    if "agent" not in data:
        raise ConfigError("agent: required table [agent] is missing (it holds device_id)")
    del source  # the key path is what names the problem; the file name is the caller's
    return build(AgentConfig, data)


# ---------------------------------------------------------------------------------------------
# the generic loader


def build(cls: type[T], data: Any, path: str = "") -> T:
    """Build dataclass ``cls`` from a dict using its type hints; errors name the key path.

    Handles str, int, float, bool, Literal, tuple[X, ...], nested dataclasses and ``X | None``.
    A class may list ``REJECTED_KEYS`` (key -> reason) and may take over its own parsing with a
    ``from_table(data, path)`` classmethod. Checks in ``__post_init__`` raise ValueError
    (prefixed with this table's path) or FieldError (prefixed with the path of its key).
    """
    if isinstance(data, cls):
        return data
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path or 'config'}: must be a table, got {_type_name(data)}")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    rejected: Mapping[str, str] = getattr(cls, "REJECTED_KEYS", {})
    for key in data:
        if key in rejected:
            raise ConfigError(f"{_join(path, key)}: {rejected[key]}")
        if key not in known:
            valid = ", ".join(sorted(known))
            raise ConfigError(f"{_join(path, key)}: unknown key (valid: {valid})")
    kwargs: dict[str, Any] = {}
    for name, f in known.items():
        if name in data:
            kwargs[name] = _convert(hints[name], data[name], _join(path, name))
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{_join(path, name)}: required")
    try:
        return cls(**kwargs)
    except FieldError as exc:
        raise ConfigError(f"{_join(path, exc.key)}: {exc}") from None
    except ConfigError:
        raise
    except ValueError as exc:
        raise ConfigError(f"{path or 'config'}: {exc}") from None


def _convert(hint: Any, value: Any, path: str) -> Any:
    """Check ``value`` against one type hint, converting tables and arrays as it goes."""
    origin = typing.get_origin(hint)
    if origin is typing.Union or origin is types.UnionType:
        return _convert_union(typing.get_args(hint), value, path)
    if origin is Literal:
        choices = typing.get_args(hint)
        if value not in choices or type(value) is not type(choices[0]):
            shown = ", ".join(repr(c) for c in choices)
            raise ConfigError(f"{path}: must be one of {shown}, got {value!r}")
        return value
    if origin is tuple:
        return _convert_tuple(typing.get_args(hint), value, path)
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        from_table = getattr(hint, "from_table", None)
        if from_table is not None:
            return from_table(value, path)
        return build(hint, value, path)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: must be true or false, got {_type_name(value)}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: must be an integer, got {_type_name(value)}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{path}: must be a number, got {_type_name(value)}")
        if not math.isfinite(value):
            raise ConfigError(f"{path}: must be a finite number, got {value}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}: must be a string, got {_type_name(value)}")
        return value
    if hint is Any:
        return value
    raise TypeError(f"{path}: the loader cannot handle type {hint!r}")


def _convert_union(args: tuple[Any, ...], value: Any, path: str) -> Any:
    """``X | None`` (an absent key keeps the default) and unions of dataclasses."""
    members = [a for a in args if a is not type(None)]
    if len(members) == 1:
        return _convert(members[0], value, path)
    for member in members:
        if isinstance(value, member):
            return value
    raise ConfigError(f"{path}: must be a table, got {_type_name(value)}")


def _convert_tuple(args: tuple[Any, ...], value: Any, path: str) -> tuple[Any, ...]:
    """``tuple[X, ...]`` from a TOML array (or array of tables)."""
    if not isinstance(value, list | tuple):
        raise ConfigError(f"{path}: must be an array, got {_type_name(value)}")
    if len(args) == 2 and args[1] is Ellipsis:
        return tuple(_convert(args[0], item, f"{path}[{i}]") for i, item in enumerate(value))
    if len(args) != len(value):
        raise ConfigError(f"{path}: must have {len(args)} items, got {len(value)}")
    return tuple(
        _convert(a, item, f"{path}[{i}]")
        for i, (a, item) in enumerate(zip(args, value, strict=True))
    )


def _check_unique(key: str, names: list[str]) -> None:
    seen: set[str] = set()
    for i, name in enumerate(names):
        if name in seen:
            raise FieldError(f"{key}[{i}].name", f"duplicate name {name!r}")
        seen.add(name)


def _valid_topic_prefix(topic: str) -> bool:
    return topic != "" and not any(c in topic for c in "+#\x00")


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _kinds() -> str:
    return ", ".join(sorted(SOURCE_OPTIONS))


def _type_name(value: Any) -> str:
    names = {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "an array",
        dict: "a table",
    }
    return names.get(type(value), type(value).__name__)
