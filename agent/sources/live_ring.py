"""Live capture through a ``TPACKET_V3`` ``PACKET_MMAP`` ring: the kernel writes frames into
blocks shared with the agent, and a whole block is decoded in place from numpy views of it.

``recvfrom`` costs one system call and one Python round per frame; here a block of thousands of
frames costs one ``poll`` at most, and the only per-frame Python work is following the frames'
``tp_next_offset`` chain (a ring of blocks cannot be indexed otherwise). A classic BPF filter
(``ret #SNAPLEN``) makes the kernel copy only the headers the decoder reads, so the ring holds
about ten times more frames than full 1,500-byte copies would. Blocks go back to the kernel as
soon as their frames are decoded; drops still come from ``PACKET_STATISTICS``.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import mmap
import os
import select
import socket
import struct
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from agent.sources import StepBatch
from agent.sources.live import (
    ETH_P_ALL,
    PACKET_ADD_MEMBERSHIP,
    PACKET_MR_PROMISC,
    PACKET_OUTGOING,
    SNAPLEN,
    SOL_PACKET,
    LiveSource,
)

if TYPE_CHECKING:
    from agent.config import AgentConfig, SourceConfig

logger = logging.getLogger(__name__)

PACKET_RX_RING = 5
PACKET_VERSION = 10
TPACKET_V3 = 2
SO_ATTACH_FILTER = 26
TP_STATUS_KERNEL = 0
TP_STATUS_USER = 1
# Many small blocks rather than a few big ones: a block is handed over when full or after
# RETIRE_MS, so on a slow link each block holds few frames and the ring's depth in time is
# blocks x RETIRE_MS; under a flood a 256 KiB block holds ~800 header-only frames.
BLOCK_BYTES = 1 << 18
FRAME_BYTES = 2048  # tp_frame_size: only a sanity bound in V3 (frames are variable length)
RETIRE_MS = 20  # the kernel hands over a partly filled block after this long
SLL_PKTTYPE = 48 + 10  # tpacket3_hdr (aligned to 48) then sockaddr_ll.sll_pkttype


class RingSource(LiveSource):
    """``kind = "live-ring"``: the live source's options and steps, frames read from a ring.

    ``buffer_bytes`` sizes the ring (whole 256 KiB blocks, at least 2); ``batch_frames`` bounds
    the frames decoded per read (whole blocks: it may go over by one block).
    """

    def __init__(
        self,
        config: SourceConfig,
        agent: AgentConfig | None = None,
        *,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self._mm: mmap.mmap | None = None
        super().__init__(config, agent, clock=clock)
        blocks = max(2, self._ring_bytes // BLOCK_BYTES)
        self._blocks = blocks
        try:
            mm = mmap.mmap(
                self._sock.fileno(),
                blocks * BLOCK_BYTES,
                mmap.MAP_SHARED,
                mmap.PROT_READ | mmap.PROT_WRITE,
            )
        except OSError:
            self._sock.close()  # the ring could not be mapped: no socket left behind
            raise
        self._mm = mm
        self._u8 = np.frombuffer(mm, np.uint8)
        self._u16 = np.frombuffer(mm, np.uint16)
        self._u32 = np.frombuffer(mm, np.uint32)
        self._words = memoryview(mm).cast("I")  # plain ints for the chain walk: no numpy scalars
        self._buf = self._u8  # decode_frames reads the frames where the kernel put them
        self._next = 0  # the block the kernel fills next
        self._held: list[int] = []  # blocks decoded this read, returned after decoding

    def _open(self, interface: str, promiscuous: bool, buffer_bytes: int) -> socket.socket:
        """An AF_PACKET socket with a V3 receive ring, bound to ``interface``."""
        self._ring_bytes = buffer_bytes
        blocks = max(2, buffer_bytes // BLOCK_BYTES)
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        try:
            _attach_snaplen_filter(sock, SNAPLEN)
            sock.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V3)
            request = struct.pack(
                "7I",
                BLOCK_BYTES,
                blocks,
                FRAME_BYTES,
                blocks * (BLOCK_BYTES // FRAME_BYTES),
                RETIRE_MS,
                0,
                0,
            )
            sock.setsockopt(SOL_PACKET, PACKET_RX_RING, request)
            sock.bind((interface, 0))
            if promiscuous:
                index = socket.if_nametoindex(interface)
                mreq = struct.pack("iHH8s", index, PACKET_MR_PROMISC, 0, b"")
                sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
        except OSError as exc:
            sock.close()
            raise OSError(exc.errno, f"cannot capture on {interface}: {exc.strerror}") from None
        return sock

    def read(self, timeout: float) -> StepBatch | None:
        """Decode the ready blocks (waiting up to ``batch_timeout`` for one), then free them."""
        try:
            return super().read(timeout)
        finally:
            for base in self._held:
                self._u32[(base + 8) >> 2] = TP_STATUS_KERNEL
            self._held.clear()

    def _raise_socket_error(self) -> None:
        """The socket's pending error as OSError: the link went down or its device is gone.

        ``poll`` reports it at once on every call until it is read, so leaving it there spun a
        core for as long as the link stayed down; raised, the source is restarted (or the agent
        stops) as the ``live`` source's errors are.
        """
        code = self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        raise OSError(code or errno.ENETDOWN, os.strerror(code or errno.ENETDOWN))

    def _receive(  # type: ignore[override]
        self, deadline: float
    ) -> tuple[
        npt.NDArray[np.int64], npt.NDArray[np.uint32], npt.NDArray[np.uint32], npt.NDArray[np.int64]
    ]:
        """Frame positions, lengths and kernel time stamps of the ready blocks."""
        parts: list[npt.NDArray[np.int64]] = []
        frames = 0
        while frames < self._batch_frames and len(self._held) < self._blocks:
            base = self._next * BLOCK_BYTES
            if not self._u32[(base + 8) >> 2] & TP_STATUS_USER:
                if parts:
                    break  # decode what is here rather than wait for more
                remaining = deadline - time.monotonic()
                ready = self._poll.poll(max(1, int(remaining * 1000))) if remaining > 0 else []
                if not ready:
                    break
                if any(
                    event & (select.POLLERR | select.POLLHUP | select.POLLNVAL)
                    for _, event in ready
                ):
                    self._raise_socket_error()
                continue
            count = int(self._u32[(base + 12) >> 2])
            pos = base + int(self._u32[(base + 16) >> 2])
            ring = self._words
            chain = [0] * count
            for i in range(count):  # the chain is the only way to find frame i + 1
                chain[i] = pos
                pos += ring[pos >> 2]
            parts.append(np.array(chain, np.int64))
            frames += count
            self._held.append(base)
            self._next = (self._next + 1) % self._blocks
        # behind while a ready block is left (a held block still reads as the reader's: a ring
        # read whole is behind too); LiveSource.read then closes no step on the wall clock
        self._behind = bool(self._u32[(self._next * BLOCK_BYTES + 8) >> 2] & TP_STATUS_USER)
        if not parts:
            empty = np.zeros(0, np.int64)
            return empty, empty.astype(np.uint32), empty.astype(np.uint32), empty
        hdr = np.concatenate(parts)
        if self._skip_outgoing:
            hdr = hdr[self._u8[hdr + SLL_PKTTYPE] != PACKET_OUTGOING]
        words = hdr >> 2
        stamps = self._u32[words + 1].astype(np.int64) * 1_000_000_000 + self._u32[words + 2]
        # kernel time stamps, never ahead of the clock the steps close on (it may be stepped)
        stamps = np.minimum(stamps, self._clock())
        caplens = self._u32[words + 3].copy()
        wires = self._u32[words + 4].copy()
        starts = hdr + self._u16[(hdr >> 1) + 12]  # tp_mac: the frame's first byte
        return starts, caplens, wires, stamps

    def close(self) -> None:
        """Unmap the ring, then close the socket."""
        if self._mm is not None:
            self._words.release()
            del self._u8, self._u16, self._u32, self._buf
            self._mm.close()
            self._mm = None
        super().close()


def _attach_snaplen_filter(sock: socket.socket, snaplen: int) -> None:
    """A one-instruction classic BPF program, ``ret #snaplen``: every frame, cut to snaplen."""
    program = ctypes.create_string_buffer(struct.pack("HBBI", 0x06, 0, 0, snaplen))
    fprog = struct.pack("HL", 1, ctypes.addressof(program))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
