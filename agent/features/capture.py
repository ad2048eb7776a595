"""Capture files to decoded packets: pcap and pcapng, told apart by magic number.

Several real captures are pcapng named ``.pcap``, so the extension is never consulted. The
file is read incrementally in blocks; a tight ``struct.unpack_from`` loop only collects record
positions, then every record header of a chunk is cut out with numpy and all frames of the
chunk go to :func:`agent.features.decode.decode_frames` in one call. A file that ends inside
a record ends cleanly with what was read and ``Capture.truncated_file`` set.
"""

from __future__ import annotations

import logging
import os
import struct
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from agent.features.decode import decode_frames, rows_at
from agent.features.packets import Capture, PacketTable

logger = logging.getLogger(__name__)

I64 = npt.NDArray[np.int64]
U8 = npt.NDArray[np.uint8]

PCAP_MAGIC_US = 0xA1B2C3D4
PCAP_MAGIC_NS = 0xA1B23C4D
PCAPNG_SHB = 0x0A0D0D0A
PCAPNG_BOM = 0x1A2B3C4D
PCAPNG_IDB = 1
PCAPNG_OPB = 2  # obsolete Packet Block
PCAPNG_SPB = 3
PCAPNG_EPB = 6
PCAPNG_PACKET_BLOCKS = (PCAPNG_OPB, PCAPNG_SPB, PCAPNG_EPB)
OPT_END = 0
OPT_IF_TSRESOL = 9
OPT_IF_TSOFFSET = 14

PCAP_HEADER = 24
PCAP_RECORD = 16
PCAPNG_PACKET_HEADER = 28  # block type, length, and the five 32-bit fields of an EPB/OPB
MAX_TSOFFSET_S = 1 << 33  # ~272 years; more would overflow int64 nanoseconds
MAX_RECORD = 1 << 24  # a record length beyond this is corruption, not a frame
READ_SIZE = 4 << 20
# After this many records of one length in a row, the pcap reader checks the next ones'
# lengths at once (up to SAME_LENGTH_SPAN of them): floods are runs of one frame size.
SAME_LENGTH_RUN = 4
SAME_LENGTH_SPAN = 1024
_INCL_AT = 8  # a pcap record header's captured length: 4 bytes from here
NS_PER_S = 1_000_000_000


class CaptureFormatError(ValueError):
    """The file is not a pcap or pcapng capture at all (empty, or an unknown magic number)."""


@dataclass
class _Records:
    """Record positions found in one buffer, and what the scan learned about the file."""

    positions: list[int] = field(default_factory=list)
    # pcapng: (first record, its first interface) of each section begun in this buffer
    sections: list[tuple[int, int]] = field(default_factory=list)
    malformed: Counter[str] = field(default_factory=Counter)
    frames: int = 0  # frames rejected by the reader itself (counted with ``malformed``)


@dataclass
class _ScanState:
    """Where a scan stopped: the next unread byte, and whether the file can go on."""

    pos: int
    need: int = 0  # bytes needed from ``pos`` before the next record can be parsed
    corrupt: bool = False  # an impossible length: nothing after ``pos`` can be trusted


class _Scanner(Protocol):
    """One capture format: finds records in a buffer and turns them into decoded frames."""

    def scan(self, data: bytes, pos: int, limit: int, records: _Records) -> _ScanState:
        """Collect up to ``limit`` packet records from ``data[pos:]`` into ``records``."""

    def frames(self, buf: U8, records: _Records) -> Capture:
        """Decode the frames of the collected records of ``buf`` in one call."""


