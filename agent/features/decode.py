"""Frames to a PacketTable, vectorized over a whole chunk of frames at once.

Every step works on index arrays of the frames still alive: a uint8 view of the buffer is
gathered with numpy fancy indexing, fields are cut out of the gathered header matrices, and
masks decide which frames go on. The only Python loops walk a few VLAN tags or IPv6
extension headers, never the frames. A frame whose headers are truncated or inconsistent
is counted by reason and left out of the table; nothing raises for any frame content.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

import numpy as np
import numpy.typing as npt

from agent.features.packets import (
    COLUMNS,
    FRAG_IS_FRAGMENT,
    FRAG_NOT_FIRST,
    IPV4_MAPPED_LO_PREFIX,
    L3_ARP,
    L3_IPV4,
    L3_IPV6,
    PROTO_ICMP,
    PROTO_ICMPV6,
    PROTO_TCP,
    PROTO_UDP,
    PacketTable,
)

logger = logging.getLogger(__name__)

I64 = npt.NDArray[np.int64]
U8 = npt.NDArray[np.uint8]
Mask = npt.NDArray[np.bool_]

# Link types (https://www.tcpdump.org/linktypes.html).
DLT_NULL = 0
DLT_EN10MB = 1
DLT_RAW_BSD = 12
DLT_RAW_OPENBSD = 14
DLT_RAW = 101
DLT_LOOP = 108
DLT_LINUX_SLL = 113
DLT_IPV4 = 228
DLT_IPV6 = 229
DLT_LINUX_SLL2 = 276

ETH_IPV4 = 0x0800
ETH_ARP = 0x0806
ETH_IPV6 = 0x86DD
VLAN_TPIDS = (0x8100, 0x88A8, 0x9100)  # 802.1Q, 802.1ad, the pre-standard QinQ tag
MAX_VLAN_TAGS = 3

BSD_AF_INET = 2
BSD_AF_INET6 = (24, 28, 30)  # NetBSD/OpenBSD, FreeBSD, Darwin

IPV6_HOP_BY_HOP = 0
IPV6_ROUTING = 43
IPV6_FRAGMENT = 44
IPV6_AH = 51
IPV6_DEST_OPTS = 60
IPV6_EXT_HEADERS = (IPV6_HOP_BY_HOP, IPV6_ROUTING, IPV6_FRAGMENT, IPV6_AH, IPV6_DEST_OPTS)
MAX_IPV6_EXT = 8  # RFC 8200 allows each header once (dest-opts twice): 8 is more than enough

MQTT_PORTS = (1883, 8883)
NO_ETHERTYPE = -1

# Reason codes: index 0 means "decoded"; the names are what the Counter reports.
REASONS = (
    "",
    "bad_frame_bounds",
    "unknown_linktype",
    "truncated_link",
    "bad_ip_version",
    "truncated_ip",
    "bad_ip_header_length",
    "bad_ip_total_length",
    "truncated_ipv6_ext",
    "bad_ipv6_ext_length",
    "truncated_arp",
    "truncated_tcp",
    "bad_tcp_header_length",
    "truncated_udp",
    "bad_udp_length",
    "truncated_icmp",
)
_CODE = {name: code for code, name in enumerate(REASONS)}


class _Frames:
    """The chunk being decoded: the buffer, frame bounds, output columns and reject codes."""

    def __init__(self, buf: U8, start: I64, end: I64, n: int) -> None:
        self.buf = buf
        self.start = start
        self.end = end
        self.n = n
        self.cols: dict[str, npt.NDArray[Any]] = {
            name: np.zeros(n, dtype=dt) for name, dt in COLUMNS.items()
        }
        self.reject = np.zeros(n, dtype=np.uint8)

    def check(self, rows: I64, checks: list[tuple[Mask, str]]) -> Mask:
        """Reject the rows failing each check, earlier checks first; returns the passing mask."""
        ok = self._failed(rows, checks)
        return np.ones(rows.shape[0], dtype=np.bool_) if ok is None else ok

    def _failed(self, rows: I64, checks: list[tuple[Mask, str]]) -> Mask | None:
        """``check``'s mask, or None when every row passes (the common case, made cheap)."""
        ok: Mask | None = None
        for bad, reason in checks:
            if not bad.any():
                continue
            if ok is None:
                ok = np.ones(rows.shape[0], dtype=np.bool_)
            hit = rows[ok & bad]
            self.reject[hit] = np.where(self.reject[hit] == 0, _CODE[reason], self.reject[hit])
            ok &= ~bad
        return ok

    def drop(self, rows: I64, bad: Mask, reason: str) -> I64:
        """Reject ``rows[bad]`` for ``reason``; returns the other rows."""
        ok = self._failed(rows, [(bad, reason)])
        return rows if ok is None else rows[ok]

    def at(self, values: npt.NDArray[Any], rows: I64) -> npt.NDArray[Any]:
        """``values[rows]`` of a per-frame array; no copy when ``rows`` is every frame.

        Row sets are always ascending subsets of ``arange(n)`` (masks and selections of one),
        so a set of ``n`` rows is all of them, in order.
        """
        return values if rows.shape[0] == self.n else values[rows]

    def put(self, target: npt.NDArray[Any], rows: I64, values: npt.NDArray[Any] | int) -> None:
        """``target[rows] = values`` for a per-frame array, a plain copy when ``rows`` is every
        frame."""
        if rows.shape[0] == self.n:
            target[:] = values
        else:
            target[rows] = values

    def gather(self, pos: I64, width: int) -> U8:
        """Bytes ``pos .. pos+width`` of each row as an (m, width) matrix (bounds checked first)."""
        return rows_at(self.buf, pos, width)

    def be16(self, pos: I64) -> I64:
        """Big-endian 16-bit fields at ``pos``."""
        return (self.buf[pos].astype(np.int64) << 8) | self.buf[pos + 1]


