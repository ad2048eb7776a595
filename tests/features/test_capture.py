"""read_capture / iter_capture on the shared real captures and on crafted pcap / pcapng files."""

from __future__ import annotations

import io
import logging
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agent.features import capture as capture_module
from agent.features.capture import (
    CaptureFormatError,
    check_capture,
    iter_capture,
    merge_captures,
    read_capture,
)
from agent.features.packets import (
    L3_IPV4,
    PROTO_ICMP,
    PROTO_TCP,
    PROTO_UDP,
    TCP_ACK,
    TCP_RST,
    TCP_SYN,
    Capture,
    PacketTable,
)
from tests.features import craft

# Reference numbers copied from each folder's PROVENANCE.md ("Per-file statistics").
# Flag classes there partition TCP packets: SYN = SYN without ACK, SYN-ACK, then RST (with or
# without ACK), then "other".
PROVENANCE: dict[str, dict[str, Any]] = {
    "mqttset_reduced_pcap/benign-5mb-train.pcap": {
        "span_s": 2761.184,
        "linktype": 113,
        "packets": 31809,
        "sources": 8,
        "l4": {"tcp": 31809},
        "flags": {"SYN": 7, "SYN-ACK": 7, "other": 31795},
        "ports": [("tcp", 1883, 20179), ("tcp", 45845, 5574), ("tcp", 33123, 2814),
                  ("tcp", 43061, 2813), ("tcp", 39937, 142)],
    },
    "mqttset_reduced_pcap/benign-train.pcap": {
        "span_s": 548.183,
        "linktype": 113,
        "packets": 6375,
        "sources": 8,
        "l4": {"tcp": 6375},
        "flags": {"SYN": 7, "SYN-ACK": 7, "other": 6361},
        "ports": [("tcp", 1883, 4035), ("tcp", 45845, 1110), ("tcp", 33123, 564),
                  ("tcp", 43061, 563), ("tcp", 39937, 31)],
    },
    "mqttset_reduced_pcap/bruteforce-train.pcapng": {
        "span_s": 1351.668,
        "linktype": 1,
        "packets": 8918,
        "sources": 2,
        "l4": {"tcp": 8918},
        "flags": {"SYN": 889, "SYN-ACK": 889, "other": 7140},
        "ports": [("tcp", 1883, 5334), ("tcp", 55395, 5), ("tcp", 55508, 5),
                  ("tcp", 55648, 5), ("tcp", 55808, 5)],
    },
    "mqttset_reduced_pcap/flood-train.pcap": {
        "span_s": 17.771,
        "linktype": 113,
        "packets": 58,
        "sources": 2,
        "l4": {"tcp": 58},
        "flags": {"SYN": 1, "SYN-ACK": 1, "other": 56},
        "ports": [("tcp", 1883, 29), ("tcp", 42859, 29)],
    },
    "mqttset_reduced_pcap/malariados-train.pcap": {
        "span_s": 4.634,
        "linktype": 1,
        "packets": 1866,
        "sources": 2,
        "l4": {"tcp": 1866},
        "flags": {"SYN": 10, "SYN-ACK": 10, "other": 1846},
        "ports": [("tcp", 1883, 1208), ("tcp", 54546, 250), ("tcp", 54558, 188),
                  ("tcp", 54547, 127), ("tcp", 54548, 81)],
    },
    "mqttset_reduced_pcap/malformed-train.pcap": {
        "span_s": 169.639,
        "linktype": 1,
        "packets": 7315,
        "sources": 2,
        "l4": {"tcp": 7315},
        "flags": {"SYN": 606, "SYN-ACK": 606, "other": 5026, "RST": 1077},
        "ports": [("tcp", 1883, 4253), ("tcp", 49422, 33), ("tcp", 51146, 33),
                  ("tcp", 50226, 32), ("tcp", 50502, 31)],
    },
    "mqttset_reduced_pcap/slowite-train.pcap": {
        "span_s": 0.649,
        "linktype": 1,
        "packets": 6447,
        "sources": 2,
        "l4": {"tcp": 6447},
        "flags": {"SYN": 716, "SYN-ACK": 716, "other": 5015},
        "ports": [("tcp", 1883, 3583), ("tcp", 56808, 4), ("tcp", 56810, 4),
                  ("tcp", 56812, 4), ("tcp", 56814, 4)],
    },
    "ddos_pcaps_stopddos/amp.TCP.syn.optionallyACK.optionallysamePort.pcapng": {
        "span_s": 818.16,
        "linktype": 1,
        "packets": 896,
        "sources": 60,
        "l4": {"tcp": 896},
        "flags": {"SYN": 354, "SYN-ACK": 542},
        "ports": [("tcp", 21, 532), ("tcp", 9069, 164), ("tcp", 9070, 82), ("tcp", 445, 15),
                  ("tcp", 22318, 11)],
    },
    "ddos_pcaps_stopddos/amp.UDP.snmp.src161.pcapng": {
        "span_s": 0.023,
        "linktype": 1,
        "packets": 4373,
        "sources": 4276,
        "l4": {"udp": 4079, "icmp": 294},
        "flags": {},
        "ports": [("udp", 54609, 1397), ("udp", 12294, 1383), ("udp", 3299, 1299)],
    },
    "ddos_pcaps_stopddos/pkt.TCP.synflood.spoofed.pcap": {
        "span_s": 23.684,
        "linktype": 1,
        "packets": 37841,
        "sources": 37623,
        "l4": {"tcp": 37841},
        "flags": {"SYN": 37841},
        "ports": [("tcp", 25565, 37841)],
    },
    "portscan_pcap_ppa/synscan.pcapng": {
        "span_s": 23.085,
        "linktype": 1,
        "packets": 2011,
        "sources": 2,
        "l4": {"tcp": 2011},
        "flags": {"SYN": 1994, "SYN-ACK": 12, "RST": 5},
        "ports": [("tcp", 36050, 16), ("tcp", 443, 2), ("tcp", 143, 2), ("tcp", 3306, 2),
                  ("tcp", 199, 2)],
    },
}  # fmt: skip
L4_NAMES = {PROTO_TCP: "tcp", PROTO_UDP: "udp", PROTO_ICMP: "icmp"}


