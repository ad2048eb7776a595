"""A folder of pcap / pcapng files -> traffic-v1 steps per file, labelled per file or by rules.

Steps come from the agent's own reader and featurizer (``agent.features.capture`` and
``agent.features.traffic``), so training sees exactly what the gateway computes, at the IP
layer: the link type (MQTTset mixes Linux cooked capture and Ethernet) never reaches a
feature. Each file is a group, so windows never straddle two files.

Labels: the file name's part before the first ``-`` (``bruteforce-train.pcapng`` ->
``bruteforce``), or a TOML mapping file of ``[[rule]]`` tables with ``glob``, ``label`` and
optional ``start`` / ``end`` (epoch seconds) and ``address`` (an IPv4/IPv6 address, source or
destination). A rule without an address labels the steps that start inside its time range;
address rules label packets, and a step holding packets of such rules takes the rule label
with most packets (mixed captures: mark the attacker, the rest keeps the file's label).

A capture labelled as an attack may open with traffic that is not yet the attack (a fuzzer's
tool connecting and subscribing first). The folder's ``onsets.json`` names how many packets
precede each such attack: the steps wholly before it are labelled benign (rules still
override), and ``iotids evaluate --events`` counts the attack's clock from it.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from agent.config_loader import FieldError
from agent.features.packets import PacketTable
from agent.features.steps import StepSpec
from training.datasets.base import BENIGN_NAMES, Dataset, check_label

if TYPE_CHECKING:
    from agent.features.packets import Capture
    from agent.progress import Progress

logger = logging.getLogger(__name__)

PATTERNS = ("*.pcap", "*.pcapng", "*.cap")
ONSETS_FILE = "onsets.json"  # a captures folder's packets before each attack (read_onsets)
MAX_ONSETS_BYTES = 1 << 20


@dataclass(frozen=True)
class Rule:
    """Label the steps of files matching ``glob`` (inside ``[start, end)`` when given)."""

    glob: str
    label: str
    start: float | None = None
    end: float | None = None
    address: str | None = None
    family: str | None = None  # the label's attack family (training.label_families reads it)

    def __post_init__(self) -> None:
        try:
            check_label(self.label)
        except ValueError as exc:
            raise FieldError("label", str(exc)) from None
        if self.address is not None:
            try:
                ipaddress.ip_address(self.address)
            except ValueError:
                raise FieldError("address", f"not an IP address: {self.address[:60]!r}") from None

    def address_words(self) -> tuple[int, int] | None:
        """The address as the packet table's (hi, lo) 64-bit words, IPv4 mapped to ::ffff:."""
        if self.address is None:
            return None
        ip = ipaddress.ip_address(self.address)
        value = int(ip) | (0xFFFF << 32) if ip.version == 4 else int(ip)
        return value >> 64, value & 0xFFFF_FFFF_FFFF_FFFF


def read_rules(path: str | Path) -> list[Rule]:
    """``[[rule]]`` tables of a TOML mapping file; an unknown key names the rule."""
    from agent.config_loader import build
    from training.label_families import read_mapping

    tables = read_mapping(path).get("rule", [])
    if not isinstance(tables, list):
        raise ValueError(f"{path}: rule must be [[rule]] tables")
    rules = []
    for i, table in enumerate(tables):
        if not isinstance(table, dict):
            raise ValueError(f"rule[{i}]: must be a table")
        unknown = set(table) - {"glob", "label", "start", "end", "address", "family"}
        if unknown:
            raise ValueError(f"rule[{i}]: unknown keys {sorted(unknown)}")
        if "glob" not in table or "label" not in table:
            raise ValueError(f"rule[{i}]: needs glob and label")
        rules.append(build(Rule, table, f"rule[{i}]"))  # each key's type, one line naming it
    return rules


def label_from_name(file: Path) -> str:
    """The part of the file name before the first ``-`` (the whole stem when there is none)."""
    return file.name.split("-", 1)[0] if "-" in file.name else file.stem