def rows_at(buf: U8, pos: I64, width: int) -> U8:
    """``buf[pos[:, None] + arange(width)]`` without that int64 index matrix (8 bytes per byte
    gathered, 1-2 MB per chunk), copied once.

    ``buf`` is seen as overlapping ``width``-byte records, one starting at every byte, so each
    row is one item copy: 2-5x faster than fancy indexing a (N, width) uint8 strided view,
    which copies byte by byte.
    """
    if buf.shape[0] < width:  # no window fits: the plain gather (empty, or IndexError as before)
        short: U8 = buf[pos[:, None] + np.arange(width, dtype=np.int64)]
        return short
    if not buf.flags.c_contiguous:
        strided: U8 = np.lib.stride_tricks.sliding_window_view(buf, width)[pos]
        return strided
    records = np.ndarray((buf.shape[0] - width + 1,), np.dtype((np.void, width)), buf, 0, (1,))
    matrix: U8 = records[pos].view(np.uint8).reshape(-1, width)
    return matrix


def _keep(ok: Mask, *arrays: npt.NDArray[Any]) -> tuple[npt.NDArray[Any], ...]:
    """Each array's rows where ``ok``; the arrays themselves when every row is ok."""
    if ok.all():
        return arrays
    return tuple(a[ok] for a in arrays)


def _one_of(values: npt.NDArray[Any], choices: tuple[int, ...]) -> Mask:
    """``values`` equal to any of a few constants (cheaper than np.isin for tiny sets)."""
    hit: Mask = values == choices[0]
    for choice in choices[1:]:
        hit |= values == choice
    return hit


def _be(matrix: U8, first: int, width: int) -> I64:
    """Big-endian unsigned integers of ``width`` bytes from columns ``first..`` of a matrix."""
    value = np.zeros(matrix.shape[0], dtype=np.int64)
    for k in range(first, first + width):
        value = (value << 8) | matrix[:, k]
    return value


def _be32_as_mapped(matrix: U8, first: int) -> npt.NDArray[np.uint64]:
    """An IPv4 address in columns ``first..first+4`` as the low word of ::ffff:a.b.c.d."""
    return _be(matrix, first, 4).astype(np.uint64) | IPV4_MAPPED_LO_PREFIX


