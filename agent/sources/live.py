"""Live capture with a Linux AF_PACKET raw socket: no libpcap, only CAP_NET_RAW.

Frames are received straight into one preallocated buffer, each with the time the kernel
received it (``SO_TIMESTAMPNS``), and decoded a batch at a time by the same vectorized decoder
the file reader uses. Promiscuous mode is a socket membership (it ends with the socket, leaving
the interface as it was), and the kernel's drop count comes from ``PACKET_STATISTICS``, so
health can report what was lost before decoding.
"""

from __future__ import annotations

import fcntl
import logging
import math
import os
import select
import socket
import struct
import sys
import termios
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from agent.evidence import join_evidence
from agent.features.decode import decode_frames
from agent.features.packets import PacketTable
from agent.sources import SourceStats, StepBatch
from agent.sources.traffic_steps import TrafficStepper

if TYPE_CHECKING:
    from agent.config import AgentConfig, SourceConfig

logger = logging.getLogger(__name__)

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_PROMISC = 1
PACKET_STATISTICS = 6
PACKET_OUTGOING = 4
CLOCK_JUMP_NS = 2_000_000_000  # the wall clock running this much ahead of monotonic time
SNAPLEN = 256  # headers only: the decoder reads no payload past MQTT's first byte
ARPHRD_ETHER = 1
ARPHRD_LOOPBACK = 772
ARPHRD_NONE = 0xFFFE
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
SO_TIMESTAMPNS_OLD = 35  # struct timespec: two C longs (32-bit seconds on a 32-bit Pi OS)
SO_TIMESTAMPNS_NEW = 64  # __kernel_timespec: two int64 on every architecture (Linux >= 5.1)
STAMP_SPACE = socket.CMSG_SPACE(16)


def linktype_of(interface: str) -> int:
    """The DLT frames from ``interface`` carry (AF_PACKET gives loopback an Ethernet header)."""
    try:
        arphrd = int(Path(f"/sys/class/net/{interface}/type").read_text())
    except (OSError, ValueError):
        return LINKTYPE_ETHERNET
    if arphrd in (ARPHRD_ETHER, ARPHRD_LOOPBACK):
        return LINKTYPE_ETHERNET
    if arphrd == ARPHRD_NONE:
        return LINKTYPE_RAW
    return LINKTYPE_ETHERNET