def flag_classes(packets: PacketTable) -> dict[str, int]:
    """PROVENANCE's TCP flag classes, each TCP packet in exactly one."""
    flags = packets.tcp_flags[packets.proto == PROTO_TCP]
    syn = (flags & TCP_SYN) != 0
    ack = (flags & TCP_ACK) != 0
    rst = (flags & TCP_RST) != 0
    classes = {
        "SYN": int((syn & ~ack).sum()),
        "SYN-ACK": int((syn & ack).sum()),
        "RST": int((~syn & rst).sum()),
        "other": int((~syn & ~rst).sum()),
    }
    return {name: count for name, count in classes.items() if count}


@pytest.mark.parametrize("name", sorted(PROVENANCE))
def test_real_captures_match_provenance(datasets: Path, name: str) -> None:
    expected = PROVENANCE[name]
    result = read_capture(datasets / name)
    packets = result.packets
    assert len(packets) == result.frames == expected["packets"]
    assert not result.malformed
    assert not result.truncated_file
    assert result.linktypes == Counter({expected["linktype"]: expected["packets"]})
    l4 = Counter(L4_NAMES.get(int(p), str(int(p))) for p in packets.proto)
    assert dict(l4) == expected["l4"]
    assert flag_classes(packets) == expected["flags"]
    ipv4 = packets.l3 == L3_IPV4
    assert len(np.unique(packets.src_lo[ipv4])) == expected["sources"]
    ports = Counter(zip(packets.proto.tolist(), packets.dport.tolist(), strict=True))
    top = ports.most_common(len(expected["ports"]))
    assert [count for _, count in top] == [count for *_, count in expected["ports"]]
    for proto_name, port, count in expected["ports"]:  # ties may list in either order
        proto = {v: k for k, v in L4_NAMES.items()}[proto_name]
        assert ports[(proto, port)] == count
    span_s = (int(packets.ts_ns.max()) - int(packets.ts_ns.min())) / 1e9
    assert span_s == pytest.approx(expected["span_s"], abs=0.0005)