def capture_files(path: str | Path) -> list[Path]:
    """``path`` itself, or every capture in the folder in name order."""
    root = Path(path)
    if root.is_file():
        return [root]
    named = "one capture per class, named by class (benign-a.pcap, synflood-b.pcapng)"
    if not root.exists():
        raise FileNotFoundError(f"--path {root}: no such file or folder; give a folder of {named}")
    files = sorted({f for pattern in PATTERNS for f in root.glob(pattern)})
    if not files:
        raise FileNotFoundError(f"--path {root}: no .pcap/.pcapng files in it; put {named} there")
    return files


def read_onsets(root: Path) -> dict[str, int]:
    """A captures folder's ``ONSETS_FILE``: capture name -> packets before its attack (none:
    every attack starts at its capture's first packet). Hostile input: bounded, counts only."""
    from agent import json_bounded

    path = root / ONSETS_FILE
    if not path.is_file():
        return {}
    if path.stat().st_size > MAX_ONSETS_BYTES:
        raise ValueError(f"{ONSETS_FILE}: larger than {MAX_ONSETS_BYTES} bytes")
    try:
        data = json_bounded.loads(path.read_bytes())
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"{ONSETS_FILE}: not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{ONSETS_FILE}: must map capture names to packet counts")
    onsets = {}
    for name, value in data.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{ONSETS_FILE}: {name}: must be a packet count >= 0, got {value!r}")
        onsets[name] = value
    return onsets


def folder_onsets(path: str | Path, files: list[Path]) -> dict[str, int]:
    """``read_onsets`` of a folder, each name one of its ``files``: a misspelt name would
    silently leave that attack starting at its first packet."""
    root = Path(path)
    onsets = read_onsets(root) if root.is_dir() else {}
    unknown = sorted(set(onsets) - {file.name for file in files})
    if unknown:
        raise ValueError(f"{ONSETS_FILE}: no capture named {', '.join(unknown)}")
    return onsets


def onset_time(name: str, ts_ns: npt.NDArray[np.int64], onset: int) -> int:
    """The attack's first packet time: packet ``onset`` in time order (0: the first)."""
    if not 0 <= onset < len(ts_ns):
        raise ValueError(
            f"{ONSETS_FILE}: {name}: onset {onset} is not under its {len(ts_ns)} packets"
        )
    return int(np.partition(ts_ns, onset)[onset])


def step_labels(
    file: Path,
    start_ns: npt.NDArray[np.int64],
    rules: list[Rule],
    benign_before: tuple[str, int] | None = None,
) -> npt.NDArray[np.str_]:
    """Each step's label: the name label, overridden by matching rules in order.

    ``benign_before`` (benign label, the attack's first packet time): a step that ends by then
    holds none of the attack and takes the benign label, before any rule.
    """
    labels = np.full(len(start_ns), label_from_name(file), dtype=object)
    if benign_before is not None and len(start_ns):
        ends = np.append(start_ns[1:], np.iinfo(np.int64).max)
        labels[ends <= benign_before[1]] = benign_before[0]
    seconds = start_ns / 1e9
    for rule in rules:
        if rule.address is not None or not fnmatch.fnmatch(file.name, rule.glob):
            continue
        inside = np.ones(len(start_ns), bool)
        if rule.start is not None:
            inside &= seconds >= rule.start
        if rule.end is not None:
            inside &= seconds < rule.end
        labels[inside] = rule.label
    return labels.astype(np.str_)


def address_labels(
    file: Path,
    table: PacketTable,
    step_start_ns: npt.NDArray[np.int64],
    spec: StepSpec,
    labels: npt.NDArray[np.str_],
    rules: list[Rule],
) -> npt.NDArray[np.str_]:
    """Step labels overridden by the address rules' labels of the packets inside each step."""
    mine = [r for r in rules if r.address is not None and fnmatch.fnmatch(file.name, r.glob)]
    if not mine or not len(step_start_ns):
        return labels
    packet_label = np.full(len(table), "", dtype=object)
    seconds = table.ts_ns / 1e9
    for rule in mine:
        words = rule.address_words()
        assert words is not None
        hi, lo = np.uint64(words[0]), np.uint64(words[1])
        hit = ((table.src_hi == hi) & (table.src_lo == lo)) | (
            (table.dst_hi == hi) & (table.dst_lo == lo)
        )
        if rule.start is not None:
            hit &= seconds >= rule.start
        if rule.end is not None:
            hit &= seconds < rule.end
        packet_label[hit] = rule.label
    if spec.kind == "time":
        step = table.ts_ns // spec.size_ns - step_start_ns[0] // spec.size_ns
    else:
        from agent.features.mixed import packet_rows
        from agent.features.traffic import MAX_IDLE_STEPS

        step = packet_rows(table.ts_ns, spec, MAX_IDLE_STEPS)
    out = labels.astype(object)
    tagged = packet_label != ""
    for k in np.unique(step[tagged]):
        if 0 <= k < len(out):
            names, counts = np.unique(packet_label[tagged & (step == k)], return_counts=True)
            out[k] = names[counts.argmax()]
    return out.astype(np.str_)


