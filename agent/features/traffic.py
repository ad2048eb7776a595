"""The ``traffic-v1`` feature set: one vector per time step from the IP-layer packet table.

Columns, in order (counts are packets in the step unless said otherwise):

* ``packets``, ``bytes`` (sum of ``ip_len``, never wire length, so link type cannot leak);
  ``size_min``, ``size_max``, ``size_mean``, ``size_std`` of ``ip_len``.
* ``tcp``, ``udp``, ``icmp`` (ICMP and ICMPv6), ``other_l4`` (IP, none of those), ``arp``,
  ``other_l3`` (no network layer the reader understands).
* By port, either side: ``dns`` (TCP/UDP 53), ``mqtt`` (TCP 1883/8883), ``http`` (TCP
  80/8080), ``https`` (TCP 443/8443), ``telnet`` (TCP 23/2323), ``ssh`` (TCP 22).
* ``icmp_echo_req`` (ICMP type 8 / ICMPv6 128: ping sweeps), ``arp_reply`` (ARP spoofing).
* TCP flags: ``tcp_syn``, ``tcp_syn_no_ack``, ``tcp_syn_ack``, ``tcp_ack``, ``tcp_fin``,
  ``tcp_rst``, ``tcp_psh``, ``tcp_urg``; ratios over TCP packets ``syn_no_ack_ratio``,
  ``rst_ratio``, ``fin_ratio`` (0 without TCP).
* MQTT control packets: ``mqtt_connect`` (1), ``mqtt_connack`` (2), ``mqtt_publish`` (3),
  ``mqtt_subscribe`` (8), ``mqtt_pingreq`` (12), ``mqtt_disconnect`` (14), ``mqtt_other``.
* ``distinct_src``, ``distinct_dst``, ``distinct_dport`` (TCP/UDP packets) and their Shannon
  entropies in bits ``entropy_src``, ``entropy_dst``, ``entropy_dport``: estimated from 2^14
  hash buckets per step (see :mod:`agent.features.distinct` for the approximation).
* ``new_flows``: packets that open a flow (5-tuple unseen for 60 s, see
  :mod:`agent.features.flows`).
* ``iat_mean``, ``iat_std``: seconds between consecutive packets of the step (microsecond
  resolution; a backward timestamp counts 0, a gap is capped at 100 s).
* ``ttl_min``, ``ttl_mean``, ``ttl_max`` over IPv4/IPv6 packets (hop limit for IPv6).
* ``fragments`` (IP fragments), ``payload_mean`` (transport payload bytes per packet).

Empty time steps are real all-zero rows, up to ``MAX_IDLE_STEPS`` (3600) in a row; a longer
idle stretch (or a clock jump) is shortened to that many, with true ``start_ns`` values.
``packets_or_time`` steps (N packets or T seconds) count silence the same way: every whole T
seconds without a packet after a step closed is one all-zero row (see
:mod:`agent.features.mixed`).

Every step's state is kept as integers (counts, sums and sums of squares in bytes and
microseconds, bucket summaries) and merged across chunks; one ``finalize`` turns integer rows
into float32 features for both the batch and the incremental path, so a capture cut at any
packet gives bit-identical values. Time steps are aligned to multiples of the step size; a
backward timestamp goes into the step that is open; empty intervals are all-zero rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from agent.features import packets as pk
from agent.features.distinct import (
    BucketCounts,
    BucketSketch,
    bucket_of,
    distinct_estimate,
    entropy_bits,
)
from agent.features.flows import DEFAULT_TIMEOUT_NS, FlowTable
from agent.features.groups import reduce_groups as _reduce
from agent.features.groups import sum_groups as _sums
from agent.features.mixed import MixedClock
from agent.features.packets import PacketTable
from agent.features.schema import FeatureSet, register
from agent.features.steps import StepSpec, sliding_windows

I64 = npt.NDArray[np.int64]
F32 = npt.NDArray[np.float32]

# Inter-arrival cap (100 s): a step's sum of squared gaps is at most cap * sum of gaps, so it
# stays inside int64 for any step spanning less than ~25 hours of gaps.
MAX_GAP_US = 100_000_000
_I64_MIN, _I64_MAX = int(np.iinfo(np.int64).min), int(np.iinfo(np.int64).max)

# Zero rows emitted for one idle stretch at most: a clock that jumps (an IoT device without
# an RTC going from 1970 to today on NTP) must not ask for billions of rows; an hour of zeros
# already fills any window with them.
MAX_IDLE_STEPS = 3600

# Integer accumulators per step. SUMS add across chunks, MINS/MAXES take min/max.
SUMS = (
    "packets", "bytes", "bytes_sq",
    "tcp", "udp", "icmp", "other_l4", "arp", "other_l3",
    "dns", "mqtt", "http", "https", "telnet", "ssh",
    "icmp_echo_req", "arp_reply",
    "tcp_syn", "tcp_syn_no_ack", "tcp_syn_ack", "tcp_ack",
    "tcp_fin", "tcp_rst", "tcp_psh", "tcp_urg",
    "mqtt_connect", "mqtt_connack", "mqtt_publish", "mqtt_subscribe",
    "mqtt_pingreq", "mqtt_disconnect", "mqtt_other",
    "new_flows", "gaps", "gap_us", "gap_us_sq",
    "ip_packets", "ttl_sum", "fragments", "payload", "port_packets",
)  # fmt: skip
MINS = ("size_min", "ttl_min")
MAXES = ("size_max", "ttl_max")
# bucket summaries, derived when a step closes (not mergeable by addition)
SKETCHES = ("src", "dst", "dport")
SKETCH_FIELDS = tuple(f"{k}_{part}" for k in SKETCHES for part in ("nonzero", "xlogx"))
FIELDS = SUMS + MINS + MAXES + SKETCH_FIELDS
_F = {name: i for i, name in enumerate(FIELDS)}
_N_SUMS, _N_MINS = len(SUMS), len(MINS)
_MIN_SLICE = slice(_N_SUMS, _N_SUMS + _N_MINS)
_MAX_SLICE = slice(_N_SUMS + _N_MINS, _N_SUMS + _N_MINS + len(MAXES))
_ACC = _N_SUMS + _N_MINS + len(MAXES)  # mergeable part of a row
_NO_MIN = np.iinfo(np.int64).max

_COUNT_COLUMNS = (
    "tcp", "udp", "icmp", "other_l4", "arp", "other_l3",
    "dns", "mqtt", "http", "https", "telnet", "ssh", "icmp_echo_req", "arp_reply",
    "tcp_syn", "tcp_syn_no_ack", "tcp_syn_ack", "tcp_ack", "tcp_fin", "tcp_rst",
    "tcp_psh", "tcp_urg",
)  # fmt: skip
_MQTT_COLUMNS = (
    "mqtt_connect", "mqtt_connack", "mqtt_publish", "mqtt_subscribe",
    "mqtt_pingreq", "mqtt_disconnect", "mqtt_other",
)  # fmt: skip

TRAFFIC_V1 = register(
    FeatureSet(
        "traffic",
        1,
        (
            "packets", "bytes", "size_min", "size_max", "size_mean", "size_std",
            *_COUNT_COLUMNS, "syn_no_ack_ratio", "rst_ratio", "fin_ratio",
            *_MQTT_COLUMNS,
            "distinct_src", "distinct_dst", "distinct_dport",
            "entropy_src", "entropy_dst", "entropy_dport",
            "new_flows", "iat_mean", "iat_std", "ttl_min", "ttl_mean", "ttl_max",
            "fragments", "payload_mean",
        ),
    )
)  # fmt: skip

# service bits by port (either side); DNS on TCP or UDP, the rest on TCP
_DNS, _MQTT, _HTTP, _HTTPS, _TELNET, _SSH = (1 << i for i in range(6))
_SERVICE = np.zeros(1 << 16, dtype=np.uint8)
for _bit, _ports in (
    (_DNS, (53,)),
    (_MQTT, (1883, 8883)),
    (_HTTP, (80, 8080)),
    (_HTTPS, (443, 8443)),
    (_TELNET, (23, 2323)),
    (_SSH, (22,)),
):
    _SERVICE[list(_ports)] |= _bit
_MQTT_TYPES = {"mqtt_connect": 1, "mqtt_connack": 2, "mqtt_publish": 3, "mqtt_subscribe": 8}
_MQTT_TYPES |= {"mqtt_pingreq": 12, "mqtt_disconnect": 14}
_MQTT_OTHER = np.ones(256, dtype=np.bool_)  # by control packet type: none of the above
_MQTT_OTHER[[0, *_MQTT_TYPES.values()]] = False


@dataclass(frozen=True)
class Steps:
    """Closed steps: start time, feature values and packet count of each."""

    start_ns: I64  # (S,) step start (time steps) or first packet time (packet steps)
    values: F32  # (S, F)
    packets: I64  # (S,)

    def __len__(self) -> int:
        return int(self.start_ns.shape[0])

    @property
    def width(self) -> int:
        """Features per step."""
        return int(self.values.shape[1])

    @classmethod
    def empty(cls, width: int) -> Steps:
        """No steps, ``width`` features."""
        z = np.zeros(0, dtype=np.int64)
        return cls(z, np.zeros((0, width), dtype=np.float32), z.copy())

    @staticmethod
    def concat(parts: Sequence[Steps]) -> Steps:
        """Steps of several batches, in order (at least one batch, for the width)."""
        if not parts:
            raise ValueError("Steps.concat needs at least one Steps (it carries the width)")
        return Steps(
            np.concatenate([p.start_ns for p in parts]),
            np.concatenate([p.values for p in parts], axis=0),
            np.concatenate([p.packets for p in parts]),
        )


def finalize(rows: I64) -> npt.NDArray[np.float32]:
    """Integer step rows (S, len(FIELDS)) -> traffic-v1 features (S, F) as float32."""
    col = {name: rows[:, i] for name, i in _F.items()}
    p1 = np.maximum(col["packets"], 1).astype(np.float64)
    has = col["packets"] > 0
    mean = col["bytes"] / p1
    var = np.maximum(col["bytes_sq"] / p1 - mean * mean, 0.0)
    tcp1 = np.maximum(col["tcp"], 1).astype(np.float64)
    gaps1 = np.maximum(col["gaps"], 1).astype(np.float64)
    gap_mean = col["gap_us"] / gaps1
    gap_var = np.maximum(col["gap_us_sq"] / gaps1 - gap_mean * gap_mean, 0.0)
    has_ip = col["ip_packets"] > 0
    ip1 = np.maximum(col["ip_packets"], 1).astype(np.float64)
    out: dict[str, npt.NDArray[np.float64] | I64] = {
        "packets": col["packets"],
        "bytes": col["bytes"],
        "size_min": np.where(has, col["size_min"], 0),
        "size_max": col["size_max"],
        "size_mean": mean,
        "size_std": np.sqrt(var),
        "syn_no_ack_ratio": col["tcp_syn_no_ack"] / tcp1,
        "rst_ratio": col["tcp_rst"] / tcp1,
        "fin_ratio": col["tcp_fin"] / tcp1,
        "new_flows": col["new_flows"],
        "iat_mean": gap_mean / 1e6,
        "iat_std": np.sqrt(gap_var) / 1e6,
        "ttl_min": np.where(has_ip, col["ttl_min"], 0),
        "ttl_mean": col["ttl_sum"] / ip1,
        "ttl_max": col["ttl_max"],
        "fragments": col["fragments"],
        "payload_mean": col["payload"] / p1,
    }
    for name in (*_COUNT_COLUMNS, *_MQTT_COLUMNS):
        out[name] = col[name]
    for key, total in (("src", "packets"), ("dst", "packets"), ("dport", "port_packets")):
        out[f"distinct_{key}"] = distinct_estimate(col[f"{key}_nonzero"])
        out[f"entropy_{key}"] = entropy_bits(col[total], col[f"{key}_xlogx"])
    values = np.empty((rows.shape[0], TRAFFIC_V1.width), dtype=np.float32)
    for i, name in enumerate(TRAFFIC_V1.columns):
        values[:, i] = out[name]
    return values


def _packet_fields(t: PacketTable) -> dict[str, npt.NDArray[np.bool_]]:
    """Per-packet indicators of every counted property."""
    ipv4, ipv6 = t.l3 == pk.L3_IPV4, t.l3 == pk.L3_IPV6
    ip = ipv4 | ipv6
    tcp = ip & (t.proto == pk.PROTO_TCP)
    udp = ip & (t.proto == pk.PROTO_UDP)
    icmp4 = ipv4 & (t.proto == pk.PROTO_ICMP)
    icmp6 = ipv6 & (t.proto == pk.PROTO_ICMPV6)
    svc = _SERVICE[t.sport] | _SERVICE[t.dport]
    fl = t.tcp_flags
    syn = tcp & ((fl & pk.TCP_SYN) != 0)
    ack = tcp & ((fl & pk.TCP_ACK) != 0)
    arp = t.l3 == pk.L3_ARP
    m = t.mqtt_type
    f = {
        "tcp": tcp,
        "udp": udp,
        "icmp": icmp4 | icmp6,
        "other_l4": ip & ~(tcp | udp | icmp4 | icmp6),
        "arp": arp,
        "other_l3": ~(ip | arp),
        "dns": (tcp | udp) & ((svc & _DNS) != 0),
        "icmp_echo_req": (icmp4 & (t.icmp_type == 8)) | (icmp6 & (t.icmp_type == 128)),
        "arp_reply": arp & (t.arp_op == 2),
        "tcp_syn": syn,
        "tcp_syn_no_ack": syn & ~ack,
        "tcp_syn_ack": syn & ack,
        "tcp_ack": ack,
        "ip_packets": ip,
        "fragments": ip & ((t.frag & pk.FRAG_IS_FRAGMENT) != 0),
        "port_packets": tcp | udp,
        "mqtt_other": _MQTT_OTHER[m],
    }
    tcp_services = (("mqtt", _MQTT), ("http", _HTTP), ("https", _HTTPS), ("telnet", _TELNET))
    for name, bit in (*tcp_services, ("ssh", _SSH)):
        f[name] = tcp & ((svc & bit) != 0)
    for name, flag in (
        ("tcp_fin", pk.TCP_FIN),
        ("tcp_rst", pk.TCP_RST),
        ("tcp_psh", pk.TCP_PSH),
        ("tcp_urg", pk.TCP_URG),
    ):
        f[name] = tcp & ((fl & flag) != 0)
    for name, code in _MQTT_TYPES.items():
        f[name] = m == code
    return f


@dataclass
class _Chunk:
    """One chunk's packets grouped by step: integer rows and bucket counts per group."""

    step: I64  # (G,) step index of each group, strictly increasing
    start_ns: I64  # (G,) first packet time of each group
    acc: I64  # (G, _ACC) mergeable accumulators
    sketches: dict[str, BucketCounts]