def decode_frames(
    buf: npt.NDArray[np.uint8],
    offsets: npt.NDArray[np.int64],
    caplen: npt.NDArray[np.uint32],
    wire_len: npt.NDArray[np.uint32],
    linktype: npt.NDArray[np.uint16],
    ts_ns: npt.NDArray[np.int64],
) -> tuple[PacketTable, Counter[str]]:
    """Decode every frame of a chunk in one pass; rejected frames are counted, not raised.

    Args:
        buf: one flat uint8 buffer holding all frames (a file chunk or concatenated frames).
        offsets: where each frame's first link-layer byte sits in ``buf``.
        caplen: captured bytes of each frame.
        wire_len: each frame's original length on the wire (recorded, never decoded from).
        linktype: DLT of each frame's interface.
        ts_ns: capture time of each frame, integer nanoseconds since the epoch.

    Returns:
        The decoded rows, in input order, and a Counter of rejected frames by reason.
    """
    n = int(offsets.shape[0])
    for name, arr in (("caplen", caplen), ("wire_len", wire_len), ("linktype", linktype)):
        if arr.shape[0] != n:
            raise ValueError(f"decode_frames: {name} has {arr.shape[0]} rows, offsets has {n}")
    if ts_ns.shape[0] != n:
        raise ValueError(f"decode_frames: ts_ns has {ts_ns.shape[0]} rows, offsets has {n}")
    flat = np.ascontiguousarray(buf, dtype=np.uint8).reshape(-1)
    start = offsets.astype(np.int64)
    end = start + caplen.astype(np.int64)
    frames = _Frames(flat, start, end, n)
    frames.cols["ts_ns"][:] = ts_ns
    frames.cols["linktype"][:] = linktype
    frames.cols["wire_len"][:] = wire_len
    rows = np.arange(n, dtype=np.int64)
    rows = frames.drop(rows, (start < 0) | (end > flat.shape[0]), "bad_frame_bounds")
    ethertype, l3 = _link_layer(frames, rows, linktype.astype(np.int64))
    alive = rows[frames.at(frames.reject, rows) == 0]
    kind = frames.at(ethertype, alive)
    transport = [
        _ipv4(frames, alive[kind == ETH_IPV4], l3),
        _ipv6(frames, alive[kind == ETH_IPV6], l3),
    ]
    _arp(frames, alive[kind == ETH_ARP], l3)
    for t_rows, t_pos, l4_len in transport:
        _transport(frames, t_rows, t_pos, l4_len)
    keep = frames.reject == 0
    if keep.all():  # every frame decoded: the columns are the table, no copy
        table = PacketTable(**frames.cols)
    else:
        table = PacketTable(**{name: col[keep] for name, col in frames.cols.items()})
    counts = np.bincount(frames.reject, minlength=len(REASONS))
    malformed: Counter[str] = Counter(
        {REASONS[code]: int(k) for code, k in enumerate(counts) if code and k}
    )
    if malformed:
        logger.debug("decode_frames: %d of %d frames rejected: %s", n - len(table), n, malformed)
    return table, malformed


def _link_layer(frames: _Frames, rows: I64, linktype: I64) -> tuple[I64, I64]:
    """Ethertype (or NO_ETHERTYPE) and network-layer offset of every frame."""
    n = linktype.shape[0]
    ethertype = np.full(n, NO_ETHERTYPE, dtype=np.int64)
    l3 = frames.start.copy()
    lt = linktype[rows]
    known = np.zeros(rows.shape[0], dtype=np.bool_)
    # A chunk nearly always has one link type: the others' selections are empty and skipped.
    for dlt, header, proto_at in (
        (DLT_EN10MB, 14, 12),
        (DLT_LINUX_SLL, 16, 14),
        (DLT_LINUX_SLL2, 20, 0),
    ):
        sel = lt == dlt
        if not sel.any():
            continue
        known |= sel
        (r,) = _keep(sel, rows)
        begin = frames.at(frames.start, r)
        r = frames.drop(r, frames.at(frames.end, r) - begin < header, "truncated_link")
        begin = frames.at(frames.start, r)
        frames.put(ethertype, r, frames.be16(begin + proto_at))
        frames.put(l3, r, begin + header)
    _vlan_tags(
        frames, rows[_one_of(lt, (DLT_EN10MB, DLT_LINUX_SLL, DLT_LINUX_SLL2))], ethertype, l3
    )
    raw = _one_of(lt, (DLT_RAW, DLT_RAW_BSD, DLT_RAW_OPENBSD))
    if raw.any():
        known |= raw
        _raw_ip(frames, rows[raw], ethertype)
    for dlt, fixed in ((DLT_IPV4, ETH_IPV4), (DLT_IPV6, ETH_IPV6)):
        sel = lt == dlt
        known |= sel
        ethertype[rows[sel]] = fixed
    for dlt in (DLT_NULL, DLT_LOOP):
        sel = lt == dlt
        if sel.any():
            known |= sel
            _loopback(frames, rows[sel], ethertype, l3, network_order=dlt == DLT_LOOP)
    frames.drop(rows, ~known, "unknown_linktype")
    return ethertype, l3