class _PcapScanner:
    """Classic libpcap files: a 24-byte header, then 16-byte record headers (either order)."""

    def __init__(self, order: str, nanoseconds: bool) -> None:
        self.order = order
        self.ts_scale = 1 if nanoseconds else 1000
        self.header_read = False
        self.linktype = 0
        self.max_record = MAX_RECORD
        self._incl = struct.Struct(order + "I")

    def scan(self, data: bytes, pos: int, limit: int, records: _Records) -> _ScanState:
        if not self.header_read:
            if len(data) - pos < PCAP_HEADER:
                return _ScanState(pos, need=PCAP_HEADER)
            _, _, _, _, snaplen, network = struct.unpack_from(self.order + "HHiIII", data, pos + 4)
            self.linktype = network & 0xFFFF  # the upper bits may carry FCS information
            self.max_record = max(262144, min(snaplen, MAX_RECORD))
            self.header_read = True
            pos += PCAP_HEADER
        end = len(data)
        positions = records.positions
        append = positions.append
        unpack = self._incl.unpack_from
        left = limit
        last, run = -1, 0
        while left > 0:
            if pos + PCAP_RECORD > end:
                return _ScanState(pos, need=PCAP_RECORD)
            incl = unpack(data, pos + 8)[0]
            if incl > self.max_record:
                return _ScanState(pos, corrupt=True)
            nxt = pos + PCAP_RECORD + incl
            if nxt > end:
                return _ScanState(pos, need=PCAP_RECORD + incl)
            append(pos)
            pos = nxt
            left -= 1
            run = run + 1 if incl == last else 0
            last = incl
            if run >= SAME_LENGTH_RUN:
                taken = self._same_length(data, pos, incl, min(left, SAME_LENGTH_SPAN), positions)
                pos += taken * (PCAP_RECORD + incl)
                left -= taken
                run = 0
        return _ScanState(pos)

    def _same_length(
        self, data: bytes, pos: int, incl: int, most: int, positions: list[int]
    ) -> int:
        """Records from ``pos`` that have length ``incl`` too, found at once; how many.

        A flood is a run of frames of one size: where they would start is known, so reading
        every candidate's length field in one numpy call replaces a Python step per record.
        The records taken are exactly those the record-by-record loop would have found.
        """
        stride = PCAP_RECORD + incl
        most = min(most, (len(data) - pos) // stride)  # records that end inside the buffer
        if most < 1:
            return 0
        starts = pos + stride * np.arange(most, dtype=np.int64)
        fields = rows_at(np.frombuffer(data, np.uint8), starts + _INCL_AT, 4)
        same = fields.view(self.order + "u4")[:, 0] == incl
        taken = most if same.all() else int(np.argmin(same))
        positions.extend(starts[:taken].tolist())
        return taken

    def frames(self, buf: U8, records: _Records) -> Capture:
        pos = np.asarray(records.positions, dtype=np.int64)
        head = rows_at(buf, pos, PCAP_RECORD)
        words = head.view(self.order + "u4").astype(np.int64)
        ts_ns = words[:, 0] * NS_PER_S + words[:, 1] * self.ts_scale
        linktype = np.full(pos.shape[0], self.linktype, dtype=np.uint16)
        return _decode(buf, pos + PCAP_RECORD, words[:, 2], words[:, 3], linktype, ts_ns, records)


@dataclass(frozen=True)
class _Interface:
    """A pcapng interface: its link type, snap length and timestamp units."""

    linktype: int
    snaplen: int
    units_per_s: int = 1_000_000  # if_tsresol, default 10^-6
    offset_s: int = 0  # if_tsoffset

    def to_ns(self, units: npt.NDArray[np.uint64]) -> I64:
        """Timestamps in this interface's units to integer nanoseconds since the epoch."""
        base = self.units_per_s
        if base <= NS_PER_S and NS_PER_S % base == 0:
            ns = units.astype(np.int64) * (NS_PER_S // base)
        elif base <= 1 << 33:  # frac * 10^9 stays below 2^63
            seconds, frac = np.divmod(units, np.uint64(base))
            ns = seconds.astype(np.int64) * NS_PER_S + (
                frac * np.uint64(NS_PER_S) // np.uint64(base)
            ).astype(np.int64)
        else:  # finer than 2^-33 s: float64 keeps sub-ns precision for any real clock
            ns = (units.astype(np.float64) * (NS_PER_S / base)).astype(np.int64)
        return ns + self.offset_s * NS_PER_S


def _parse_tsresol(value: int) -> int:
    """if_tsresol: 10^-v when the top bit is clear, 2^-(v & 0x7f) when it is set."""
    exponent = value & 0x7F
    return 1 << exponent if value & 0x80 else 10**exponent


class _PcapngScanner:
    """pcapng: sections (SHB) of interfaces (IDB) and packet blocks (EPB, SPB, OPB)."""

    def __init__(self) -> None:
        self.order = "<"
        # the interfaces of the sections of the buffer being scanned, the current one's from _base
        self.interfaces: list[_Interface] = []
        self._base = 0
        self.last_ts = 0  # an SPB has no timestamp: it takes the previous packet's
        self._block = struct.Struct("<II")

    def scan(self, data: bytes, pos: int, limit: int, records: _Records) -> _ScanState:
        if self._base:  # earlier sections' packets are decoded: only the current one's stay
            del self.interfaces[: self._base]
            self._base = 0
        end = len(data)
        append = records.positions.append
        unpack = self._block.unpack_from
        for _ in range(limit):
            if pos + 12 > end:
                return _ScanState(pos, need=12)
            btype, blen = unpack(data, pos)
            if btype == PCAPNG_SHB:
                # a section per packet must not cost a buffer each: only another byte order does
                if records.positions and _section_order(data[pos + 8 : pos + 12]) != self.order:
                    return _ScanState(pos)
                if not self._section(data, pos, records):
                    return _ScanState(pos, corrupt=True)
                unpack = self._block.unpack_from
                btype, blen = unpack(data, pos)
            nxt = pos + blen
            if blen < 12 or blen & 3 or blen > MAX_RECORD:
                return _ScanState(pos, corrupt=True)
            if nxt > end:
                return _ScanState(pos, need=blen)
            if btype in PCAPNG_PACKET_BLOCKS:
                append(pos)
            elif btype == PCAPNG_IDB:
                self._interface(data, pos, blen)
            pos = nxt
        return _ScanState(pos)

    def _section(self, data: bytes, pos: int, records: _Records) -> bool:
        """Start a section (byte order from its magic, no interfaces yet); False if corrupt."""
        order = _section_order(data[pos + 8 : pos + 12])
        if order is None:
            return False
        self.order = order
        self._block = struct.Struct(order + "II")
        self._base = len(self.interfaces)
        records.sections.append((len(records.positions), self._base))
        return True

    def _interface(self, data: bytes, pos: int, blen: int) -> None:
        """An IDB: link type, snap length and the timestamp options."""
        if blen < 20:
            self.interfaces.append(_Interface(linktype=-1, snaplen=0))
            return
        linktype, _, snaplen = struct.unpack_from(self.order + "HHI", data, pos + 8)
        units, offset = 1_000_000, 0
        opt, opt_end = pos + 16, pos + blen - 4
        while opt + 4 <= opt_end:
            code, length = struct.unpack_from(self.order + "HH", data, opt)
            if code == OPT_END or opt + 4 + length > opt_end:
                break
            if code == OPT_IF_TSRESOL and length >= 1:
                units = _parse_tsresol(data[opt + 4])
            elif code == OPT_IF_TSOFFSET and length >= 8:
                (offset,) = struct.unpack_from(self.order + "q", data, opt + 4)
                if abs(offset) > MAX_TSOFFSET_S:  # nanoseconds would overflow int64
                    logger.debug("ignoring if_tsoffset %d s at byte %d", offset, opt)
                    offset = 0
            opt += 4 + (length + 3) // 4 * 4
        self.interfaces.append(_Interface(linktype, snaplen, units, offset))

    def frames(self, buf: U8, records: _Records) -> Capture:
        pos = np.asarray(records.positions, dtype=np.int64)
        n = pos.shape[0]
        if n and int(pos[-1]) + PCAPNG_PACKET_HEADER > buf.shape[0]:
            # the last block is shorter than an EPB's fixed fields (an SPB, or a corrupt one):
            # zeros past the buffer's end, so every row can be read; its length judges it below
            buf = np.concatenate((buf, np.zeros(PCAPNG_PACKET_HEADER, np.uint8)))
        words = rows_at(buf, pos, PCAPNG_PACKET_HEADER)
        w = words.view(self.order + "u4").astype(np.int64)
        btype, blen = w[:, 0], w[:, 1]
        spb = btype == PCAPNG_SPB
        opb = btype == PCAPNG_OPB
        # OPB: a 16-bit interface id and a 16-bit drop count share the EPB's interface word
        iface = np.where(opb, (w[:, 2] & 0xFFFF) if self.order == "<" else (w[:, 2] >> 16), w[:, 2])
        iface = np.where(spb, 0, iface)
        base, count = self._section_of(records, n)
        known = iface < count
        iface = np.where(known, iface + base, 0)  # into ``interfaces``, across sections
        caplen = np.where(spb, w[:, 2], w[:, 5])
        wire_len = np.where(spb, w[:, 2], w[:, 6])
        data_at = pos + np.where(spb, 12, PCAPNG_PACKET_HEADER)
        room = blen - np.where(spb, 16, PCAPNG_PACKET_HEADER + 4)
        snaplen = np.array([i.snaplen for i in self.interfaces] or [0], dtype=np.int64)[iface]
        caplen = np.where(
            spb,
            np.minimum(room, np.where(snaplen > 0, np.minimum(caplen, snaplen), caplen)),
            caplen,
        )
        bad_block = (room < 0) | (caplen > room) | (caplen < 0)
        ts_ns = self._timestamps(w, iface, spb, known)
        linktype = np.array([i.linktype for i in self.interfaces] or [-1], dtype=np.int64)[iface]
        good = known & ~bad_block & (linktype >= 0)
        records.malformed["unknown_interface"] += int((~known).sum())
        records.malformed["corrupt_block"] += int((known & ~good).sum())
        records.frames += n - int(good.sum())
        return _decode(
            buf, data_at[good], caplen[good], wire_len[good], linktype[good], ts_ns[good], records
        )

    def _section_of(self, records: _Records, n: int) -> tuple[I64, I64]:
        """Per record: its section's first interface in ``interfaces``, and how many it has."""
        starts = np.array([0] + [s for s, _ in records.sections], np.int64)
        bases = np.array([0] + [b for _, b in records.sections], np.int64)
        counts = np.append(bases[1:], len(self.interfaces)) - bases
        section = np.searchsorted(starts, np.arange(n), side="right") - 1
        return bases[section], counts[section]

    def _timestamps(
        self, w: I64, iface: I64, spb: npt.NDArray[np.bool_], known: npt.NDArray[np.bool_]
    ) -> I64:
        """Per-interface timestamp units to ns; an SPB takes the previous packet's time."""
        units = (w[:, 3].astype(np.uint64) << np.uint64(32)) | w[:, 4].astype(np.uint64)
        ts_ns = np.zeros(w.shape[0], dtype=np.int64)
        has_ts = ~spb & known
        # bincount, not np.unique: np.unique imports numpy.ma (1.2 MB) on first use
        for k in np.flatnonzero(np.bincount(iface[has_ts], minlength=len(self.interfaces))):
            sel = has_ts & (iface == k)
            ts_ns[sel] = self.interfaces[int(k)].to_ns(units[sel])
        last = np.where(has_ts, np.arange(w.shape[0]), -1)
        np.maximum.accumulate(last, out=last)
        ts_ns = np.where(last >= 0, ts_ns[np.maximum(last, 0)], self.last_ts)
        if ts_ns.shape[0]:
            self.last_ts = int(ts_ns[-1])
        return ts_ns


def _section_order(bom: bytes) -> str | None:
    """Byte order of a pcapng section from its byte-order magic; None when it is neither."""
    if bom == PCAPNG_BOM.to_bytes(4, "little"):
        return "<"
    if bom == PCAPNG_BOM.to_bytes(4, "big"):
        return ">"
    return None


def _decode(
    buf: U8,
    data_at: I64,
    caplen: I64,
    wire_len: I64,
    linktype: npt.NDArray[np.integer[Any]],
    ts_ns: I64,
    records: _Records,
) -> Capture:
    """Hand every frame of a chunk to the decoder in one call; merge the reader's counts."""
    table, malformed = decode_frames(
        buf,
        data_at,
        caplen.astype(np.uint32),
        wire_len.astype(np.uint32),
        linktype.astype(np.uint16),
        ts_ns,
    )
    malformed.update(records.malformed)
    return Capture(
        packets=table,
        malformed=+malformed,
        frames=int(data_at.shape[0]) + records.frames,
        linktypes=_link_types(linktype),
    )


def _link_types(linktype: npt.NDArray[np.integer[Any]]) -> Counter[int]:
    """Frames per link type; a chunk nearly always has one, counted without sorting."""
    if linktype.shape[0] and bool((linktype == linktype[0]).all()):
        return Counter({int(linktype[0]): int(linktype.shape[0])})
    kinds, counts = np.unique(linktype, return_counts=True)
    return Counter({int(k): int(c) for k, c in zip(kinds, counts, strict=True)})


def _scanner_for(path: str | os.PathLike[str], head: bytes) -> _Scanner:
    """Pick the reader by magic number; CaptureFormatError when the file is no capture."""
    name = os.fspath(path)
    if not head:
        raise CaptureFormatError(f"{name}: empty file, not a pcap or pcapng capture")
    if len(head) >= 4:
        for magic, nanoseconds in ((PCAP_MAGIC_US, False), (PCAP_MAGIC_NS, True)):
            if head[:4] == magic.to_bytes(4, "little"):
                return _PcapScanner("<", nanoseconds)
            if head[:4] == magic.to_bytes(4, "big"):
                return _PcapScanner(">", nanoseconds)
        shb = PCAPNG_SHB.to_bytes(4, "little")
        if head[:4] == shb and (len(head) < 12 or _section_order(head[8:12]) is not None):
            return _PcapngScanner()
    found = head[:12].hex(" ")
    raise CaptureFormatError(f"{name}: not a pcap or pcapng capture (starts with {found})")


def _ending(reason: str) -> Capture:
    """The last chunk of a file that stops inside a record (or at a corrupt one)."""
    return Capture(
        packets=PacketTable.empty(),
        malformed=Counter({reason: 1}),
        frames=1,
        truncated_file=True,
    )


def _chunks(
    path: str | os.PathLike[str], chunk_frames: int, progress: Callable[[int], None] | None
) -> Iterator[Capture]:
    """Read the file block by block and yield each block's decoded frames."""
    if chunk_frames < 1:
        raise ValueError(f"chunk_frames must be >= 1, got {chunk_frames}")
    with open(path, "rb") as f:
        data = f.read(READ_SIZE)
        scanner = _scanner_for(path, data)
        pos = 0
        while True:
            records = _Records()
            state = scanner.scan(data, pos, chunk_frames, records)
            if records.positions:
                yield scanner.frames(np.frombuffer(data, dtype=np.uint8), records)
            pos = state.pos
            if state.corrupt:
                logger.debug(
                    "%s: corrupt record at byte %d; stopping", path, f.tell() - len(data) + pos
                )
                yield _ending("corrupt_record")
                return
            if state.need == 0:
                continue
            more = f.read(max(READ_SIZE, state.need))
            if progress is not None:
                progress(f.tell())
            if not more:
                if pos < len(data):
                    logger.debug("%s: file ends inside a record", path)
                    yield _ending("truncated_record")
                return
            data = data[pos:] + more
            pos = 0


def check_capture(path: str | os.PathLike[str]) -> None:
    """OSError when the file cannot be read, CaptureFormatError when it is no capture.

    What the first ``next`` of ``iter_capture`` would raise, without decoding anything.
    """
    with open(path, "rb") as f:
        _scanner_for(path, f.read(12))


def iter_capture(
    path: str | os.PathLike[str],
    *,
    chunk_frames: int = 65536,
    progress: Callable[[int], None] | None = None,
) -> Iterator[Capture]:
    """Stream a capture as chunks of at most ``chunk_frames`` frames; memory stays bounded.

    The file is read in blocks of a few MiB. Each yielded Capture covers its own frames
    (``frames``, ``malformed``, ``linktypes``); the last one has ``truncated_file`` set
    when the file stops inside a record. CaptureFormatError surfaces on the first ``next``.
    ``progress`` is told the bytes read so far after each block.
    """
    yield from _chunks(path, chunk_frames, progress)


def read_capture(path: str | os.PathLike[str], *, progress: bool = False) -> Capture:
    """Read and decode a whole capture; ``progress`` shows the bytes read (agent.progress)."""
    if not progress:
        return merge_captures(list(_chunks(path, 65536, None)))
    from agent.progress import Progress

    name = os.path.basename(os.fspath(path))
    with Progress(f"reading {name}", os.path.getsize(path), "B") as bar:
        return merge_captures(list(_chunks(path, 65536, bar.update)))


def merge_captures(parts: list[Capture]) -> Capture:
    """One Capture from consecutive chunks of the same file."""
    malformed: Counter[str] = Counter()
    linktypes: Counter[int] = Counter()
    for part in parts:
        malformed.update(part.malformed)
        linktypes.update(part.linktypes)
    return Capture(
        packets=PacketTable.concat([p.packets for p in parts]),
        malformed=malformed,
        frames=sum(p.frames for p in parts),
        truncated_file=any(p.truncated_file for p in parts),
        linktypes=linktypes,
    )