class TrafficFeaturizer:
    """Incremental traffic-v1 featurizer: feed packet tables, get the steps they complete.

    ``push`` the packets as they arrive, ``advance`` the clock when none do (the live agent),
    ``flush`` at the end. ``featurize`` over a whole capture gives the same rows bit for bit.
    An idle stretch longer than ``max_idle_steps`` time steps is shortened to that many zero
    rows (``start_ns`` stays true, so the jump is visible).
    """

    def __init__(
        self,
        step: StepSpec | None = None,
        *,
        feature_set: FeatureSet = TRAFFIC_V1,
        flow_timeout_ns: int = DEFAULT_TIMEOUT_NS,
        max_idle_steps: int = MAX_IDLE_STEPS,
    ) -> None:
        if max_idle_steps < 0:
            raise ValueError(f"max_idle_steps must be >= 0, got {max_idle_steps}")
        self.step = step if step is not None else StepSpec()
        self.max_idle_steps = max_idle_steps
        self.feature_set = feature_set
        unknown = [c for c in feature_set.columns if c not in TRAFFIC_V1.columns]
        if unknown:
            raise ValueError(f"{feature_set.id}: columns not computed by traffic-v1: {unknown}")
        self._select = np.array([TRAFFIC_V1.index(c) for c in feature_set.columns], np.intp)
        self._flows = FlowTable(timeout_ns=flow_timeout_ns)
        self._sketch = {k: BucketSketch() for k in SKETCHES}
        self._open = _empty_acc()
        self._open_step: int | None = None  # index of the open step, None before any packet
        self._open_start_ns = 0
        self._open_has_packets = False
        self._seen = 0  # packets pushed so far (packet-count steps)
        self._mixed = (
            MixedClock(int(self.step.size), self.step.limit_ns, max_idle_steps)
            if self.step.kind == "packets_or_time"
            else None
        )
        self._last_ts = 0  # time of the last packet, for the inter-arrival gap across chunks

    @property
    def state_nbytes(self) -> int:
        """Bytes held between calls: fixed, whatever the number of sources or flows."""
        sketches = sum(s.nbytes for s in self._sketch.values())
        return int(self._flows.nbytes + sketches + self._open.nbytes)

    def push(self, table: PacketTable) -> Steps:
        """Add packets (in capture order); returns the steps they completed."""
        if len(table) == 0:
            return self._select_steps(Steps.empty(TRAFFIC_V1.width))
        closed = self._absorb(self._group(table))
        self._last_ts = int(table.ts_ns[-1])
        self._seen += len(table)
        if self.step.counts_packets and self._open[_F["packets"]] == int(self.step.size):
            closed = Steps.concat([closed, self._flush()])  # a full packet step is done now
        return self._select_steps(closed)

    def advance(self, now_ns: int) -> Steps:
        """Close the time steps that ended by ``now_ns``; empty ones become all-zero rows."""
        if self._mixed is not None:
            return self._select_steps(self._advance_mixed(self._mixed, now_ns))
        if self.step.kind != "time" or self._open_step is None:
            return self._select_steps(Steps.empty(TRAFFIC_V1.width))
        now_step = now_ns // self.step.size_ns
        if now_step <= self._open_step:
            return self._select_steps(Steps.empty(TRAFFIC_V1.width))
        rows, idx = self._close_open(), [self._open_step]
        out = self._emit(np.array(idx, np.int64), rows, np.array([self._open_start_ns]), now_step)
        self._reopen(now_step, now_step * self.step.size_ns)
        return self._select_steps(out)

    def flush(self) -> Steps:
        """Close the open step (a partial one for packet steps); returns it if it had packets."""
        return self._select_steps(self._flush())

    # -- internals -------------------------------------------------------------------------

    def _advance_mixed(self, clock: MixedClock, now_ns: int) -> Steps:
        """A quiet link: close the open step once its time is up, then count idle steps."""
        none = np.zeros(0, np.int64)
        if clock.open_index is None:
            clock.idle_until(now_ns)
            return self._emit(none, np.zeros((0, len(FIELDS)), np.int64), none, clock.next_index)
        if not clock.expired(now_ns) or self._open_step is None:
            return Steps.empty(TRAFFIC_V1.width)
        k, start = self._open_step, self._open_start_ns
        rows = self._close_open()
        clock.close(clock.deadline)
        clock.idle_until(now_ns)
        self._reopen(k + 1, 0)
        self._open_step = None  # the next packet opens a step of its own index
        return self._emit(np.array([k], np.int64), rows, np.array([start]), clock.next_index)

    def _flush(self) -> Steps:
        if self._open_step is None or not self._open_has_packets:
            return Steps.empty(TRAFFIC_V1.width)
        k = self._open_step
        rows = self._close_open()
        out = self._emit(np.array([k], np.int64), rows, np.array([self._open_start_ns]), k + 1)
        self._reopen(k + 1, 0)
        if self.step.kind == "packets":  # the next packet starts a fresh step
            self._seen = (k + 1) * int(self.step.size)
        if self._mixed is not None:  # the clock knows the next index and when silence began
            if self._mixed.open_index is not None:
                self._mixed.close(self._mixed.max_ts)
            self._open_step = None
        return out

    def _select_steps(self, steps: Steps) -> Steps:
        if self.feature_set is TRAFFIC_V1:
            return steps
        return Steps(
            steps.start_ns, np.ascontiguousarray(steps.values[:, self._select]), steps.packets
        )

    def _step_of(self, table: PacketTable) -> I64:
        """Step index of each packet; time steps never go back (late packets join the open one)."""
        n = len(table)
        if self._mixed is not None:
            return self._mixed.assign(table.ts_ns)
        if self.step.kind == "packets":
            size = int(self.step.size)
            return (self._seen + np.arange(n, dtype=np.int64)) // size
        raw = table.ts_ns // self.step.size_ns
        if self._open_step is not None:
            raw = np.maximum(raw, self._open_step)
        return np.maximum.accumulate(raw)

    def _group(self, t: PacketTable) -> _Chunk:
        """Reduce a chunk's packets to per-step integer rows."""
        n = len(t)
        step = self._step_of(t)
        starts = np.flatnonzero(np.concatenate(([True], step[1:] != step[:-1])))
        group = np.cumsum(np.concatenate(([0], step[1:] != step[:-1])), dtype=np.int64)
        g = starts.size
        acc = np.zeros((g, _ACC), dtype=np.int64)
        ip_len = t.ip_len.astype(np.int64)
        fields = _packet_fields(t)
        fields["new_flows"] = self._flows.update(t)
        for name, mask in fields.items():
            acc[:, _F[name]] = _sums(mask, starts)
        acc[:, _F["packets"]] = np.diff(np.append(starts, n))
        acc[:, _F["bytes"]] = _sums(ip_len, starts)
        acc[:, _F["bytes_sq"]] = _sums(ip_len * ip_len, starts)
        acc[:, _F["payload"]] = _sums(t.payload_len, starts)
        acc[:, _F["size_min"]] = _reduce(np.minimum, ip_len, starts)
        acc[:, _F["size_max"]] = _reduce(np.maximum, ip_len, starts)
        ip = fields["ip_packets"]
        ttl = t.ttl.astype(np.int64)
        acc[:, _F["ttl_sum"]] = _sums(np.where(ip, ttl, 0), starts)
        acc[:, _F["ttl_min"]] = _reduce(np.minimum, np.where(ip, ttl, _NO_MIN), starts)
        acc[:, _F["ttl_max"]] = _reduce(np.maximum, np.where(ip, ttl, 0), starts)
        self._gaps(t, step, starts, acc)
        port_ok = fields["port_packets"]
        sketches = {
            "src": BucketCounts.of(group, bucket_of(t.src_hi, t.src_lo)),
            "dst": BucketCounts.of(group, bucket_of(t.dst_hi, t.dst_lo)),
            "dport": BucketCounts.of(
                group[port_ok],
                bucket_of(
                    np.zeros(int(port_ok.sum()), np.uint64), t.dport[port_ok].astype(np.uint64)
                ),
            ),
        }
        return _Chunk(step[starts], t.ts_ns[starts], acc, sketches)

    def _gaps(self, t: PacketTable, step: I64, starts: npt.NDArray[np.intp], acc: I64) -> None:
        """Inter-arrival gaps between consecutive packets of the same step, in microseconds."""
        prev_ts = np.concatenate(([self._last_ts], t.ts_ns[:-1]))
        same = np.empty(len(t), dtype=np.bool_)
        same[1:] = step[1:] == step[:-1]
        same[0] = self._open_has_packets and int(step[0]) == self._open_step
        gap = np.clip(t.ts_ns - prev_ts, 0, MAX_GAP_US * 1000) // 1000
        gap = np.where(same, gap, 0)
        acc[:, _F["gaps"]] = _sums(same, starts)
        acc[:, _F["gap_us"]] = _sums(gap, starts)
        acc[:, _F["gap_us_sq"]] = _sums(gap * gap, starts)

    def _absorb(self, c: _Chunk) -> Steps:
        """Merge a chunk into the open step; close and emit every step before its last group."""
        g = c.step.size
        first = 0
        closed_idx: list[I64] = []
        closed_rows: list[I64] = []
        closed_start: list[I64] = []
        if self._open_step is not None and int(c.step[0]) == self._open_step:
            if self.step.counts_packets and not self._open_has_packets:
                self._open_start_ns = int(c.start_ns[0])  # a packet step starts at its first
            _merge(self._open, c.acc[0])
            for k in SKETCHES:
                self._sketch[k].add(*c.sketches[k].of_group(0))
            self._open_has_packets = True
            first = 1
            if g == 1:
                return Steps.empty(TRAFFIC_V1.width)
        if self._open_step is not None:  # an empty open step closes as a zero row
            closed_idx.append(np.array([self._open_step], np.int64))
            closed_rows.append(self._close_open())
            closed_start.append(np.array([self._open_start_ns], np.int64))
        if g - 1 > first:
            inner = slice(first, g - 1)
            rows = np.zeros((g - 1 - first, len(FIELDS)), dtype=np.int64)
            rows[:, :_ACC] = c.acc[inner]
            for j, k in enumerate(SKETCHES):
                nonzero, xlogx = c.sketches[k].summaries(g)
                rows[:, _ACC + 2 * j] = nonzero[inner]
                rows[:, _ACC + 2 * j + 1] = xlogx[inner]
            closed_idx.append(c.step[inner])
            closed_rows.append(rows)
            closed_start.append(c.start_ns[inner])
        last = int(c.step[-1])
        self._reopen(last, int(c.start_ns[-1]) if self.step.counts_packets else 0)
        self._open[:] = c.acc[-1]
        for k in SKETCHES:
            self._sketch[k].add(*c.sketches[k].of_group(g - 1))
        self._open_has_packets = True
        if not closed_idx and self._mixed is None:
            return Steps.empty(TRAFFIC_V1.width)
        if not closed_idx:  # idle steps may still come before the new open step
            none = np.zeros(0, np.int64)
            return self._emit(none, np.zeros((0, len(FIELDS)), np.int64), none, last)
        return self._emit(
            np.concatenate(closed_idx),
            np.concatenate(closed_rows),
            np.concatenate(closed_start),
            last,
        )

    def _close_open(self) -> I64:
        """The open step as one full integer row (its sketches summarised)."""
        row = np.zeros((1, len(FIELDS)), dtype=np.int64)
        row[0, :_ACC] = self._open
        for j, k in enumerate(SKETCHES):
            row[0, _ACC + 2 * j : _ACC + 2 * j + 2] = self._sketch[k].summary()
        return row

    def _reopen(self, step: int, start_ns: int) -> None:
        """Start an empty open step ``step``."""
        self._open_step = step
        start = step * self.step.size_ns if self.step.kind == "time" else start_ns
        # The first step of a timestamp within one step of int64's edge starts past it: clamp
        # (Python ints do not overflow; the int64 arrays these go into do).
        self._open_start_ns = min(max(start, _I64_MIN), _I64_MAX)
        self._open[:] = _empty_acc()
        for s in self._sketch.values():
            s.clear()
        self._open_has_packets = False

    def _emit(self, idx: I64, rows: I64, start_ns: I64, until: int) -> Steps:
        """Finalize closed steps ``idx``, filling empty time steps up to ``until`` with zeros."""
        if self._mixed is not None:  # idle steps come from the clock, in index order
            zero_idx, zero_start = self._mixed.take_zeros(until)
            if len(zero_idx):
                order = np.argsort(np.concatenate((idx, zero_idx)), kind="stable")
                rows = np.concatenate((rows, np.zeros((len(zero_idx), len(FIELDS)), np.int64)))
                rows, start_ns = rows[order], np.concatenate((start_ns, zero_start))[order]
            return Steps(start_ns, finalize(rows), rows[:, _F["packets"]].copy())
        if self.step.kind == "packets":
            return Steps(start_ns, finalize(rows), rows[:, _F["packets"]].copy())
        # each closed step, then the empty steps after it (at most max_idle_steps of them)
        idle = np.minimum(np.append(idx[1:], until) - idx - 1, self.max_idle_steps)
        count = 1 + idle
        first = np.cumsum(count) - count
        offset = np.arange(int(count.sum()), dtype=np.int64) - np.repeat(first, count)
        full = np.zeros((offset.size, len(FIELDS)), dtype=np.int64)
        full[first] = rows
        starts = (np.repeat(idx, count) + offset) * self.step.size_ns
        return Steps(starts, finalize(full), full[:, _F["packets"]].copy())


