"""Frames to classic pcap bytes (Ethernet, microseconds, little-endian) in vectorized chunks.

Every header of a chunk is built as a (packets, bytes) array per layout and scattered into
one buffer, payloads are gathered from the payload book by index, and IPv4, TCP, UDP and
ICMP checksums are computed from precomputed prefix sums of the templates, so the output
is valid for tcpdump and Wireshark at millions of packets per minute.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt

from training.synth.frames import (
    ARP,
    ICMP,
    L4_HEADER_LEN,
    MAX_PAYLOAD,
    PROTO_OF_LAYOUT,
    TCP,
    TCP_MSS,
    UDP,
    Frames,
)

PCAP_MAGIC = 0xA1B2C3D4
LINKTYPE_ETHERNET = 1
SNAPLEN = 262_144
CHUNK = 16_384  # packets per vectorized pass: bounds the index arrays to ~100 MB
ETH_LEN = 14
REC_LEN = 16
IP_LEN = 20
MSS_OPTION = np.array([2, 4, 0x05, 0xB4], dtype=np.uint8)  # MSS 1460

U8 = npt.NDArray[np.uint8]
U64 = npt.NDArray[np.uint64]


def global_header() -> bytes:
    """The 24-byte pcap file header."""
    return struct.pack("<IHHiIII", PCAP_MAGIC, 2, 4, 0, 0, SNAPLEN, LINKTYPE_ETHERNET)


def _be(values: npt.NDArray[np.integer], width: int) -> U8:
    """Big-endian bytes of each value: shape (n, width)."""
    shifts = np.arange(width - 1, -1, -1, dtype=np.uint64) * np.uint64(8)
    wide = values.astype(np.uint64)[:, None] >> shifts[None, :]
    return (wide & np.uint64(0xFF)).astype(np.uint8)


def _word_sum(block: U8) -> U64:
    """Sum of the big-endian 16-bit words of each row (even row length)."""
    hi = block[:, 0::2].astype(np.uint64) << np.uint64(8)
    total: U64 = (hi | block[:, 1::2].astype(np.uint64)).sum(axis=1, dtype=np.uint64)
    return total


def _fold(total: U64) -> npt.NDArray[np.uint16]:
    """One's-complement checksum from a 64-bit sum of words."""
    for _ in range(4):
        total = (total & np.uint64(0xFFFF)) + (total >> np.uint64(16))
    return (~total & np.uint64(0xFFFF)).astype(np.uint16)


