"""decode_frames on crafted frames: every link type, the IP layers, and each reject reason."""

from __future__ import annotations

import numpy as np
import pytest

from agent.features.decode import decode_frames
from agent.features.packets import (
    FRAG_IS_FRAGMENT,
    FRAG_NOT_FIRST,
    L3_ARP,
    L3_IPV4,
    L3_IPV6,
    L3_NONE,
    PROTO_ICMP,
    PROTO_ICMPV6,
    PROTO_TCP,
    PROTO_UDP,
    TCP_ACK,
    TCP_PSH,
    TCP_SYN,
)
from tests.features import craft

SYN_PACKET = craft.ipv4(PROTO_TCP, craft.tcp(40000, 1883, TCP_SYN, window=29200), ttl=61)
SYN_PACKET_V6 = craft.ipv6(PROTO_TCP, craft.tcp(40000, 1883, TCP_SYN, window=29200))
MAPPED = 0xFFFF_0000_0000


def ipv4_lo(addr: str) -> int:
    """The low word of ::ffff:a.b.c.d."""
    a, b, c, d = (int(x) for x in addr.split("."))
    return MAPPED | (a << 24) | (b << 16) | (c << 8) | d


LINK_VARIANTS = {
    "ethernet": (1, craft.ethernet(craft.ETH_IPV4, SYN_PACKET)),
    "ethernet-802.1q": (1, craft.ethernet(craft.ETH_IPV4, SYN_PACKET, vlans=[(0x8100, 10)])),
    "ethernet-qinq-88a8": (
        1,
        craft.ethernet(craft.ETH_IPV4, SYN_PACKET, vlans=[(0x88A8, 100), (0x8100, 10)]),
    ),
    "ethernet-3-tags-9100": (
        1,
        craft.ethernet(craft.ETH_IPV4, SYN_PACKET, vlans=[(0x9100, 1), (0x88A8, 2), (0x8100, 3)]),
    ),
    "sll": (113, craft.sll(craft.ETH_IPV4, SYN_PACKET)),
    "sll2": (276, craft.sll2(craft.ETH_IPV4, SYN_PACKET)),
    "raw-101": (101, SYN_PACKET),
    "raw-12": (12, SYN_PACKET),
    "raw-14": (14, SYN_PACKET),
    "ipv4-228": (228, SYN_PACKET),
    "null-little-endian": (0, craft.null(2, SYN_PACKET, "<")),
    "null-big-endian": (0, craft.null(2, SYN_PACKET, ">")),
    "loop-108": (108, craft.loop(2, SYN_PACKET)),
}


@pytest.mark.parametrize("name", sorted(LINK_VARIANTS))
def test_same_ip_packet_decodes_identically_on_every_link_type(name: str) -> None:
    reference, _ = craft.decode([LINK_VARIANTS["raw-101"]])
    linktype, frame = LINK_VARIANTS[name]
    table, malformed = craft.decode([(linktype, frame)])
    assert malformed == {}
    got, want = craft.row(table), craft.row(reference)
    assert got["linktype"] == linktype
    assert got["wire_len"] == len(frame)
    for key in ("linktype", "wire_len"):
        del got[key], want[key]
    assert got == want
    assert want["ip_len"] == len(SYN_PACKET)
    assert want["l3"] == L3_IPV4
    assert want["src_lo"] == ipv4_lo("10.0.0.1")
    assert want["dst_lo"] == ipv4_lo("10.0.0.2")
    assert want["src_hi"] == want["dst_hi"] == 0
    assert (want["sport"], want["dport"], want["tcp_flags"]) == (40000, 1883, TCP_SYN)
    assert (want["tcp_window"], want["tcp_hdr_len"], want["ttl"]) == (29200, 20, 61)


@pytest.mark.parametrize(
    ("linktype", "frame"),
    [
        (1, craft.ethernet(craft.ETH_IPV6, SYN_PACKET_V6)),
        (1, craft.ethernet(craft.ETH_IPV6, SYN_PACKET_V6, vlans=[(0x8100, 5)])),
        (113, craft.sll(craft.ETH_IPV6, SYN_PACKET_V6)),
        (276, craft.sll2(craft.ETH_IPV6, SYN_PACKET_V6)),
        (101, SYN_PACKET_V6),
        (229, SYN_PACKET_V6),
        (0, craft.null(24, SYN_PACKET_V6)),
        (0, craft.null(28, SYN_PACKET_V6, ">")),
        (0, craft.null(30, SYN_PACKET_V6)),
        (108, craft.loop(30, SYN_PACKET_V6)),
    ],
)
def test_ipv6_on_every_link_type(linktype: int, frame: bytes) -> None:
    table, malformed = craft.decode([(linktype, frame)])
    assert malformed == {}
    r = craft.row(table)
    assert (r["l3"], r["proto"], r["ip_len"], r["payload_len"]) == (L3_IPV6, PROTO_TCP, 60, 0)
    assert r["src_hi"] == 0x2001_0DB8_0000_0000
    assert (r["src_lo"], r["dst_lo"]) == (1, 2)
    assert (r["sport"], r["dport"], r["ttl"]) == (40000, 1883, 64)


