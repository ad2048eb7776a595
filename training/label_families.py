"""Each trained label's attack family, for the manifest's ``categories`` map.

A label's family comes from, in order: the mapping file (a ``[[rule]]``'s ``family`` for its
``label``, or the ``[families]`` table, ``label = "family"``), then the built-in rules of
``agent.families``. A label that neither names is the ``unknown`` family with a loud warning
naming the label and the fix: it still raises detections (an attack of no known family), and
the operator can name its family in the mapping file and retrain.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from agent.config_loader import read_toml
from agent.families import BENIGN, UNKNOWN, builtin_family, check_family

logger = logging.getLogger(__name__)

MAPPING_TABLES = ("rule", "families")
MAX_MAPPING_BYTES = 1 << 20  # rules for a folder of captures: a few KB


def read_mapping(path: str | Path) -> dict[str, Any]:
    """A mapping file's TOML, bounded; a bad file is a ValueError naming it."""
    return read_toml(path, MAX_MAPPING_BYTES)


def mapping_families(path: str | Path) -> dict[str, str]:
    """label -> family named by a mapping file; ValueError names a bad table, key or family."""
    data = read_mapping(path)
    unknown = set(data) - set(MAPPING_TABLES)
    if unknown:
        raise ValueError(f"{path}: unknown tables {sorted(unknown)} (only [[rule]], [families])")
    named: dict[str, str] = {}

    def name(where: str, label: object, family: object) -> None:
        if not isinstance(label, str) or not isinstance(family, str):
            raise ValueError(f"{where}: label and family must be strings")
        try:
            checked = check_family(family)
        except ValueError as exc:
            raise ValueError(f"{where}.family: {exc}") from None
        if named.setdefault(label, checked) != checked:
            raise ValueError(f"{where}: label {label!r} is {named[label]!r} elsewhere")

    families = data.get("families", {})
    if not isinstance(families, dict):
        raise ValueError(f"{path}: [families] must be a table of label = family")
    for label, family in families.items():
        name(f"families.{label}", label, family)
    rules = data.get("rule", [])
    if not isinstance(rules, list):
        raise ValueError(f"{path}: rule must be [[rule]] tables")
    for i, rule in enumerate(rules):
        if isinstance(rule, dict) and "family" in rule:
            name(f"rule[{i}]", rule.get("label"), rule["family"])
    return named


def label_families(
    labels: list[str], benign: int | None, mapping: str | Path | None = None
) -> dict[str, str]:
    """Every label's family; the benign class is ``benign``."""
    named = mapping_families(mapping) if mapping else {}
    out: dict[str, str] = {}
    missing: list[str] = []
    for i, label in enumerate(labels):
        if i == benign:
            out[label] = BENIGN
            continue
        family = named.get(label) or builtin_family(label)
        if family is None:
            missing.append(label)
            family = UNKNOWN
        out[label] = family
    if missing:
        logger.warning(
            "no attack family for %s: reported as %r; name it in a mapping file "
            '([families] %s = "flood") and retrain',
            ", ".join(missing),
            UNKNOWN,
            missing[0],
        )
    return out
