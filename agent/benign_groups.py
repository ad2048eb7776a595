"""Feature groups of the benign model: one edge per group instead of one per window.

One score per window (the mean error over every summary dimension) reads an ARP poisoning
that moves two features like a site's everyday spread over many: a site whose byte counts or
packet timing sit beyond the training network's raises that one edge, and the attack drowns
under it. Per group (volume, protocols, ARP, services, TCP flags, MQTT, addressing, timing,
TTL, fragments) each group has its own score and its own edge, signed with the bundle and
raised by a site calibration one group at a time; a window's distance from benign is then its
largest ratio of a group's score to that group's edge, so the fusion downstream still sees one
number per window (1 at the edge).

Until a site calibration brings group edges, a window is judged by the one score over every
dimension against the one signed edge, as a bundle without groups: per-group edges learn where a
site's own spread lies, and before any site is seen the aggregate edge is the conservative one
(each group's signed edge is at a share of the target rate, so between them the training
network's own traffic crosses some group's edge more often than the one edge).

A group's score is its largest dimension's error (mean, max and last step of each of its
features), not their mean: two features of fifteen dimensions would be diluted again. The
error is measured against the window scaled up to ``range`` times the benign range rather than
clipped at it: the scaler maps the training maximum to 1, so an attack at 12 times the ARP
replies of any benign step and a busy site's step just past that maximum both read 1 once
clipped. The model still sees the clipped input it was trained on; only the error looks past.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from agent.bundle import BundleError, Scaler

MAX_GROUPS = 64
MAX_NAME = 40
MAX_RANGE = 1000.0  # x the benign range: beyond it an error says nothing more
MAX_START = 100.0  # a stream start's edge: 1 to this x the steady one (as the section's)

# Groups of traffic-v1 columns (desktop training writes them into the signed section; the
# agent reads whatever columns the section names).
TRAFFIC_GROUPS: dict[str, tuple[str, ...]] = {
    "volume": ("packets", "bytes", "size_min", "size_max", "size_mean", "size_std", "payload_mean"),
    "protocols": ("tcp", "udp", "other_l4", "other_l3"),
    "icmp": ("icmp", "icmp_echo_req"),
    "arp": ("arp", "arp_reply"),
    "services": ("dns", "mqtt", "http", "https", "telnet", "ssh"),
    "tcp_flags": (
        "tcp_syn", "tcp_syn_no_ack", "tcp_syn_ack", "tcp_ack", "tcp_fin", "tcp_rst", "tcp_psh",
        "tcp_urg", "syn_no_ack_ratio", "rst_ratio", "fin_ratio",
    ),
    "mqtt": (
        "mqtt_connect", "mqtt_connack", "mqtt_publish", "mqtt_subscribe", "mqtt_pingreq",
        "mqtt_disconnect", "mqtt_other",
    ),
    "addressing": (
        "distinct_src", "distinct_dst", "distinct_dport", "entropy_src", "entropy_dst",
        "entropy_dport", "new_flows",
    ),
    "timing": ("iat_mean", "iat_std"),
    "ttl": ("ttl_min", "ttl_mean", "ttl_max"),
    "fragments": ("fragments",),
}  # fmt: skip
RANGE = 10.0  # errors read up to 10 x the benign range: an order of magnitude past it


@dataclass(frozen=True)
class Group:
    """A named set of feature columns and the raw group score at the edge of benign."""

    name: str
    columns: tuple[str, ...]
    threshold: float


@dataclass(frozen=True)
class Groups:
    """The section's ``groups``: the range errors are read to, the groups, and the edge of the
    largest group ratio in a stream's first ``start_windows`` windows (None: 1 throughout)."""

    range: float
    groups: tuple[Group, ...]
    start_threshold: float | None = None
    start_windows: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON form inside the signed section."""
        out: dict[str, Any] = {
            "range": self.range,
            "list": [
                {"name": g.name, "columns": list(g.columns), "threshold": g.threshold}
                for g in self.groups
            ],
        }
        if self.start_threshold is not None:
            out["start_threshold"] = self.start_threshold
            out["start_windows"] = self.start_windows
        return out

    def layout(self, columns: Sequence[str]) -> Layout:
        """Where each group's summary dimensions are (mean, max, last step of its columns)."""
        width = len(columns)
        at = {c: i for i, c in enumerate(columns)}
        dims = [[k * width + at[c] for k in range(3) for c in g.columns] for g in self.groups]
        starts = np.cumsum([0] + [len(d) for d in dims[:-1]])
        return Layout(np.concatenate(dims).astype(np.intp), starts.astype(np.intp))


