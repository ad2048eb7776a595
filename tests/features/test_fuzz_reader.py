"""Hypothesis against the reader and decoder: random bytes, cut and bit-flipped real packets.

Nothing may escape but CaptureFormatError (for a file that is not a capture at all), every
frame is either a row or a counted reject, and a frame cut inside its headers is a reject.
"""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.features.capture import CaptureFormatError, read_capture
from agent.features.decode import decode_frames
from agent.features.packets import Capture
from tests.features import craft

LINKTYPES = (0, 1, 12, 14, 101, 108, 113, 228, 229, 276, 147)
SOURCES = {  # a few real frames of each link type the shared captures hold
    "mqttset_reduced_pcap/slowite-train.pcap": 1,
    "mqttset_reduced_pcap/flood-train.pcap": 113,
    "ddos_pcaps_stopddos/amp.UDP.snmp.src161.pcapng": 1,
}
LINK_HEADER = {1: 14, 113: 16}
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@functools.cache
def real_frames(datasets: Path) -> tuple[tuple[int, bytes, int], ...]:
    """(linktype, frame bytes, header bytes through the transport header) of real packets."""
    out: list[tuple[int, bytes, int]] = []
    for name, linktype in SOURCES.items():
        data = (datasets / name).read_bytes()
        frames = _split_records(data)[:40]
        table, malformed = craft.decode([(linktype, f) for f in frames])
        assert not malformed
        ip_header = table.ip_len.astype(np.int64) - table.payload_len
        for frame, header in zip(frames, ip_header.tolist(), strict=True):
            out.append((linktype, frame, LINK_HEADER[linktype] + header))
    return tuple(out)


def _split_records(data: bytes) -> list[bytes]:
    """Frames of a little-endian pcap or single-interface pcapng file (test-side, plain Python)."""
    frames: list[bytes] = []
    if data[:4] == b"\xd4\xc3\xb2\xa1":
        pos = 24
        while pos + 16 <= len(data):
            incl = int.from_bytes(data[pos + 8 : pos + 12], "little")
            frames.append(data[pos + 16 : pos + 16 + incl])
            pos += 16 + incl
        return frames
    pos = 0
    while pos + 12 <= len(data):
        kind = int.from_bytes(data[pos : pos + 4], "little")
        length = int.from_bytes(data[pos + 4 : pos + 8], "little")
        if kind == 6:
            caplen = int.from_bytes(data[pos + 20 : pos + 24], "little")
            frames.append(data[pos + 28 : pos + 28 + caplen])
        pos += length
    return frames


def decode_pairs(frames: list[tuple[int, bytes]]) -> tuple[int, int]:
    """Rows and rejects for (linktype, bytes) frames; both must add up to the frame count."""
    table, malformed = craft.decode(frames)
    assert len(table) + sum(malformed.values()) == len(frames)
    return len(table), sum(malformed.values())


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(LINKTYPES), st.binary(max_size=120)), max_size=12))
def test_random_bytes_never_raise(frames: list[tuple[int, bytes]]) -> None:
    decode_pairs(frames)


@FUZZ
@given(st.data())
def test_frames_cut_inside_their_headers_are_rejected(datasets: Path, data: st.DataObject) -> None:
    pool = real_frames(datasets)
    picks = data.draw(st.lists(st.integers(0, len(pool) - 1), min_size=1, max_size=8))
    frames, expect_rejects = [], 0
    for i in picks:
        linktype, frame, header = pool[i]
        cut = data.draw(st.integers(0, len(frame)))
        frames.append((linktype, frame[:cut]))
        expect_rejects += cut < header
    rows, rejects = decode_pairs(frames)
    assert rejects == expect_rejects
    assert rows == len(frames) - expect_rejects


@FUZZ
@given(st.data())
def test_bit_flipped_real_frames_never_raise(datasets: Path, data: st.DataObject) -> None:
    pool = real_frames(datasets)
    picks = data.draw(st.lists(st.integers(0, len(pool) - 1), min_size=1, max_size=8))
    frames = []
    for i in picks:
        linktype, frame, _ = pool[i]
        flipped = bytearray(frame)
        for pos in data.draw(st.lists(st.integers(0, len(frame) - 1), max_size=6)):
            flipped[pos] ^= 1 << data.draw(st.integers(0, 7))
        frames.append((linktype, bytes(flipped)))
    decode_pairs(frames)


def test_decoder_caller_arrays_out_of_range_never_raise() -> None:
    rng = np.random.default_rng(7)
    buf = rng.integers(0, 256, 4096, dtype=np.uint8)
    n = 2000
    table, malformed = decode_frames(
        buf,
        rng.integers(-100, 5000, n).astype(np.int64),
        rng.integers(0, 3000, n).astype(np.uint32),
        rng.integers(0, 3000, n).astype(np.uint32),
        rng.choice(np.array(LINKTYPES, dtype=np.uint16), n),
        rng.integers(0, 1 << 62, n).astype(np.int64),
    )
    assert len(table) + sum(malformed.values()) == n
    assert malformed["bad_frame_bounds"] > 0


def read_bytes_as_file(content: bytes) -> Capture | None:
    """read_capture on ``content`` through a real file; None for CaptureFormatError."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.pcap"
        path.write_bytes(content)
        try:
            result = read_capture(path)
        except CaptureFormatError as exc:
            message = str(exc)
            result = None
    if result is None:
        assert "fuzz.pcap" in message
        return None
    assert result.frames == len(result.packets) + result.malformed_total
    return result


MAGICS = [b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\x0a\x0d\x0d\x0a", b""]


@FUZZ
@given(st.sampled_from(MAGICS), st.binary(max_size=400))
def test_random_files_never_raise(magic: bytes, body: bytes) -> None:
    read_bytes_as_file(magic + body)


@functools.cache
def real_file(path: Path) -> bytes:
    """The first 6,000 bytes of a shared capture (a few dozen records)."""
    return path.read_bytes()[:6000]


@FUZZ
@given(
    st.sampled_from(["portscan_pcap_ppa/synscan.pcapng", "mqttset_reduced_pcap/flood-train.pcap"]),
    st.data(),
)
def test_cut_and_flipped_real_files_never_raise(
    datasets: Path, name: str, data: st.DataObject
) -> None:
    content = bytearray(real_file(datasets / name))
    clean = read_bytes_as_file(bytes(content))
    assert clean is not None
    cut = data.draw(st.integers(0, len(content)))
    for pos in data.draw(st.lists(st.integers(0, len(content) - 1), max_size=8)):
        content[pos] ^= 1 << data.draw(st.integers(0, 7))
    read_bytes_as_file(bytes(content[:cut]))


@pytest.mark.parametrize("name", ["portscan_pcap_ppa/synscan.pcapng"])
def test_cutting_a_real_file_mid_record_counts_it(datasets: Path, name: str) -> None:
    content = real_file(datasets / name)
    result = read_bytes_as_file(content[:-7])
    assert result is not None
    assert result.truncated_file
    assert result.malformed["truncated_record"] == 1