def test_ipv4_options_move_the_transport_header() -> None:
    options = bytes([7, 7, 4]) + bytes(4) + bytes([1])  # record route + NOP: 8 bytes
    packet = craft.ipv4(PROTO_UDP, craft.udp(5353, 53, b"q" * 10), options=options)
    table, malformed = craft.decode([(101, packet)])
    assert malformed == {}
    r = craft.row(table)
    assert (r["ip_len"], r["sport"], r["dport"], r["payload_len"]) == (46, 5353, 53, 10)


def test_ipv4_fragments_first_keeps_ports_others_do_not() -> None:
    segment = craft.tcp(1234, 80, TCP_ACK | TCP_PSH, b"x" * 60)
    first = craft.ipv4(PROTO_TCP, segment[:48], more_fragments=True)
    middle = craft.ipv4(PROTO_TCP, segment[48:64], more_fragments=True, frag_offset=48)
    last = craft.ipv4(PROTO_TCP, segment[64:], frag_offset=64)
    table, malformed = craft.decode([(101, first), (101, middle), (101, last)])
    assert malformed == {}
    assert table.frag.tolist() == [
        FRAG_IS_FRAGMENT,
        FRAG_IS_FRAGMENT | FRAG_NOT_FIRST,
        FRAG_IS_FRAGMENT | FRAG_NOT_FIRST,
    ]
    assert table.sport.tolist() == [1234, 0, 0]
    assert table.tcp_flags.tolist() == [TCP_ACK | TCP_PSH, 0, 0]
    assert table.proto.tolist() == [PROTO_TCP] * 3
    assert table.payload_len.tolist() == [28, 16, 16]  # first: 48 minus the 20-byte TCP header
    assert table.ip_len.tolist() == [68, 36, 36]


def test_ipv6_extension_chain_is_walked_to_the_transport_header() -> None:
    extensions = [craft.hop_by_hop(), craft.routing(1), craft.destination_options()]
    packet = craft.ipv6(PROTO_UDP, craft.udp(546, 547, b"d" * 12), extensions=extensions)
    table, malformed = craft.decode([(229, packet)])
    assert malformed == {}
    r = craft.row(table)
    assert (r["proto"], r["sport"], r["dport"], r["payload_len"]) == (PROTO_UDP, 546, 547, 12)
    assert r["ip_len"] == len(packet)
    assert r["frag"] == 0


def test_a_chain_longer_than_the_walk_is_still_counted_at_the_ip_layer() -> None:
    # hosts deliver a datagram behind 9 destination-options headers; skipping the packet whole
    # hid that traffic from every feature
    extensions = [craft.destination_options()] * 9
    packet = craft.ipv6(PROTO_UDP, craft.udp(546, 547, b"d" * 12), extensions=extensions)
    table, malformed = craft.decode([(229, packet)])
    assert malformed == {}
    r = craft.row(table)
    assert r["ip_len"] == len(packet)
    assert (r["sport"], r["dport"]) == (0, 0)  # the transport header is not reached


def test_ipv6_fragments_with_hop_by_hop_and_routing() -> None:
    segment = craft.tcp(2000, 443, TCP_SYN, b"s" * 40)
    head = [craft.hop_by_hop(16), craft.routing(2)]
    first = craft.ipv6(PROTO_TCP, segment[:32], extensions=[*head, craft.fragment(0, True)])
    rest = craft.ipv6(PROTO_TCP, segment[32:], extensions=[*head, craft.fragment(32, False)])
    table, malformed = craft.decode([(229, first), (229, rest)])
    assert malformed == {}
    assert table.proto.tolist() == [PROTO_TCP, PROTO_TCP]
    assert table.frag.tolist() == [FRAG_IS_FRAGMENT, FRAG_IS_FRAGMENT | FRAG_NOT_FIRST]
    assert table.sport.tolist() == [2000, 0]
    assert table.tcp_flags.tolist() == [TCP_SYN, 0]
    assert table.payload_len.tolist() == [12, len(segment) - 32]


