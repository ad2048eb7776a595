"""Named, versioned feature sets and the schema id every bundle carries.

The schema id is a hash of the set's name, version and ordered column names: a bundle
trained on one column order can never be fed another, because the agent refuses a bundle
whose schema id it cannot compute.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.digest import sha256_hex


@dataclass(frozen=True)
class FeatureSet:
    """An ordered list of feature columns under a name and version, e.g. ``traffic-v1``."""

    name: str
    version: int
    columns: tuple[str, ...]

    @property
    def id(self) -> str:
        """``name-vN``, the human name of the set."""
        return f"{self.name}-v{self.version}"

    @property
    def schema_id(self) -> str:
        """First 16 hex digits of sha256 over the id and the ordered column names."""
        text = self.id + "\n" + "\n".join(self.columns)
        return sha256_hex(text.encode("utf-8"))[:16]

    @property
    def width(self) -> int:
        return len(self.columns)

    def index(self, column: str) -> int:
        """Position of ``column``; KeyError names the set when it is not there."""
        try:
            return self.columns.index(column)
        except ValueError:
            raise KeyError(f"{self.id} has no column {column!r}") from None


_REGISTRY: dict[str, FeatureSet] = {}


def register(feature_set: FeatureSet) -> FeatureSet:
    """Make a feature set findable by its id (modules register theirs at import)."""
    _REGISTRY[feature_set.id] = feature_set
    return feature_set


def lookup(set_id: str) -> FeatureSet:
    """The registered feature set called ``set_id``; KeyError lists the known ones."""
    if set_id not in _REGISTRY:
        _load_builtin()
    try:
        return _REGISTRY[set_id]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY)) or "none"
        raise KeyError(f"unknown feature set {set_id!r} (known: {known})") from None


def _load_builtin() -> None:
    """Import the modules that define the built-in sets, so lookup() finds them."""
    import importlib

    for module in ("agent.features.traffic", "agent.features.telemetry", "agent.features.host"):
        importlib.import_module(module)
