"""Application-layer bytes the generator puts on the wire: MQTT, DNS, NTP, HTTP, TLS, Telnet, SSH.

Real encodings (MQTT 3.1.1 remaining-length varints, DNS labels, TLS record headers), so a
dissector or our own MQTT type decoder reads the same message kinds a real gateway carries.
"""

from __future__ import annotations

import struct

# MQTT 3.1.1 control packet types (first byte >> 4)
MQTT_CONNECT = 1
MQTT_CONNACK = 2
MQTT_PUBLISH = 3
MQTT_PUBACK = 4
MQTT_SUBSCRIBE = 8
MQTT_SUBACK = 9
MQTT_PINGREQ = 12
MQTT_PINGRESP = 13
MQTT_DISCONNECT = 14

CONNACK_BAD_CREDENTIALS = 4
CONNACK_NOT_AUTHORIZED = 5


def _remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _utf8(text: str) -> bytes:
    raw = text.encode("utf-8")
    return struct.pack("!H", len(raw)) + raw


def mqtt_packet(kind: int, body: bytes, flags: int = 0) -> bytes:
    """Fixed header + body."""
    return bytes([(kind << 4) | flags]) + _remaining_length(len(body)) + body


def mqtt_connect(client_id: str, keepalive: int, user: str = "", password: str = "") -> bytes:
    """CONNECT (MQTT 3.1.1, clean session, optional username / password)."""
    flags = 0x02 | (0x80 if user else 0) | (0x40 if password else 0)
    body = _utf8("MQTT") + bytes([4, flags]) + struct.pack("!H", keepalive) + _utf8(client_id)
    if user:
        body += _utf8(user)
    if password:
        body += _utf8(password)
    return mqtt_packet(MQTT_CONNECT, body)


def mqtt_connack(rc: int = 0) -> bytes:
    return mqtt_packet(MQTT_CONNACK, bytes([0, rc]))


def mqtt_publish(topic: str, message: bytes, qos: int = 0, packet_id: int = 1) -> bytes:
    body = _utf8(topic) + (struct.pack("!H", packet_id) if qos else b"") + message
    return mqtt_packet(MQTT_PUBLISH, body, flags=qos << 1)


def mqtt_puback(packet_id: int = 1) -> bytes:
    return mqtt_packet(MQTT_PUBACK, struct.pack("!H", packet_id))


def mqtt_subscribe(topic: str, packet_id: int = 1) -> bytes:
    return mqtt_packet(MQTT_SUBSCRIBE, struct.pack("!H", packet_id) + _utf8(topic) + b"\x00", 2)


def mqtt_suback(packet_id: int = 1) -> bytes:
    return mqtt_packet(MQTT_SUBACK, struct.pack("!H", packet_id) + b"\x00")


PINGREQ = mqtt_packet(MQTT_PINGREQ, b"")
PINGRESP = mqtt_packet(MQTT_PINGRESP, b"")
DISCONNECT = mqtt_packet(MQTT_DISCONNECT, b"")


def _dns_name(name: str) -> bytes:
    return b"".join(bytes([len(p)]) + p.encode("ascii") for p in name.split(".")) + b"\x00"


def dns_query(name: str, txid: int) -> bytes:
    """A recursive A query."""
    return struct.pack("!HHHHHH", txid, 0x0100, 1, 0, 0, 0) + _dns_name(name) + b"\x00\x01\x00\x01"


def dns_response(name: str, txid: int, address: int, ttl: int = 300) -> bytes:
    """The answer to :func:`dns_query`: one A record."""
    question = _dns_name(name) + b"\x00\x01\x00\x01"
    answer = b"\xc0\x0c" + struct.pack("!HHIHI", 1, 1, ttl, 4, address)
    return struct.pack("!HHHHHH", txid, 0x8180, 1, 1, 0, 0) + question + answer


def ntp_packet(mode: int) -> bytes:
    """48-byte NTPv4 header (mode 3 client, 4 server)."""
    return bytes([(4 << 3) | mode, 2 if mode == 4 else 0, 6, 0xE9]) + bytes(44)


def tls_record(content_type: int, handshake_type: int | None = None) -> bytes:
    """The first bytes of a TLS 1.2/1.3 record (type, version); the rest is filler."""
    head = bytes([content_type, 3, 3, 0, 0])
    return head + (bytes([handshake_type]) if handshake_type is not None else b"")


TLS_CLIENT_HELLO = tls_record(22, 1)
TLS_SERVER_HELLO = tls_record(22, 2)
TLS_APP_DATA = tls_record(23)


def rtp_header(payload_type: int = 96, ssrc: int = 0x1234_5678) -> bytes:
    """RTP v2 header; the generator stamps each packet's sequence number and timestamp."""
    return bytes([0x80, payload_type]) + b"\x00\x00" + b"\x00" * 4 + struct.pack("!I", ssrc)


def http_get(host: str, path: str = "/") -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: Mozilla/5.0\r\n"
        "Accept: */*\r\nConnection: close\r\n\r\n"
    ).encode("ascii")


HTTP_OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 512\r\n\r\n"
TELNET_LOGIN = b"\xff\xfd\x18\xff\xfd\x20\r\nlogin: "
TELNET_PASSWORD = b"Password: "
TELNET_FAILED = b"\r\nLogin incorrect\r\n"
SSH_SERVER_BANNER = b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n"
SSH_CLIENT_BANNER = b"SSH-2.0-libssh2_1.10.0\r\n"
SSH_PACKET = b"\x00\x00\x05\xdc\x0a\x14"  # a binary packet header (KEXINIT-sized)

# Mirai's built-in credential list (first entries), used by the brute-force attacks.
MIRAI_CREDENTIALS = (
    ("root", "xc3511"),
    ("root", "vizxv"),
    ("admin", "admin"),
    ("root", "888888"),
    ("root", "xmhdipc"),
    ("root", "default"),
    ("root", "juantech"),
    ("root", "123456"),
    ("root", "54321"),
    ("support", "support"),
    ("root", ""),
    ("admin", "password"),
    ("root", "root"),
    ("root", "12345"),
    ("user", "user"),
    ("admin", ""),
)