def test_ipv6_authentication_header_is_stepped_over() -> None:
    ah = (51, bytes([0, 4, 0, 0]) + bytes(20))  # payload length 4 -> (4 + 2) * 4 = 24 bytes
    packet = craft.ipv6(PROTO_UDP, craft.udp(500, 500, b"ike"), extensions=[ah])
    table, malformed = craft.decode([(229, packet)])
    assert malformed == {}
    assert (int(table.proto[0]), int(table.sport[0]), int(table.payload_len[0])) == (17, 500, 3)


def test_icmp_and_icmpv6_types() -> None:
    echo = craft.ipv4(PROTO_ICMP, craft.icmp(8, 0, bytes(4) + b"ping"))
    unreachable = craft.ipv4(PROTO_ICMP, craft.icmp(3, 3, bytes(4) + SYN_PACKET[:28]))
    nd = craft.ipv6(PROTO_ICMPV6, craft.icmp(135, 0, bytes(20)))
    table, malformed = craft.decode([(101, echo), (101, unreachable), (101, nd)])
    assert malformed == {}
    assert table.icmp_type.tolist() == [8, 3, 135]
    assert table.proto.tolist() == [PROTO_ICMP, PROTO_ICMP, PROTO_ICMPV6]
    assert table.payload_len.tolist() == [8, 32, 20]
    assert table.sport.tolist() == [0, 0, 0]


def test_arp_addresses_are_ipv4_mapped() -> None:
    request = craft.ethernet(craft.ETH_ARP, craft.arp(1, "192.168.1.10", "192.168.1.1") + bytes(18))
    reply = craft.sll(craft.ETH_ARP, craft.arp(2, "192.168.1.1", "192.168.1.10"))
    table, malformed = craft.decode([(1, request), (113, reply)])
    assert malformed == {}
    assert table.l3.tolist() == [L3_ARP, L3_ARP]
    assert table.arp_op.tolist() == [1, 2]
    assert table.ip_len.tolist() == [28, 28]  # Ethernet padding never leaks
    assert table.src_lo.tolist() == [ipv4_lo("192.168.1.10"), ipv4_lo("192.168.1.1")]
    assert table.dst_lo.tolist() == [ipv4_lo("192.168.1.1"), ipv4_lo("192.168.1.10")]
    assert table.proto.tolist() == [0, 0]


def test_mqtt_control_packet_types_on_broker_ports() -> None:
    connect = craft.mqtt(1, b"\x00\x04MQTT\x04\x02\x00\x3c\x00\x02id")
    publish = craft.mqtt(3, b"\x00\x05a/b/c" + b"21.5")
    pingreq = craft.mqtt(12)

    def seg(sport: int, dport: int, payload: bytes) -> tuple[int, bytes]:
        return 101, craft.ipv4(PROTO_TCP, craft.tcp(sport, dport, TCP_ACK | TCP_PSH, payload))

    frames = [
        seg(50000, 1883, connect),
        seg(50000, 1883, publish),
        seg(1883, 50000, pingreq),
        seg(50001, 8883, publish),
        seg(50000, 1883, b""),  # a bare ACK: no payload, no MQTT type
        seg(50000, 8080, publish),  # not a broker port
    ]
    table, malformed = craft.decode(frames)
    assert malformed == {}
    assert table.mqtt_type.tolist() == [1, 3, 12, 3, 0, 0]
    assert table.payload_len.tolist() == [
        len(connect),
        len(publish),
        2,
        len(publish),
        0,
        len(publish),
    ]


def test_lengths_come_from_headers_not_from_the_capture() -> None:
    publish = craft.mqtt(3, b"\x00\x01t" + b"v" * 200)
    packet = craft.ipv4(PROTO_TCP, craft.tcp(50000, 1883, TCP_ACK, publish))
    frame = craft.ethernet(craft.ETH_IPV4, packet)
    snapped, malformed = craft.decode([(1, frame)], caplen=[14 + 40])  # snaplen cut after TCP
    whole, _ = craft.decode([(1, frame)])
    assert malformed == {}
    assert int(snapped.ip_len[0]) == int(whole.ip_len[0]) == len(packet)
    assert int(snapped.payload_len[0]) == int(whole.payload_len[0]) == len(publish)
    assert int(snapped.mqtt_type[0]) == 0  # the payload was not captured
    assert int(whole.mqtt_type[0]) == 3
    padded, _ = craft.decode([(1, craft.ethernet(craft.ETH_IPV4, SYN_PACKET) + bytes(20))])
    assert int(padded.ip_len[0]) == len(SYN_PACKET)
    assert int(padded.payload_len[0]) == 0


