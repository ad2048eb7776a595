"""The config loader's primitives: one error type, field checks and a dataclass builder.

``build`` turns a parsed TOML table into any frozen dataclass from its type hints, rejects
unknown keys, and turns every mistake into one ``ConfigError`` line that names the key path.
The MQTT checks live here too, because topics and client ids appear in several tables and
a bad one must be refused at load, not by the broker after the agent has started.
"""

from __future__ import annotations

import dataclasses
import errno
import math
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

T = TypeVar("T")

# Topic names and filters an MQTT broker accepts are UTF-8 strings of at most 65,535 bytes;
# ours are joined from a prefix, the device id and a few fixed levels, so a prefix is kept far
# below that (and short enough for log lines and Home Assistant's entity ids).
MAX_TOPIC_BYTES = 1024
MAX_CLIENT_ID_BYTES = 256


# an interface that is missing or down now: a runtime condition, not a mistake in the config
DEVICE_AWAY = frozenset({errno.ENODEV, errno.ENXIO, errno.ENETDOWN})


class SourceUnavailable(RuntimeError):
    """A source's device is missing or down at start (exit 1, so it is started again)."""


class ConfigError(ValueError):
    """A bad configuration: one line that names the key path and what is wrong."""


def read_toml(path: str | Path, max_bytes: int) -> dict[str, Any]:
    """A TOML file as a dict; anything else (unreadable, too large, not UTF-8, not TOML, nested
    too deeply) is one ConfigError line naming the file."""
    try:
        with Path(path).open("rb") as fh:
            raw = fh.read(max_bytes + 1)
        if len(raw) > max_bytes:
            raise ConfigError(f"{path}: larger than {max_bytes} bytes; not a config file")
        return tomllib.loads(raw.decode("utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: not UTF-8 at byte {exc.start}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except RecursionError:  # tomllib recurses once per nested array or inline table
        raise ConfigError(f"{path}: not valid TOML: arrays or tables nested too deeply") from None


class FieldError(ValueError):
    """Raised by a dataclass check about one of its own fields; the loader adds the path."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


def check(condition: bool, key: str, message: str) -> None:
    """Raise FieldError(key, message) unless ``condition`` holds (for __post_init__ checks)."""
    if not condition:
        raise FieldError(key, message)


def valid_topic_prefix(topic: str) -> bool:
    """A topic we publish under: non-empty, no wildcards or NUL, not ``$``-reserved, short."""
    return (
        topic != ""
        and not any(c in topic for c in "+#\x00")
        and not topic.startswith("$")
        and utf8_len(topic) <= MAX_TOPIC_BYTES
    )


def topic_filter_problem(topic: str) -> str:
    """Why ``topic`` is not a valid MQTT subscription filter; "" when it is valid.

    ``#`` must be the last level and alone in it, ``+`` alone in its level (MQTT 3.1.1 §4.7):
    Mosquitto refuses anything else and paho's loop would then never subscribe.
    """
    if topic == "":
        return "must not be empty"
    if "\x00" in topic:
        return "must not contain NUL"
    if utf8_len(topic) > MAX_TOPIC_BYTES:
        return f"must be at most {MAX_TOPIC_BYTES} bytes of UTF-8"
    levels = topic.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            return "'#' must be a whole level and the last one"
        if "+" in level and level != "+":
            return "'+' must be a whole level"
    return ""


def utf8_len(text: str) -> int:
    """Length in bytes as MQTT sends it (surrogates, which UTF-8 cannot carry, count as 4)."""
    return len(text.encode("utf-8", "surrogatepass"))


# the generic loader


def build(cls: type[T], data: Any, path: str = "") -> T:
    """Build dataclass ``cls`` from a dict using its type hints; errors name the key path.

    Handles str, int, float, bool, Literal, tuple[X, ...], Mapping[str, X], nested dataclasses
    and ``X | None``.
    A class may list ``REJECTED_KEYS`` (key -> reason) and may take over its own parsing with a
    ``from_table(data, path)`` classmethod. Checks in ``__post_init__`` raise ValueError
    (prefixed with this table's path) or FieldError (prefixed with the path of its key).
    """
    if isinstance(data, cls):
        return data
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path or 'config'}: must be a table, got {type_name(data)}")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    rejected: Mapping[str, str] = getattr(cls, "REJECTED_KEYS", {})
    for key in data:
        if key in rejected:
            raise ConfigError(f"{join_key(path, key)}: {rejected[key]}")
        if key not in known:
            valid = ", ".join(sorted(known))
            raise ConfigError(f"{join_key(path, key)}: unknown key (valid: {valid})")
    kwargs: dict[str, Any] = {}
    for name, f in known.items():
        if name in data:
            kwargs[name] = _convert(hints[name], data[name], join_key(path, name))
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{join_key(path, name)}: required")
    try:
        return cls(**kwargs)
    except FieldError as exc:
        raise ConfigError(f"{join_key(path, exc.key)}: {exc}") from None
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
    if origin is Mapping:
        return _convert_mapping(typing.get_args(hint), value, path)
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        from_table = getattr(hint, "from_table", None)
        if from_table is not None:
            return from_table(value, path)
        return build(hint, value, path)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: must be true or false, got {type_name(value)}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: must be an integer, got {type_name(value)}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{path}: must be a number, got {type_name(value)}")
        if not math.isfinite(value):
            raise ConfigError(f"{path}: must be a finite number, got {value}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}: must be a string, got {type_name(value)}")
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
    raise ConfigError(f"{path}: must be a table, got {type_name(value)}")


def _convert_tuple(args: tuple[Any, ...], value: Any, path: str) -> tuple[Any, ...]:
    """``tuple[X, ...]`` from a TOML array (or array of tables)."""
    if not isinstance(value, list | tuple):
        raise ConfigError(f"{path}: must be an array, got {type_name(value)}")
    if len(args) == 2 and args[1] is Ellipsis:
        return tuple(_convert(args[0], item, f"{path}[{i}]") for i, item in enumerate(value))
    if len(args) != len(value):
        raise ConfigError(f"{path}: must have {len(args)} items, got {len(value)}")
    return tuple(
        _convert(a, item, f"{path}[{i}]")
        for i, (a, item) in enumerate(zip(args, value, strict=True))
    )


def _convert_mapping(args: tuple[Any, ...], value: Any, path: str) -> Mapping[str, Any]:
    """``Mapping[str, X]`` from a TOML table, read-only (the config is frozen)."""
    if not isinstance(value, Mapping):
        raise ConfigError(f"{path}: must be a table, got {type_name(value)}")
    converted = {str(k): _convert(args[1], v, join_key(path, str(k))) for k, v in value.items()}
    return types.MappingProxyType(converted)


def join_key(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def type_name(value: Any) -> str:
    names = {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "an array",
        dict: "a table",
    }
    return names.get(type(value), type(value).__name__)