def load(
    path: str,
    step: str = "1s",
    mapping: str | None = None,
    max_rows: int | None = None,
) -> Dataset:
    """traffic-v1 steps of every capture under ``path``, one group per file."""
    from agent.features.traffic import TRAFFIC_V1, featurize
    from agent.progress import Progress

    spec = StepSpec.parse(step)
    rules = read_rules(mapping) if mapping else []
    xs, ys, gs, names = [], [], [], []
    recordings: dict[str, dict[str, float]] = {}
    malformed = 0
    files = capture_files(path)
    for i, rule in enumerate(rules):  # a misspelt glob would leave its attack unlabelled
        if not any(fnmatch.fnmatch(f.name, rule.glob) for f in files):
            logger.warning("mapping rule[%d]: glob %r matches no capture in %s", i, rule.glob, path)
    onsets = folder_onsets(path, files)
    benign = next((n for n in map(label_from_name, files) if n.lower() in BENIGN_NAMES), "benign")
    with Progress("reading captures", sum(f.stat().st_size for f in files), "B") as bar:
        for g, file in enumerate(files):
            capture = _read(file, bar)  # one capture held at a time
            malformed += capture.malformed_total
            steps = featurize(capture.packets, spec)
            values = steps.values[:max_rows]
            xs.append(values)
            before = None
            if onsets.get(file.name):  # the attacker's tool before its attack: not the attack
                onset_ns = onset_time(file.name, capture.packets.ts_ns, onsets[file.name])
                before = (benign, onset_ns)
            labels = step_labels(file, steps.start_ns, rules, before)
            labels = address_labels(file, capture.packets, steps.start_ns, spec, labels, rules)
            ys.append(labels[: len(values)])
            gs.append(np.full(len(values), g, np.int64))
            names.append(file.name)
            recordings[file.name] = recording_info(capture.packets.ts_ns, len(values))
            logger.info("%s: %d packets -> %d steps", file.name, len(capture.packets), len(values))
    options: dict[str, Any] = {"step": step}
    if mapping:
        options["mapping"] = mapping
    if onsets:
        options["onsets"] = onsets
    dataset = Dataset(
        kind="captures",
        name=TRAFFIC_V1.name,
        version=TRAFFIC_V1.version,
        columns=list(TRAFFIC_V1.columns),
        x=np.concatenate(xs).astype(np.float32),
        label_names=np.concatenate(ys),
        sequential=True,
        groups=np.concatenate(gs),
        group_names=names,
        dropped={"malformed_frames": malformed} if malformed else {},
        step=spec.to_dict(),
        options=options,
        recordings=recordings,
    )
    return dataset.drop_nonfinite()


def _read(file: Path, bar: Progress) -> Capture:
    """One capture, its bytes counted on ``bar`` after the files before it."""
    from agent.features.capture import iter_capture, merge_captures

    before = bar.done
    parts = list(iter_capture(file, progress=lambda at: bar.update(before + at, note=file.name)))
    bar.update(before + file.stat().st_size)
    return merge_captures(parts)


def recording_info(ts_ns: npt.NDArray[np.int64], steps: int) -> dict[str, float]:
    """Packets, seconds from first to last packet, and steps of one recording."""
    seconds = (int(ts_ns.max()) - int(ts_ns.min())) / 1e9 if len(ts_ns) else 0.0
    return {"packets": len(ts_ns), "seconds": round(seconds, 3), "steps": steps}