def test_iter_capture_chunks_add_up_to_read_capture(datasets: Path) -> None:
    path = datasets / "mqttset_reduced_pcap/malformed-train.pcap"
    chunks = list(iter_capture(path, chunk_frames=1000))
    assert len(chunks) >= 8
    assert all(c.frames <= 1000 for c in chunks)
    whole = read_capture(path)
    merged = merge_captures(chunks)
    assert merged.frames == whole.frames == 7315
    for column in ("ts_ns", "src_lo", "sport", "dport", "tcp_flags", "mqtt_type", "ip_len"):
        assert np.array_equal(getattr(merged.packets, column), getattr(whole.packets, column))


def test_small_read_blocks_give_the_same_packets(
    datasets: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Records straddling read blocks (pcap and pcapng) are stitched, not lost."""
    for name in (
        "ddos_pcaps_stopddos/amp.UDP.snmp.src161.pcapng",
        "portscan_pcap_ppa/synscan.pcapng",
    ):
        whole = read_capture(datasets / name)
        monkeypatch.setattr(capture_module, "READ_SIZE", 997)
        small = read_capture(datasets / name)
        monkeypatch.undo()
        assert small.frames == whole.frames
        assert np.array_equal(small.packets.ts_ns, whole.packets.ts_ns)
        assert np.array_equal(small.packets.dst_lo, whole.packets.dst_lo)


def test_truncated_real_capture_keeps_what_was_read(datasets: Path, tmp_path: Path) -> None:
    data = (datasets / "portscan_pcap_ppa/synscan.pcapng").read_bytes()
    cut = tmp_path / "cut.pcapng"
    cut.write_bytes(data[: len(data) // 2 + 3])
    whole = read_capture(datasets / "portscan_pcap_ppa/synscan.pcapng")
    part = read_capture(cut)
    assert part.truncated_file
    assert part.malformed == Counter({"truncated_record": 1})
    n = len(part.packets)
    assert 900 < n < 1100
    assert np.array_equal(part.packets.ts_ns, whole.packets.ts_ns[:n])
    assert part.frames == n + 1


FRAMES = [
    craft.ethernet(craft.ETH_IPV4, craft.ipv4(PROTO_TCP, craft.tcp(1000 + i, 1883, TCP_SYN)))
    for i in range(5)
]
TIMES = [1_700_000_000_123_456_789 + i * 1_000_001 for i in range(5)]


@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize("nanoseconds", [False, True])
def test_pcap_byte_orders_and_resolutions(tmp_path: Path, order: str, nanoseconds: bool) -> None:
    path = tmp_path / "crafted.pcapng"  # the extension lies; the magic number decides
    path.write_bytes(
        craft.pcap(zip(TIMES, FRAMES, strict=True), order=order, nanoseconds=nanoseconds)
    )
    result = read_capture(path)
    expected = TIMES if nanoseconds else [t // 1000 * 1000 for t in TIMES]
    assert result.packets.ts_ns.tolist() == expected
    assert result.packets.sport.tolist() == [1000, 1001, 1002, 1003, 1004]
    assert result.linktypes == Counter({1: 5})
    assert not result.truncated_file


def test_pcapng_interfaces_resolutions_spb_opb_and_sections(tmp_path: Path) -> None:
    ip = craft.ipv4(PROTO_UDP, craft.udp(1234, 53, b"query"))
    eth = craft.ethernet(craft.ETH_IPV4, ip)
    second = 1_700_000_000
    blocks = [
        craft.shb(),
        craft.idb(1, snaplen=40),  # 10^-6 by default; SPBs are cut to 40 bytes
        craft.idb(101, tsresol=9),  # 10^-9
        craft.idb(113, tsresol=0x80 | 20, tsoffset=100),  # 2^-20 s, plus 100 s
        craft.epb(0, second * 1_000_000 + 250_000, eth),
        craft.epb(1, second * 1_000_000_000 + 7, ip),
        craft.block(0x0BAD, b"an unknown block is skipped by its length"),
        craft.epb(2, (second << 20) | (1 << 19), craft.sll(craft.ETH_IPV4, ip)),
        craft.spb(eth),  # interface 0, the previous packet's time
        craft.opb(1, second * 1_000_000_000 + 9, ip),
        craft.shb(">"),  # a second section, big-endian, with its own interfaces
        craft.idb(229, tsresol=3, order=">"),
        craft.epb(0, second * 1000 + 5, craft.ipv6(PROTO_UDP, craft.udp(1, 2)), order=">"),
    ]
    path = tmp_path / "multi.pcap"
    path.write_bytes(b"".join(blocks))
    result = read_capture(path)
    p = result.packets
    assert result.malformed == Counter({"truncated_udp": 1})  # the SPB cut to the snap length
    assert result.frames == 6
    ns = 1_000_000_000
    assert p.ts_ns.tolist() == [
        second * ns + 250_000_000,
        second * ns + 7,
        (second + 100) * ns + 500_000_000,
        second * ns + 9,
        second * ns + 5_000_000,
    ]
    assert p.linktype.tolist() == [1, 101, 113, 101, 229]
    assert result.linktypes == Counter({1: 2, 101: 2, 113: 1, 229: 1})
    assert p.dport.tolist() == [53, 53, 53, 53, 2]


def test_pcapng_spb_takes_the_previous_timestamp(tmp_path: Path) -> None:
    ip = craft.ipv4(PROTO_UDP, craft.udp(1, 2, b"x"))
    path = tmp_path / "spb.pcapng"
    path.write_bytes(
        craft.shb() + craft.idb(101) + craft.spb(ip) + craft.epb(0, 42, ip) + craft.spb(ip)
    )
    result = read_capture(path)
    assert result.packets.ts_ns.tolist() == [0, 42_000, 42_000]
    assert result.packets.wire_len.tolist() == [len(ip)] * 3


def test_pcapng_unknown_interface_and_bad_block_are_counted(tmp_path: Path) -> None:
    ip = craft.ipv4(PROTO_UDP, craft.udp(1, 2))
    bad = bytearray(craft.epb(0, 1, ip))
    bad[20:24] = (len(ip) + 100).to_bytes(4, "little")  # captured length beyond the block
    path = tmp_path / "bad.pcapng"
    path.write_bytes(
        craft.shb() + craft.idb(101) + craft.epb(3, 1, ip) + bytes(bad) + craft.epb(0, 2, ip)
    )
    result = read_capture(path)
    assert result.malformed == Counter({"unknown_interface": 1, "corrupt_block": 1})
    assert result.frames == 3
    assert len(result.packets) == 1


def test_pcapng_packet_blocks_shorter_than_their_fields_are_counted(tmp_path: Path) -> None:
    # a block length valid for a block (12+, a multiple of 4) but short of a packet block's fixed
    # fields, in the middle and at the very end of the file, where an EPB's 28 bytes run past it
    ip = craft.ipv4(PROTO_UDP, craft.udp(1, 2))
    short = [craft.block(kind, b"\0" * size) for kind, size in ((6, 16), (2, 8))]
    good = craft.epb(0, 1, ip) + craft.epb(0, 2, ip)
    for tail in (craft.block(6, b""), craft.spb(b"")):  # a 12-byte EPB; an empty 16-byte SPB
        path = tmp_path / "short.pcapng"
        path.write_bytes(craft.shb() + craft.idb(101) + good + b"".join(short) + tail)
        result = read_capture(path)
        assert result.malformed["corrupt_block"] == 2  # the two in the middle
        assert sum(result.malformed.values()) == 3  # and the last, counted as what it reads as
        assert result.frames == 5
        assert result.packets.ts_ns.tolist() == [1_000, 2_000]


def test_many_pcapng_sections_share_a_buffer_each_with_its_own_interfaces(tmp_path: Path) -> None:
    # a section per packet once cost a decode each (668 packets/s); same-order sections now
    # share a buffer, each packet read with its own section's interfaces and clock
    ip = craft.ipv4(PROTO_UDP, craft.udp(1, 2))
    eth = craft.ethernet(0x0800, ip)
    two = craft.shb() + craft.idb(1, tsresol=9) + craft.idb(101) + craft.epb(1, 5, ip)
    one = craft.shb() + craft.idb(101) + craft.epb(0, 7, ip) + craft.epb(1, 8, ip)  # no iface 1
    big = craft.shb(">") + craft.idb(1, order=">") + craft.epb(0, 9, eth, order=">")
    unit = two + craft.shb() + craft.idb(1, tsresol=9) + craft.epb(0, 3, eth) + one + big
    path = tmp_path / "sections.pcapng"
    path.write_bytes(unit * 2000)
    began = time.process_time()  # this process's CPU: other work on the machine does not count
    result = read_capture(path)
    assert time.process_time() - began < 5.0  # 10,000 sections: 15 s before
    assert result.packets.ts_ns[:4].tolist() == [5_000, 3, 7_000, 9_000]
    assert len(result.packets) == 4 * 2000
    assert result.malformed == Counter({"unknown_interface": 2000})
    assert result.frames == 5 * 2000


def test_truncated_crafted_file_ends_cleanly(tmp_path: Path) -> None:
    data = craft.pcap(zip(TIMES, FRAMES, strict=True))
    for cut, kept in ((len(data) - 5, 4), (24 + 8, 0), (10, 0)):
        path = tmp_path / f"cut{cut}.pcap"
        path.write_bytes(data[:cut])
        result = read_capture(path)
        assert result.truncated_file
        assert result.malformed == Counter({"truncated_record": 1})
        assert len(result.packets) == kept
        assert result.frames == kept + 1


def test_header_only_file_is_an_empty_capture(tmp_path: Path) -> None:
    path = tmp_path / "empty.pcap"
    path.write_bytes(craft.pcap([]))
    result = read_capture(path)
    assert (len(result.packets), result.frames, result.truncated_file) == (0, 0, False)


def test_corrupt_record_length_stops_the_file(tmp_path: Path) -> None:
    data = bytearray(craft.pcap(zip(TIMES, FRAMES, strict=True)))
    second_record = 24 + 16 + len(FRAMES[0])
    data[second_record + 8 : second_record + 12] = (0x7FFF_FFFF).to_bytes(4, "little")
    path = tmp_path / "corrupt.pcap"
    path.write_bytes(bytes(data))
    result = read_capture(path)
    assert len(result.packets) == 1
    assert result.truncated_file
    assert result.malformed == Counter({"corrupt_record": 1})


@pytest.mark.parametrize(
    ("content", "found"),
    [
        (b"", "empty"),
        (b"GET / HTTP/1.1\r\n\r\n", "47 45 54 20"),
        (b"\x0a\x0d\x0d\x0a\x1c\x00\x00\x00\xde\xad\xbe\xef", "de ad be ef"),
        (b"\xd4\xc3", "d4 c3"),
    ],
)
def test_not_a_capture_raises_with_the_file_name(
    tmp_path: Path, content: bytes, found: str
) -> None:
    path = tmp_path / "notes.pcap"
    path.write_bytes(content)
    with pytest.raises(CaptureFormatError, match=r"notes\.pcap") as info:
        read_capture(path)
    assert found in str(info.value)
    assert isinstance(info.value, ValueError)
    with pytest.raises(CaptureFormatError) as checked:  # the start-up check, from the head
        check_capture(path)
    assert str(checked.value) == str(info.value)


def test_the_start_up_check_passes_a_capture_and_refuses_a_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "ok.pcap"
    path.write_bytes(craft.pcap(zip(TIMES, FRAMES, strict=True)))
    check_capture(path)
    with pytest.raises(FileNotFoundError):
        check_capture(tmp_path / "gone.pcap")


def test_progress_bar_on_a_terminal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    path = tmp_path / "ok.pcap"
    path.write_bytes(craft.pcap(zip(TIMES, FRAMES, strict=True)))
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    with caplog.at_level(logging.INFO, logger="agent.progress"):
        result = read_capture(path, progress=True)
    assert len(result.packets) == len(read_capture(path).packets)
    last = terminal.getvalue().rstrip().split("\r")[-1]
    assert last.startswith("reading ok.pcap: [")
    assert "100%" in last


def test_frames_are_always_accounted_for(tmp_path: Path) -> None:
    frames = [*FRAMES, FRAMES[0][:20], craft.ethernet(0x88CC, bytes(30))]
    path = tmp_path / "mixed.pcap"
    path.write_bytes(craft.pcap((i * 1000, f) for i, f in enumerate(frames)))
    result: Capture = read_capture(path)
    assert result.frames == len(result.packets) + result.malformed_total == 7
    assert result.malformed == Counter({"truncated_ip": 1})


def _flood_file(seed: int, order: str) -> bytes:
    """Runs of equal-length frames (a flood's shape), broken by other lengths, in one pcap."""
    rng = np.random.default_rng(seed)
    frames = []
    t = TIMES[0]
    for _ in range(24):
        dport = int(rng.integers(1, 65535))
        payload = bytes(int(rng.choice([0, 0, 6, 100, 1400])))
        frame = craft.ethernet(
            craft.ETH_IPV4, craft.ipv4(PROTO_TCP, craft.tcp(1000, dport, TCP_SYN) + payload)
        )
        for _ in range(int(rng.choice([1, 3, 5, 6, 40, 300]))):
            frames.append((t, frame))
            t += 1000
    return craft.pcap(frames, order=order)


@pytest.mark.parametrize(("seed", "order"), [(0, "<"), (1, ">")])
def test_runs_of_one_frame_length_are_read_as_record_by_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int, order: str
) -> None:
    """The pcap reader's same-length fast path finds exactly the records the plain loop does,
    across read blocks, chunk limits, a truncated tail and a corrupt length."""
    data = _flood_file(seed, order)
    taken: list[int] = []
    same_length = capture_module._PcapScanner._same_length

    def counted(self: Any, *args: Any) -> int:
        taken.append(same_length(self, *args))
        return taken[-1]

    corrupt = bytearray(data)
    corrupt[len(data) // 2 : len(data) // 2 + 16] = b"\xff" * 16  # inside a run: stops there
    for name, content in (("whole", data), ("cut", data[:-7]), ("corrupt", bytes(corrupt))):
        path = tmp_path / f"{name}.pcap"
        path.write_bytes(content)
        for read_size, chunk in ((capture_module.READ_SIZE, 65536), (6000, 5000), (50000, 200)):
            monkeypatch.setattr(capture_module, "READ_SIZE", read_size)
            monkeypatch.setattr(capture_module._PcapScanner, "_same_length", counted)
            fast = list(iter_capture(path, chunk_frames=chunk))
            monkeypatch.setattr(capture_module, "SAME_LENGTH_RUN", 10**9)  # never taken
            plain = list(iter_capture(path, chunk_frames=chunk))
            monkeypatch.undo()
            assert [len(c.packets) for c in fast] == [len(c.packets) for c in plain]
            assert [c.malformed for c in fast] == [c.malformed for c in plain]
            got, expected = merge_captures(fast), merge_captures(plain)
            assert got.frames == expected.frames > 500
            for column in ("ts_ns", "dport", "wire_len", "ip_len"):
                assert np.array_equal(
                    getattr(got.packets, column), getattr(expected.packets, column)
                )
