"""AgentConfig -> TOML text that ``parse_config`` reads back to an equal AgentConfig.

Built from the config dataclasses themselves, so a new key is rendered without touching this
file. A key is written when it is required or differs from its default, which keeps a rendered
file short and shows what the writer chose; a ``[[sources]]`` table is flat (its options' keys
sit beside name, kind and step, as ``SourceConfig.from_table`` reads them). Optional tables
(``[mqtt.tls]``) are written when set, even when every key has its default, because their
presence is the setting. ``comments`` maps a dotted key or table path (``mqtt.tls``,
``sources.step``; no list indices) to a comment line written just above it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from agent.config import AgentConfig, SourceConfig

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def render_config(
    config: AgentConfig, *, header: Sequence[str] = (), comments: Mapping[str, str] | None = None
) -> str:
    """The TOML text of ``config``; ``header`` lines are written first as comments."""
    out = _Writer(comments or {})
    for line in header:
        out.lines.extend(_comment(line))
    out.table(config, "", array=False)
    return "\n".join(out.lines).strip("\n") + "\n"


def toml_value(value: Any) -> str:
    """One TOML value: string, bool, int, float, array or inline table."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, Mapping):
        items = ", ".join(f"{_key(str(k))} = {toml_value(v)}" for k, v in value.items())
        return "{ " + items + " }" if items else "{}"
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot render {type(value).__name__} as TOML")


def _string(value: str) -> str:
    # JSON's escapes are TOML's; DEL is the one control character JSON leaves raw and TOML refuses.
    return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")


def _comment(text: str) -> list[str]:
    """Comment lines for ``text``: a line break cannot end the comment and start a key.

    TOML allows no control character but tab in a comment: any other shows as "?".
    """
    lines = text.splitlines() or [""]
    clean = ("".join(c if c.isprintable() or c == "\t" else "?" for c in line) for line in lines)
    return [f"# {line}" if line else "#" for line in clean]


def _key(name: str) -> str:
    return name if _BARE_KEY.fullmatch(name) else _string(name)


def _default(field: dataclasses.Field[Any]) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return dataclasses.MISSING


def _is_table_list(value: Any) -> bool:
    return (
        isinstance(value, tuple) and bool(value) and all(dataclasses.is_dataclass(v) for v in value)
    )


class _Writer:
    def __init__(self, comments: Mapping[str, str]) -> None:
        self.comments = comments
        self.lines: list[str] = []

    def comment(self, path: str) -> None:
        if path in self.comments:
            self.lines.extend(_comment(self.comments[path]))

    def table(self, obj: Any, path: str, *, array: bool, force: bool = False) -> None:
        """Write ``obj``'s keys under ``[path]`` (``[[path]]`` for an array element)."""
        scalars, tables = self._split(obj)
        if path and (scalars or array or force):
            self.lines.append("")
            self.comment(path)
            self.lines.append(f"[[{path}]]" if array else f"[{path}]")
        for name, value in scalars:
            self.comment(f"{path}.{name}" if path else name)
            self.lines.append(f"{_key(name)} = {toml_value(value)}")
        for name, value, optional in tables:
            child = f"{path}.{name}" if path else name
            if _is_table_list(value):
                for item in value:
                    self.table(item, child, array=True)
            else:
                self.table(value, child, array=False, force=optional)

    def _split(self, obj: Any) -> tuple[list[tuple[str, Any]], list[tuple[str, Any, bool]]]:
        """(scalar keys to write, sub-tables to write with whether their presence matters)."""
        fields = list(dataclasses.fields(obj))
        values = {f.name: getattr(obj, f.name) for f in fields}
        if isinstance(obj, SourceConfig):  # options are flattened into the source's table
            option_fields = dataclasses.fields(obj.options)
            fields = [f for f in fields if f.name != "options"] + list(option_fields)
            values.update({f.name: getattr(obj.options, f.name) for f in option_fields})
        scalars: list[tuple[str, Any]] = []
        tables: list[tuple[str, Any, bool]] = []
        for field in fields:
            value, default = values[field.name], _default(field)
            if value is None or (default is not dataclasses.MISSING and value == default):
                continue
            if dataclasses.is_dataclass(value) or _is_table_list(value):
                tables.append((field.name, value, default is None))
            else:
                scalars.append((field.name, value))
        return scalars, tables
