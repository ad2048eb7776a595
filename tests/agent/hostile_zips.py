"""Hostile bundle archives made by hand: zip bombs with lying headers, extra, duplicate and
nested members, long comments. ``zipfile`` cannot write these (it records true sizes and
refuses nothing), so the local headers, central directory and end record are packed here.
"""

from __future__ import annotations

import functools
import struct
import zlib
from dataclasses import dataclass

STORED, DEFLATED = 0, 8


@dataclass(frozen=True)
class Member:
    """One archive member: its stored bytes and what its headers claim."""

    name: str
    data: bytes  # as stored in the archive (already deflated when method is DEFLATED)
    method: int = STORED
    size: int | None = None  # declared uncompressed size; default: len(data) when stored
    crc: int | None = None  # declared CRC-32; default: of data when stored, else 0
    comment: bytes = b""


def stored(name: str, content: bytes) -> Member:
    """An honest uncompressed member."""
    return Member(name, content)


def deflated(name: str, content: bytes) -> Member:
    """An honest deflated member."""
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    data = packer.compress(content) + packer.flush()
    return Member(name, data, DEFLATED, len(content), zlib.crc32(content))


@functools.cache
def zeros_deflated(gib: float = 1.0) -> bytes:
    """A raw deflate stream of ``gib`` GiB of zeros (~1 MB), made 1 MiB at a time."""
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = bytes(1 << 20)
    parts = [packer.compress(block) for _ in range(int(gib * 1024))]
    parts.append(packer.flush())
    return b"".join(parts)


def bomb(name: str, declared: int = 42_000, gib: float = 1.0) -> Member:
    """A member that inflates to ``gib`` GiB while its headers declare ``declared`` bytes."""
    return Member(name, zeros_deflated(gib), DEFLATED, declared, 0)


def archive(members: list[Member], comment: bytes = b"", *, entries: int | None = None) -> bytes:
    """The zip bytes of ``members`` (``entries`` overrides the end record's member count)."""
    body = bytearray()
    directory = bytearray()
    for m in members:
        name = m.name.encode()
        size = len(m.data) if m.size is None else m.size
        crc = m.crc if m.crc is not None else (zlib.crc32(m.data) if m.method == STORED else 0)
        offset = len(body)
        body += struct.pack(
            "<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, m.method, 0, 0x21, crc, len(m.data), size,
            len(name), 0,
        )  # fmt: skip
        body += name + m.data
        directory += struct.pack(
            "<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 20, 20, 0, m.method, 0, 0x21, crc,
            len(m.data), size, len(name), 0, len(m.comment), 0, 0, 0, offset,
        )  # fmt: skip
        directory += name + m.comment
    count = len(members) if entries is None else entries
    end = struct.pack(
        "<4s4H2LH", b"PK\x05\x06", 0, 0, count, count, len(directory), len(body), len(comment)
    )
    return bytes(body + directory + end + comment)