def _vlan_tags(frames: _Frames, rows: I64, ethertype: I64, l3: I64) -> None:
    """Step over up to MAX_VLAN_TAGS 802.1Q / 802.1ad / QinQ tags to the inner ethertype."""
    for _ in range(MAX_VLAN_TAGS):
        rows = rows[
            (frames.at(frames.reject, rows) == 0) & _one_of(frames.at(ethertype, rows), VLAN_TPIDS)
        ]
        if rows.shape[0] == 0:
            return
        rows = frames.drop(rows, l3[rows] + 4 > frames.end[rows], "truncated_link")
        ethertype[rows] = frames.be16(l3[rows] + 2)
        l3[rows] += 4


def _raw_ip(frames: _Frames, rows: I64, ethertype: I64) -> None:
    """Raw IP link types carry IPv4 or IPv6, told apart by the version nibble."""
    rows = frames.drop(rows, frames.end[rows] <= frames.start[rows], "truncated_ip")
    version = frames.buf[frames.start[rows]] >> 4
    rows = frames.drop(rows, (version != 4) & (version != 6), "bad_ip_version")
    version = frames.buf[frames.start[rows]] >> 4
    ethertype[rows] = np.where(version == 4, ETH_IPV4, ETH_IPV6)


def _loopback(frames: _Frames, rows: I64, ethertype: I64, l3: I64, *, network_order: bool) -> None:
    """BSD loopback: a 4-byte address family (host order for NULL, network order for LOOP)."""
    rows = frames.drop(rows, frames.end[rows] - frames.start[rows] < 4, "truncated_link")
    head = frames.gather(frames.start[rows], 4)
    family = _be(head, 0, 4)
    if not network_order:
        # The writer's byte order is unknown: a family fits in 16 bits, so a big value is swapped
        # (libpcap's and Wireshark's rule for DLT_NULL).
        swapped = _be(head[:, ::-1], 0, 4)
        family = np.where(family > 0xFFFF, swapped, family)
    et = np.full(rows.shape[0], NO_ETHERTYPE, dtype=np.int64)
    et[family == BSD_AF_INET] = ETH_IPV4
    et[_one_of(family, BSD_AF_INET6)] = ETH_IPV6
    ethertype[rows] = et
    l3[rows] = frames.start[rows] + 4


def _ipv4(frames: _Frames, rows: I64, l3: I64) -> tuple[I64, I64, I64]:
    """IPv4 header fields; returns the rows that carry a transport header, its offset and length."""
    rows = frames.drop(rows, frames.at(frames.end, rows) - frames.at(l3, rows) < 20, "truncated_ip")
    h = frames.gather(frames.at(l3, rows), 20)
    ihl = (h[:, 0] & 0x0F).astype(np.int64) * 4
    total = _be(h, 2, 2)
    ok = frames.check(
        rows,
        [
            ((h[:, 0] >> 4) != 4, "bad_ip_version"),
            (ihl < 20, "bad_ip_header_length"),
            (frames.at(frames.end, rows) - frames.at(l3, rows) < ihl, "truncated_ip"),
            (total < ihl, "bad_ip_total_length"),
        ],
    )
    rows, h, ihl, total = _keep(ok, rows, h, ihl, total)
    cols = frames.cols
    frames.put(cols["l3"], rows, L3_IPV4)
    frames.put(cols["ip_len"], rows, total)
    frames.put(cols["ttl"], rows, h[:, 8])
    frames.put(cols["proto"], rows, h[:, 9])
    frames.put(cols["src_lo"], rows, _be32_as_mapped(h, 12))
    frames.put(cols["dst_lo"], rows, _be32_as_mapped(h, 16))
    frag_offset = _be(h, 6, 2) & 0x1FFF
    more = (h[:, 6] & 0x20) != 0
    frag = np.where(more | (frag_offset != 0), FRAG_IS_FRAGMENT, 0)
    frag |= np.where(frag_offset != 0, FRAG_NOT_FIRST, 0)
    frames.put(cols["frag"], rows, frag)
    payload = total - ihl
    frames.put(cols["payload_len"], rows, payload)  # the transport step refines it
    first = frag_offset == 0
    rows, at, payload = _keep(first, rows, frames.at(l3, rows) + ihl, payload)
    return rows, at, payload