class PayloadSums:
    """Prefix sums of each template's 16-bit words, so any prefix's checksum part is O(1)."""

    def __init__(self, templates: U8) -> None:
        self.templates = templates
        self.flat = templates.reshape(-1)
        words = (templates[:, 0::2].astype(np.uint64) << np.uint64(8)) | templates[:, 1::2]
        self.prefix = np.concatenate(
            [np.zeros((len(templates), 1), np.uint64), np.cumsum(words, axis=1, dtype=np.uint64)],
            axis=1,
        )

    def word_sum(self, pid: npt.NDArray[np.int32], length: npt.NDArray[np.uint16]) -> U64:
        """Word sum of the first ``length`` bytes of template ``pid`` (odd byte zero-padded)."""
        row = np.maximum(pid, 0)
        n = length.astype(np.int64)
        total = self.prefix[row, n // 2]
        odd = (n % 2) == 1
        last = self.templates[row, np.maximum(n - 1, 0)].astype(np.uint64) << np.uint64(8)
        return total + np.where(odd, last, np.uint64(0))

    def stamped_sum(self, f: Frames) -> U64:
        """Word sum of each packet's payload after its stamp replaced the template's words."""
        total = self.word_sum(f.payload_id, f.payload_len)
        row = np.maximum(f.payload_id, 0)
        at = f.stamp_at.astype(np.int64) // 2
        end = at + f.stamp_len.astype(np.int64) // 2
        replaced = self.prefix[row, end] - self.prefix[row, at]  # 0 where there is no stamp
        mask = np.uint64(0xFFFF)
        stamp = f.stamp
        words = (stamp & mask) + ((stamp >> np.uint64(16)) & mask)
        words += ((stamp >> np.uint64(32)) & mask) + (stamp >> np.uint64(48))
        result: U64 = total - replaced + words
        return result


def _ip_header(f: Frames, layout: int, l3_len: npt.NDArray[np.int64], ip_id: U64) -> U8:
    n = len(f)
    hdr = np.zeros((n, IP_LEN), dtype=np.uint8)
    hdr[:, 0] = 0x45
    hdr[:, 2:4] = _be(l3_len, 2)
    hdr[:, 4:6] = _be(ip_id, 2)
    if layout in (TCP, TCP_MSS):
        hdr[:, 6] = 0x40  # DF, as Linux / lwIP set on TCP
    hdr[:, 8] = f.ttl
    hdr[:, 9] = PROTO_OF_LAYOUT[layout]
    hdr[:, 12:16] = _be(f.src_ip, 4)
    hdr[:, 16:20] = _be(f.dst_ip, 4)
    hdr[:, 10:12] = _be(_fold(_word_sum(hdr)), 2)
    return hdr


def _l4_header(f: Frames, layout: int, sums: PayloadSums) -> U8:
    """The TCP / UDP / ICMP header with its checksum (pseudo-header included where due)."""
    n = len(f)
    hlen = L4_HEADER_LEN[layout]
    hdr = np.zeros((n, hlen), dtype=np.uint8)
    l4_len = f.payload_len.astype(np.uint64) + np.uint64(hlen)
    if layout == ICMP:
        hdr[:, 0] = f.icmp_type
        hdr[:, 1] = f.icmp_code
        hdr[:, 4:6] = _be(f.sport, 2)
        hdr[:, 6:8] = _be(f.dport, 2)
        pseudo = np.zeros(n, np.uint64)
        csum_at = 2
    else:
        hdr[:, 0:2] = _be(f.sport, 2)
        hdr[:, 2:4] = _be(f.dport, 2)
        if layout == UDP:
            hdr[:, 4:6] = _be(l4_len, 2)
            csum_at = 6
        else:
            hdr[:, 4:8] = _be(f.seq, 4)
            hdr[:, 8:12] = _be(f.ack, 4)
            hdr[:, 12] = (hlen // 4) << 4
            hdr[:, 13] = f.flags
            hdr[:, 14:16] = _be(f.window, 2)
            if layout == TCP_MSS:
                hdr[:, 20:24] = MSS_OPTION
            csum_at = 16
        src = f.src_ip.astype(np.uint64)
        dst = f.dst_ip.astype(np.uint64)
        pseudo = (
            (src >> np.uint64(16))
            + (src & np.uint64(0xFFFF))
            + (dst >> np.uint64(16))
            + (dst & np.uint64(0xFFFF))
            + np.uint64(PROTO_OF_LAYOUT[layout])
            + l4_len
        )
    csum = _fold(pseudo + _word_sum(hdr) + sums.stamped_sum(f))
    if layout == UDP:
        csum = np.where(csum == 0, np.uint16(0xFFFF), csum)  # 0 means "no checksum" in UDP
    hdr[:, csum_at : csum_at + 2] = _be(csum, 2)
    return hdr


def _arp_body(f: Frames) -> U8:
    n = len(f)
    body = np.zeros((n, 28), dtype=np.uint8)
    body[:, 0:8] = np.array([0, 1, 8, 0, 6, 4, 0, 0], dtype=np.uint8)
    body[:, 7] = f.arp_op
    body[:, 8:14] = _be(f.src_mac, 6)
    body[:, 14:18] = _be(f.src_ip, 4)
    target_mac = np.where(f.arp_op == 2, f.dst_mac, np.uint64(0))
    body[:, 18:24] = _be(target_mac, 6)
    body[:, 24:28] = _be(f.dst_ip, 4)
    return body


def _chunk_bytes(f: Frames, sums: PayloadSums, first_index: int) -> bytes:
    """One chunk of frames as pcap records."""
    n = len(f)
    layout = f.layout
    l4_hdr = np.array([L4_HEADER_LEN[k] for k in range(5)], dtype=np.int64)[layout]
    is_ip = layout != ARP
    l3_len = np.where(is_ip, IP_LEN + l4_hdr + f.payload_len.astype(np.int64), 28)
    caplen = ETH_LEN + l3_len
    rec_size = REC_LEN + caplen
    offsets = np.concatenate([[0], np.cumsum(rec_size)[:-1]]).astype(np.int64)
    buf = np.zeros(int(rec_size.sum()), dtype=np.uint8)

    rec = np.empty((n, 4), dtype="<u4")
    rec[:, 0] = f.ts_us // 1_000_000
    rec[:, 1] = f.ts_us % 1_000_000
    rec[:, 2] = caplen
    rec[:, 3] = caplen
    eth = np.zeros((n, ETH_LEN), dtype=np.uint8)
    eth[:, 0:6] = _be(f.dst_mac, 6)
    eth[:, 6:12] = _be(f.src_mac, 6)
    eth[:, 12] = 0x08  # 0x0800 IPv4 / 0x0806 ARP
    eth[:, 13] = np.where(is_ip, 0x00, 0x06)
    head = np.concatenate([rec.view(np.uint8).reshape(n, REC_LEN), eth], axis=1)
    _scatter(buf, offsets, head)

    ip_id = (np.arange(first_index, first_index + n, dtype=np.uint64) * np.uint64(40503)) + (
        f.src_ip.astype(np.uint64)
    )
    base = offsets + REC_LEN + ETH_LEN
    for kind in (ARP, TCP, TCP_MSS, UDP, ICMP):
        rows = np.flatnonzero(layout == kind)
        if rows.size == 0:
            continue
        sub = f.take(rows)
        if kind == ARP:
            block = _arp_body(sub)
        else:
            ip = _ip_header(sub, kind, l3_len[rows], ip_id[rows])
            block = np.concatenate([ip, _l4_header(sub, kind, sums)], axis=1)
        _scatter(buf, base[rows], block)

    lengths = f.payload_len.astype(np.int64)
    total = int(lengths.sum())
    if total:
        starts = base + IP_LEN + l4_hdr
        before = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        within = np.arange(total, dtype=np.int64) - np.repeat(before, lengths)
        dest = np.repeat(starts, lengths) + within
        src = np.repeat(np.maximum(f.payload_id, 0).astype(np.int64) * MAX_PAYLOAD, lengths)
        buf[dest] = sums.flat[src + within]
        stamped = np.flatnonzero(f.stamp_len)
        for width in np.unique(f.stamp_len[stamped]).tolist():
            rows = stamped[f.stamp_len[stamped] == width]
            _scatter(buf, starts[rows] + f.stamp_at[rows], _be(f.stamp[rows], width))
    return buf.tobytes()


def _scatter(buf: U8, offsets: npt.NDArray[np.int64], block: U8) -> None:
    """Copy each row of ``block`` into ``buf`` at its offset."""
    index = offsets[:, None] + np.arange(block.shape[1], dtype=np.int64)[None, :]
    buf[index] = block


def pcap_chunks(frames: Frames, templates: U8) -> Iterator[bytes]:
    """The pcap file as byte chunks: the global header, then records in frame order."""
    sums = PayloadSums(templates)
    yield global_header()
    for start in range(0, len(frames), CHUNK):
        index = np.arange(start, min(start + CHUNK, len(frames)))
        yield _chunk_bytes(frames.take(index), sums, start)


def write_pcap(path: Path, frames: Frames, templates: U8) -> int:
    """Write ``frames`` to ``path``; returns the file size in bytes."""
    size = 0
    with path.open("wb") as out:
        for chunk in pcap_chunks(frames, templates):
            out.write(chunk)
            size += len(chunk)
    return size