class LiveSource:
    """Captures one interface into traffic-v1 steps; steps close on the wall clock."""

    lossless = False
    finished = False

    def __init__(
        self,
        config: SourceConfig,
        agent: AgentConfig | None = None,
        *,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        from agent.config import LiveOptions

        options = config.options
        if not isinstance(options, LiveOptions):
            raise TypeError(f"{config.name}: live source needs LiveOptions")
        self.name = config.name
        self.interface = options.interface
        self.step = config.step_spec
        self._stepper = TrafficStepper(self.step)
        self.feature_set = self._stepper.feature_set
        self._clock = clock
        self._latest_ns = 0  # newest time stamped so far: a clock that goes back is caught
        self._last_clock = (clock(), time.monotonic_ns())  # and one that leaps ahead
        self.stats = SourceStats()
        self._batch_frames = options.batch_frames
        self._batch_timeout = options.batch_timeout
        self._linktype = linktype_of(options.interface)
        self._skip_outgoing = options.interface == "lo"  # lo shows every packet twice
        self._buf = np.zeros(options.batch_frames * SNAPLEN, np.uint8)
        self._view = memoryview(self._buf)  # type: ignore[arg-type]
        self._stamp_dtype = np.dtype(np.int64)  # seconds and nanoseconds of a kernel stamp
        self._behind = False  # the last read left frames queued (``_receive`` says)
        self._sock = self._open(options.interface, options.promiscuous, options.buffer_bytes)
        self._poll = select.poll()
        self._poll.register(self._sock.fileno(), select.POLLIN | select.POLLERR)

    def _open(self, interface: str, promiscuous: bool, buffer_bytes: int) -> socket.socket:
        """A bound, non-blocking AF_PACKET socket that gives each frame its kernel receive time.

        OSError names the interface when it cannot be opened. Non-blocking: ``read`` waits in
        ``poll`` only when the queue is empty, not before every frame.
        """
        try:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        except PermissionError as exc:
            raise PermissionError(needs_cap_net_raw(interface)) from exc
        try:
            sock.setblocking(False)
            try:
                sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS_NEW, 1)
            except OSError:  # a kernel before 5.1
                sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS_OLD, 1)
                self._stamp_dtype = np.dtype(np.int_)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, buffer_bytes)
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
        """Receive up to a batch of frames (or for ``batch_timeout``), decode, featurize."""
        deadline = time.monotonic() + min(timeout, self._batch_timeout)
        offsets, caplens, wires, stamps = self._receive(deadline)
        self._kernel_drops()
        now = self._clock()
        if now + self.step.size_ns < self._latest_ns:
            self._clock_went_back(now)
            stamps = np.minimum(stamps, now)
        elif self._clock_leapt(now):
            stamps = np.maximum(stamps, now - self.step.limit_ns)
        self._latest_ns = max(now, self._latest_ns)
        n = len(offsets)
        if n:
            table, malformed = decode_frames(
                self._buf,
                np.asarray(offsets, np.int64),
                np.asarray(caplens, np.uint32),
                np.asarray(wires, np.uint32),
                np.full(n, self._linktype, np.uint16),
                np.asarray(stamps, np.int64),
            )
            self.stats.frames += n
            self.stats.malformed.update(malformed)
            self.stats.packets += len(table)
            self.stats.bytes += int(table.wire_len.sum())
            batch = self._stepper.push(table)
        else:
            batch = self._stepper.push(PacketTable.empty())
        # Steps close on the wall clock only once nothing is left queued (socket or ring). After
        # a stall the backlog spans several reads and its kernel stamps place it; closing on
        # the wall clock after the first read would close the steps the rest belongs to empty
        # and pile the rest into the open step (a false flood). A quiet link is drained.
        merged = batch if self._behind else _concat(batch, self._stepper.advance(now))
        self.stats.steps += len(merged)
        return merged if len(merged) else None

    def _clock_went_back(self, now: int) -> None:
        """Restart the steps at ``now``: the featurizer never steps back in time.

        Left alone, every packet until the clock caught up again (an hour after NTP corrects a
        Pi's clock by an hour) would join one open step: no windows scored, and its evidence
        held in memory packet by packet.
        """
        logger.warning(
            "live source %s: the clock went back %.1f s; steps restart from now",
            self.name,
            (self._latest_ns - now) / 1e9,
        )
        self._stepper = TrafficStepper(self.step)
        self._latest_ns = now
        self._last_clock = (now, time.monotonic_ns())

    def _clock_leapt(self, now: int) -> bool:
        """Restart the steps when the wall clock ran ahead of monotonic time (NTP setting a
        Pi's clock that fake-hwclock left days behind); True when it did.

        Left alone, the featurizer closed every step of the leap as an idle one (up to 3,600
        at once): windows of silence nobody saw, scored in a burst, ending an attack under
        way and filling a site calibration's period with them.
        """
        mono = time.monotonic_ns()
        last_wall, last_mono = self._last_clock
        self._last_clock = (now, mono)
        ahead = (now - last_wall) - (mono - last_mono)
        if ahead <= max(CLOCK_JUMP_NS, self.step.limit_ns):
            return False
        logger.warning(
            "live source %s: the clock jumped ahead %.1f s; steps restart from now",
            self.name,
            ahead / 1e9,
        )
        self._stepper = TrafficStepper(self.step)
        return True

    def _receive(
        self, deadline: float
    ) -> tuple[list[int], list[int], list[int], npt.NDArray[np.int64]]:
        """Frames into the buffer until it is full or the deadline passes, with kernel stamps.

        The stamp is when the kernel received the frame, not when it was read: a backlog read
        after a stall keeps the times its frames arrived.
        """
        offsets: list[int] = []
        caplens: list[int] = []
        wires: list[int] = []
        stamps: list[bytes] = []
        pos = 0
        recv = self._sock.recvmsg_into
        view = self._view
        skip_outgoing = self._skip_outgoing
        while len(offsets) < self._batch_frames:
            try:
                wire, anc, _flags, address = recv(
                    [view[pos : pos + SNAPLEN]], STAMP_SPACE, socket.MSG_TRUNC
                )
            except BlockingIOError:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._poll.poll(math.ceil(remaining * 1000)):
                    break
                continue  # a POLLERR is raised by the next recvmsg
            if skip_outgoing and address[2] == PACKET_OUTGOING:
                continue
            offsets.append(pos)
            caplens.append(min(wire, SNAPLEN))
            wires.append(wire)
            stamps.append(anc[0][2] if anc else self._clock_stamp())
            pos += SNAPLEN
            if time.monotonic() >= deadline:
                break
        self._behind = self._queued()
        return offsets, caplens, wires, self._stamps(stamps)

    def _clock_stamp(self) -> bytes:
        """The clock as a kernel stamp, for a frame that came without one."""
        return np.array(divmod(self._clock(), 1_000_000_000), self._stamp_dtype).tobytes()

    def _stamps(self, raw: list[bytes]) -> npt.NDArray[np.int64]:
        """Kernel stamps in nanoseconds, never ahead of the clock the steps close on."""
        size = 2 * self._stamp_dtype.itemsize
        if any(len(r) != size for r in raw):  # never seen: each cmsg is one whole timespec
            raw = [r if len(r) == size else self._clock_stamp() for r in raw]
        pairs = np.frombuffer(b"".join(raw), self._stamp_dtype).reshape(-1, 2).astype(np.int64)
        stamps: npt.NDArray[np.int64] = pairs[:, 0] * 1_000_000_000 + pairs[:, 1]
        return np.minimum(stamps, self._clock())

    def _queued(self) -> bool:
        """A frame waits in the socket's queue (``SIOCINQ`` gives the next frame's length)."""
        try:
            raw = fcntl.ioctl(self._sock.fileno(), termios.FIONREAD, b"\0\0\0\0")
        except OSError:
            return False
        return int.from_bytes(raw, sys.byteorder) > 0

    def _kernel_drops(self) -> None:
        """Add the kernel's drop count since the last call (reading the counters resets them)."""
        try:
            raw = self._sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)
        except OSError:
            return
        _packets, drops = struct.unpack("II", raw)
        self.stats.drops += drops

    def close(self) -> None:
        """Close the socket (which also ends promiscuous mode)."""
        self._sock.close()


def _concat(first: StepBatch, second: StepBatch) -> StepBatch:
    if not len(second):
        return first
    if not len(first):
        return second
    return StepBatch(
        np.concatenate((first.start_ns, second.start_ns)),
        np.concatenate((first.values, second.values)),
        join_evidence(
            first.evidence or (None,) * len(first), second.evidence or (None,) * len(second)
        ),
    )


def needs_cap_net_raw(interface: str) -> str:
    """What a raw socket refused for want of privilege means, and the two ways to grant it."""
    python = os.path.realpath(sys.executable)
    return (
        f"cannot capture on {interface}: live capture needs CAP_NET_RAW; run the agent as the "
        f"shipped iotids-agent.service (AmbientCapabilities=CAP_NET_RAW) or grant it to this "
        f"Python with: sudo setcap cap_net_raw+ep {python}"
    )