def _ipv6(frames: _Frames, rows: I64, l3: I64) -> tuple[I64, I64, I64]:
    """IPv6 header and extension-header chain; returns transport rows, offsets and lengths."""
    rows = frames.drop(rows, frames.end[rows] - l3[rows] < 40, "truncated_ip")
    h = frames.gather(l3[rows], 40)
    ok = frames.check(rows, [((h[:, 0] >> 4) != 6, "bad_ip_version")])
    rows, h = rows[ok], h[ok]
    payload = _be(h, 4, 2)
    addr = np.ascontiguousarray(h[:, 8:40]).view(">u8").astype(np.uint64)
    cols = frames.cols
    cols["l3"][rows] = L3_IPV6
    cols["ip_len"][rows] = payload + 40
    cols["ttl"][rows] = h[:, 7]
    cols["src_hi"][rows] = addr[:, 0]
    cols["src_lo"][rows] = addr[:, 1]
    cols["dst_hi"][rows] = addr[:, 2]
    cols["dst_lo"][rows] = addr[:, 3]
    next_header = h[:, 6].astype(np.int64)
    cur = l3[rows] + 40
    rows, next_header, cur, has_transport = _ipv6_extensions(frames, rows, next_header, cur)
    ext_len = cur - (l3[rows] + 40)
    ip_payload = cols["ip_len"][rows].astype(np.int64) - 40
    ok = frames.check(rows, [(ext_len > ip_payload, "bad_ipv6_ext_length")])
    rows, next_header, cur, has_transport = rows[ok], next_header[ok], cur[ok], has_transport[ok]
    l4_len = ip_payload[ok] - ext_len[ok]
    cols["proto"][rows] = next_header
    cols["payload_len"][rows] = l4_len
    return rows[has_transport], cur[has_transport], l4_len[has_transport]


def _ipv6_extensions(
    frames: _Frames, rows: I64, next_header: I64, cur: I64
) -> tuple[I64, I64, I64, Mask]:
    """Walk hop-by-hop, routing, fragment, AH and destination-options headers (RFC 8200 §4)."""
    has_transport = np.ones(rows.shape[0], dtype=np.bool_)
    alive = np.ones(rows.shape[0], dtype=np.bool_)
    frag = np.zeros(rows.shape[0], dtype=np.uint8)
    for _ in range(MAX_IPV6_EXT):
        at = np.flatnonzero(alive & has_transport & _one_of(next_header, IPV6_EXT_HEADERS))
        if at.shape[0] == 0:
            break
        is_frag = next_header[at] == IPV6_FRAGMENT
        ok = frames.check(
            rows[at],
            [(cur[at] + np.where(is_frag, 8, 2) > frames.end[rows[at]], "truncated_ipv6_ext")],
        )
        alive[at[~ok]] = False
        at, is_frag = at[ok], is_frag[ok]
        nh = next_header[at]
        hdr_ext_len = frames.buf[cur[at] + 1].astype(np.int64)
        length = np.where(nh == IPV6_AH, (hdr_ext_len + 2) * 4, (hdr_ext_len + 1) * 8)
        length = np.where(is_frag, 8, length)
        f = at[is_frag]
        if f.shape[0]:
            offset = frames.be16(cur[f] + 2) >> 3
            frag[f] |= np.uint8(FRAG_IS_FRAGMENT)
            frag[f[offset != 0]] |= np.uint8(FRAG_NOT_FIRST)
            has_transport[f[offset != 0]] = False  # RFC 8200 §4.5: only the first fragment has it
        next_header[at] = frames.buf[cur[at]]
        cur[at] += length
    # A longer chain is walked no further, but the packet is still counted at the IP layer
    # (packets, bytes, addresses): skipping it whole hid any traffic sent behind 9 headers,
    # which hosts deliver, from every feature.
    has_transport &= ~_one_of(next_header, IPV6_EXT_HEADERS)
    frames.cols["frag"][rows[alive]] = frag[alive]
    return rows[alive], next_header[alive], cur[alive], has_transport[alive]


def _arp(frames: _Frames, rows: I64, l3: I64) -> None:
    """ARP opcode and, for IPv4, the sender/target protocol addresses as src/dst (RFC 826)."""
    rows = frames.drop(rows, frames.end[rows] - l3[rows] < 8, "truncated_arp")
    h = frames.gather(l3[rows], 8)
    hlen = h[:, 4].astype(np.int64)
    plen = h[:, 5].astype(np.int64)
    size = 8 + 2 * (hlen + plen)
    ok = frames.check(rows, [(frames.end[rows] - l3[rows] < size, "truncated_arp")])
    rows, h, hlen, plen, size = rows[ok], h[ok], hlen[ok], plen[ok], size[ok]
    cols = frames.cols
    cols["l3"][rows] = L3_ARP
    cols["ip_len"][rows] = size
    cols["arp_op"][rows] = _be(h, 6, 2)
    ipv4 = (_be(h, 2, 2) == ETH_IPV4) & (plen == 4)
    r, base, hl = rows[ipv4], l3[rows][ipv4], hlen[ipv4]
    cols["src_lo"][r] = _be32_as_mapped(frames.gather(base + 8 + hl, 4), 0)
    cols["dst_lo"][r] = _be32_as_mapped(frames.gather(base + 12 + 2 * hl, 4), 0)