class Layout(NamedTuple):
    """The groups' dimensions one after another (``order``) and where each group starts."""

    order: npt.NDArray[np.intp]
    starts: npt.NDArray[np.intp]


def group_columns(columns: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """``TRAFFIC_GROUPS`` over ``columns``; a column no group names is a group of its own."""
    present = set(columns)
    found = {n: tuple(c for c in cs if c in present) for n, cs in TRAFFIC_GROUPS.items()}
    groups = {n: cs for n, cs in found.items() if cs}
    named = {c for cs in groups.values() for c in cs}
    groups.update({c: (c,) for c in columns if c not in named and c not in groups})
    return groups


def _fail(key: str, why: str) -> BundleError:
    return BundleError(f"bundle manifest: extra.openset.groups{key}: {why}")


def _positive(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )


def parse_groups(raw: Any, columns: Sequence[str], max_start_windows: int) -> Groups | None:
    """The optional ``groups`` object: None when absent; BundleError naming the key if bad."""
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise _fail("", "expected an object")
    span: Any = raw.get("range")
    if not _positive(span) or not 1.0 <= float(span) <= MAX_RANGE:
        raise _fail(".range", f"expected a number from 1 to {MAX_RANGE:g}")
    items = raw.get("list")
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_GROUPS:
        raise _fail(".list", f"expected a list of 1 to {MAX_GROUPS} groups")
    known, seen, names = set(columns), set[str](), set[str]()
    groups = []
    for i, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise _fail(f".list[{i}]", "expected an object")
        name: Any = item.get("name")
        cols: Any = item.get("columns")
        threshold: Any = item.get("threshold")
        if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME or name in names:
            raise _fail(f".list[{i}].name", f"expected a unique name of 1 to {MAX_NAME} chars")
        if not isinstance(cols, list) or not cols or len(cols) > len(known):
            raise _fail(f".list[{i}].columns", "expected a non-empty list of columns")
        for c in cols:
            if not isinstance(c, str) or c not in known or c in seen:
                shown = repr(c)[:MAX_NAME]
                raise _fail(f".list[{i}].columns", f"{shown} is not a column or is in 2 groups")
            seen.add(c)
        if not _positive(threshold):
            raise _fail(f".list[{i}].threshold", "expected a finite number > 0")
        names.add(name)
        groups.append(Group(name, tuple(cols), float(threshold)))
    start, windows = _parse_start(raw, max_start_windows)
    return Groups(float(span), tuple(groups), start, windows)


def _parse_start(raw: Mapping[str, Any], most: int) -> tuple[float | None, int | None]:
    """The optional group stream-start edge (a ratio, 1 to MAX_START) and its 1..most windows."""
    start: Any = raw.get("start_threshold")
    windows: Any = raw.get("start_windows")
    if start is None:
        if windows is not None:
            raise _fail(".start_windows", "given without a start_threshold")
        return None, None
    if not _positive(start) or not 1.0 <= float(start) <= MAX_START:
        raise _fail(".start_threshold", f"expected a number from 1 to {MAX_START:g}")
    if not isinstance(windows, int) or isinstance(windows, bool) or not 1 <= windows <= most:
        raise _fail(".start_windows", f"expected a whole number from 1 to {most}")
    return float(start), windows


def wide_transform(scaler: Any, raw: npt.NDArray[Any], span: float) -> npt.NDArray[np.float32]:
    """``scaler``'s scaling without its clip at 1: 0 to ``span`` x the benign range."""
    lo = np.asarray(scaler.min, np.float64)
    width = np.asarray(scaler.max, np.float64) - lo
    x = np.asarray(raw, np.float64)
    if not isinstance(scaler, Scaler):  # the log1p scaler: its range is in log1p units
        x = np.log1p(np.maximum(x, 0.0))
    safe = np.where(width > 0, width, 1.0)
    scaled = np.where(width > 0, (x - lo) / safe, 0.0)
    return np.clip(scaled, 0.0, span).astype(np.float32)


def clips_at_range(scaler: Any) -> bool:
    """True when ``scaler.transform`` is the wide scaling clipped at 1 (computed once then)."""
    if not isinstance(scaler, Scaler):
        return True
    return scaler.clip_low == scaler.min and scaler.clip_high == scaler.max


def group_scores(error: npt.NDArray[np.float64], layout: Layout) -> npt.NDArray[np.float64]:
    """(N, 3F) per-dimension errors -> (N, groups): each group's largest."""
    return np.asarray(np.maximum.reduceat(error[:, layout.order], layout.starts, axis=1))