def _empty_acc() -> I64:
    acc = np.zeros(_ACC, dtype=np.int64)
    acc[_MIN_SLICE] = _NO_MIN
    return acc


def _merge(open_acc: I64, row: I64) -> None:
    """Fold one chunk group's accumulators into the open step's."""
    open_acc[:_N_SUMS] += row[:_N_SUMS]
    np.minimum(open_acc[_MIN_SLICE], row[_MIN_SLICE], out=open_acc[_MIN_SLICE])
    np.maximum(open_acc[_MAX_SLICE], row[_MAX_SLICE], out=open_acc[_MAX_SLICE])


def featurize(
    table: PacketTable, step: StepSpec | None = None, *, feature_set: FeatureSet = TRAFFIC_V1
) -> Steps:
    """All steps of a whole capture (the batch path): push everything, then flush."""
    featurizer = TrafficFeaturizer(step, feature_set=feature_set)
    return Steps.concat([featurizer.push(table), featurizer.flush()])


class WindowBuffer:
    """The agent's incremental windows: the last ``length`` steps, sliding by one."""

    def __init__(self, length: int = 16, *, width: int) -> None:
        if length < 1:
            raise ValueError(f"window length must be >= 1, got {length}")
        self.length = length
        self.width = width
        self._tail = np.zeros((0, width), dtype=np.float32)

    def push(self, steps: Steps) -> npt.NDArray[np.float32]:
        """Windows (W, T, F) completed by these steps, as :func:`sliding_windows` would give."""
        if steps.width != self.width:
            raise ValueError(f"steps have {steps.width} features, the buffer {self.width}")
        rows = np.concatenate((self._tail, steps.values), axis=0)
        windows = sliding_windows(rows, self.length).copy()
        self._tail = rows[max(rows.shape[0] - (self.length - 1), 0) :].copy()
        return windows