def test_other_ethertypes_are_rows_without_a_network_layer() -> None:
    lldp = craft.ethernet(0x88CC, bytes(40))
    stp = craft.MAC_B + craft.MAC_A + (38).to_bytes(2, "big") + bytes(38)  # 802.3 length field
    table, malformed = craft.decode([(1, lldp), (1, stp), (0, craft.null(7, bytes(20)))])
    assert malformed == {}
    assert table.l3.tolist() == [L3_NONE, L3_NONE, L3_NONE]
    assert table.ip_len.tolist() == [0, 0, 0]
    assert table.wire_len.tolist() == [len(lldp), len(stp), 24]


BAD_FRAMES = {
    "truncated_link": (1, craft.ethernet(craft.ETH_IPV4, b"")[:10]),
    "truncated_link/vlan": (1, craft.ethernet(craft.ETH_IPV4, b"", vlans=[(0x8100, 1)])[:16]),
    "truncated_link/sll": (113, craft.sll(craft.ETH_IPV4, b"")[:12]),
    "truncated_link/null": (0, b"\x02\x00"),
    "unknown_linktype": (147, SYN_PACKET),
    "bad_ip_version": (101, bytes([0x50]) + SYN_PACKET[1:]),
    "bad_ip_version/ethertype": (1, craft.ethernet(craft.ETH_IPV4, SYN_PACKET_V6)),
    "bad_ip_version/228": (228, SYN_PACKET_V6),
    "truncated_ip": (1, craft.ethernet(craft.ETH_IPV4, SYN_PACKET[:12])),
    "truncated_ip/v6": (229, SYN_PACKET_V6[:30]),
    "truncated_ip/options": (101, craft.ipv4(PROTO_TCP, b"", ihl=15)),
    "bad_ip_header_length": (101, craft.ipv4(PROTO_TCP, craft.tcp(1, 2, TCP_SYN), ihl=4)),
    "bad_ip_total_length": (101, craft.ipv4(PROTO_TCP, craft.tcp(1, 2, TCP_SYN), total_len=12)),
    "truncated_tcp": (101, SYN_PACKET[:30]),
    "bad_tcp_header_length": (101, craft.ipv4(PROTO_TCP, craft.tcp(1, 2, 0, data_offset=4))),
    "bad_tcp_header_length/beyond_ip": (
        101,
        craft.ipv4(PROTO_TCP, craft.tcp(1, 2, 0, options=bytes(8)), total_len=40),
    ),
    "truncated_udp": (101, craft.ipv4(PROTO_UDP, craft.udp(1, 2))[:25]),
    "bad_udp_length": (101, craft.ipv4(PROTO_UDP, craft.udp(1, 2), total_len=24)),
    "truncated_icmp": (101, craft.ipv4(PROTO_ICMP, craft.icmp(8))[:22]),
    "truncated_arp": (1, craft.ethernet(craft.ETH_ARP, craft.arp(1, "1.2.3.4", "1.2.3.5")[:20])),
    "truncated_ipv6_ext": (
        229,
        craft.ipv6(PROTO_TCP, b"", extensions=[craft.hop_by_hop(16)], payload_len=16)[:41],
    ),
    "bad_ipv6_ext_length": (
        229,
        craft.ipv6(PROTO_UDP, craft.udp(1, 2), extensions=[craft.routing(2)], payload_len=8),
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_FRAMES))
def test_malformed_frames_are_counted_by_reason_and_skipped(case: str) -> None:
    good = (101, SYN_PACKET)
    table, malformed = craft.decode([good, BAD_FRAMES[case], good])
    assert malformed == {case.split("/")[0]: 1}
    assert len(table) == 2
    assert table.ts_ns.tolist() == [0, 2000]  # the survivors keep their order and times


def test_frames_outside_the_buffer_are_rejected() -> None:
    buf = np.frombuffer(SYN_PACKET, dtype=np.uint8)
    n = 3
    table, malformed = decode_frames(
        buf,
        np.array([0, 10, -5], dtype=np.int64),
        np.array([len(SYN_PACKET), len(SYN_PACKET), 10], dtype=np.uint32),
        np.full(n, 100, dtype=np.uint32),
        np.full(n, 101, dtype=np.uint16),
        np.zeros(n, dtype=np.int64),
    )
    assert len(table) == 1
    assert malformed == {"bad_frame_bounds": 2}


def test_empty_chunk_and_mismatched_columns() -> None:
    table, malformed = craft.decode([])
    assert len(table) == 0
    assert not malformed
    with pytest.raises(ValueError, match="caplen"):
        decode_frames(
            np.zeros(4, dtype=np.uint8),
            np.zeros(2, dtype=np.int64),
            np.zeros(1, dtype=np.uint32),
            np.zeros(2, dtype=np.uint32),
            np.zeros(2, dtype=np.uint16),
            np.zeros(2, dtype=np.int64),
        )