def _transport(frames: _Frames, rows: I64, pos: I64, l4_len: I64) -> None:
    """TCP, UDP and ICMP headers of the rows that carry one; MQTT type on broker ports."""
    proto = frames.at(frames.cols["proto"], rows)
    fragment = (frames.at(frames.cols["frag"], rows) & FRAG_IS_FRAGMENT) != 0
    for sel, decode in (
        (proto == PROTO_TCP, _tcp),
        (proto == PROTO_UDP, _udp),
        ((proto == PROTO_ICMP) | (proto == PROTO_ICMPV6), _icmp),
    ):
        if sel.any():
            decode(frames, *_keep(sel, rows, pos, l4_len, fragment))


def _tcp(frames: _Frames, rows: I64, pos: I64, l4_len: I64, fragment: Mask) -> None:
    """TCP ports, flags, window and data offset (RFC 9293 §3.1)."""
    ok = frames.check(rows, [(frames.at(frames.end, rows) - pos < 20, "truncated_tcp")])
    rows, pos, l4_len, fragment = _keep(ok, rows, pos, l4_len, fragment)
    h = frames.gather(pos, 20)
    hdr = (h[:, 12] >> 4).astype(np.int64) * 4
    ok = frames.check(
        rows,
        [
            # a first fragment may stop inside the TCP options; a whole packet may not
            ((hdr < 20) | ((l4_len < hdr) & ~fragment), "bad_tcp_header_length"),
            (frames.at(frames.end, rows) - pos < hdr, "truncated_tcp"),
        ],
    )
    rows, h, hdr, pos, l4_len = _keep(ok, rows, h, hdr, pos, l4_len)
    sport, dport = _be(h, 0, 2), _be(h, 2, 2)
    payload = np.maximum(l4_len - hdr, 0)
    cols = frames.cols
    frames.put(cols["sport"], rows, sport)
    frames.put(cols["dport"], rows, dport)
    frames.put(cols["tcp_flags"], rows, h[:, 13])
    frames.put(cols["tcp_window"], rows, _be(h, 14, 2))
    frames.put(cols["tcp_hdr_len"], rows, hdr)
    frames.put(cols["payload_len"], rows, payload)
    first = pos + hdr
    mqtt = (
        (_one_of(sport, MQTT_PORTS) | _one_of(dport, MQTT_PORTS))
        & (payload > 0)
        & (first < frames.at(frames.end, rows))
    )
    if mqtt.any():
        cols["mqtt_type"][rows[mqtt]] = frames.buf[first[mqtt]] >> 4


def _udp(frames: _Frames, rows: I64, pos: I64, l4_len: I64, fragment: Mask) -> None:
    """UDP ports; the payload length comes from the IP header, not the UDP length field."""
    ok = frames.check(
        rows,
        [
            (frames.at(frames.end, rows) - pos < 8, "truncated_udp"),
            ((l4_len < 8) & ~fragment, "bad_udp_length"),
        ],
    )
    rows, pos, l4_len = _keep(ok, rows, pos, l4_len)
    h = frames.gather(pos, 4)
    frames.put(frames.cols["sport"], rows, _be(h, 0, 2))
    frames.put(frames.cols["dport"], rows, _be(h, 2, 2))
    frames.put(frames.cols["payload_len"], rows, np.maximum(l4_len - 8, 0))


def _icmp(frames: _Frames, rows: I64, pos: I64, l4_len: I64, fragment: Mask) -> None:
    """ICMP / ICMPv6 type; the fixed part is type, code and checksum (4 bytes)."""
    del fragment  # the ICMP type is in the first fragment's first byte either way
    ok = frames.check(rows, [(frames.at(frames.end, rows) - pos < 4, "truncated_icmp")])
    rows, pos, l4_len = _keep(ok, rows, pos, l4_len)
    frames.put(frames.cols["icmp_type"], rows, frames.buf[pos])
    frames.put(frames.cols["payload_len"], rows, np.maximum(l4_len - 4, 0))
