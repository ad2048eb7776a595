"""Opening a bundle's zip without trusting it: every byte read is bounded before it is verified.

A bundle arrives from anyone who can publish on ``model/set``, so nothing in the zip is believed
until the signature over ``manifest.json`` checks out, and even then zip header sizes are not:

1. the payload is refused when larger than the configured maximum, before it is parsed;
2. the end-of-central-directory record is read by hand: more members than a bundle has, a
   central directory larger than its few small entries need, or a long archive comment are
   refused before ``zipfile`` builds an object per entry;
3. the member list must be exactly the bundle's names at top level: no duplicates, no folders,
   no encryption, stored or deflate only;
4. ``manifest.json`` and ``manifest.sig`` are inflated in small chunks with small caps;
5. only after the caller has verified the signature are ``model.tflite`` (and the optional
   benign model ``anomaly.tflite``) inflated, in chunks, failing as soon as one passes the size
   the signed manifest gives it (or the absolute limit).

A zip bomb therefore costs at most one chunk beyond the cap, whatever its headers declare.
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

MANIFEST = "manifest.json"
MODEL = "model.tflite"
SIGNATURE = "manifest.sig"
# Optional second model (the benign model of agent/openset.py); its size and hash are signed.
COMPANION = "anomaly.tflite"
MEMBERS = frozenset({MANIFEST, MODEL, SIGNATURE, COMPANION})

# The default of ``agent.max_bundle_bytes``: our int8 bundles are 18-260 KiB, float32 ones a few
# hundred KiB; 4 MiB leaves room for bigger models while a Pi Zero 2 W barely notices it.
DEFAULT_MAX_BUNDLE_BYTES = 4 * 1024 * 1024
MIN_BUNDLE_BYTES = 64 * 1024  # the lowest it may go: less would refuse our own bundles
# The highest ``agent.max_bundle_bytes`` may go, and the cap of the desktop tools.
MAX_BUNDLE_BYTES = 128 * 1024 * 1024
MAX_MODEL_BYTES = 64 * 1024 * 1024  # inflated model.tflite, whatever the manifest says
MAX_MANIFEST_BYTES = 1024 * 1024  # ours are 10-60 KiB (golden vectors in base64)
SIGNATURE_BYTES = 64  # raw Ed25519
MAX_DIRECTORY_BYTES = 4096  # four entries with short names take ~300 bytes
MAX_COMMENT_BYTES = 1024
CHUNK = 64 * 1024  # inflate this much at a time: the most a bomb can cost beyond a cap

_EOCD = b"PK\x05\x06"
_EOCD_FORMAT = "<4s4H2LH"  # signature, disk numbers and counts, directory size/offset, comment
_EOCD_SIZE = struct.calcsize(_EOCD_FORMAT)


class BundleError(ValueError):
    """A bundle the agent must refuse; the message is one line naming the problem."""


@dataclass(frozen=True)
class RawBundle:
    """The members of a bundle (unverified when returned by ``read_bundle``)."""

    manifest_bytes: bytes
    model_content: bytes
    signature: bytes | None
    companion: bytes | None = None  # anomaly.tflite, proven by agent.openset


def payload(source: str | Path | bytes, max_bytes: int) -> bytes:
    """The bundle's bytes, refused unread when larger than ``max_bytes``."""
    if isinstance(source, bytes):
        data = source
    else:
        try:
            size = Path(source).stat().st_size
            if size > max_bytes:  # say so before reading it all into memory
                raise BundleError(f"bundle file: {size} bytes, larger than {max_bytes}")
            data = Path(source).read_bytes()
        except OSError as exc:
            raise BundleError(f"bundle file: cannot read {source}: {exc.strerror}") from None
    if len(data) > max_bytes:
        raise BundleError(f"bundle file: {len(data)} bytes, larger than {max_bytes}")
    return data


def _check_directory(data: bytes) -> None:
    """Refuse many members, a big central directory or a long comment before zipfile parses."""
    at = data.rfind(_EOCD, max(0, len(data) - _EOCD_SIZE - 0xFFFF))
    if at < 0 or len(data) - at < _EOCD_SIZE:
        raise BundleError("bundle file: not a zip archive (wrong file type?)")
    _, _, _, _, entries, directory, _, comment = struct.unpack_from(_EOCD_FORMAT, data, at)
    if entries > len(MEMBERS):
        raise BundleError(f"bundle file: {entries} members, a bundle holds at most {len(MEMBERS)}")
    if directory > MAX_DIRECTORY_BYTES:
        raise BundleError(
            f"bundle file: central directory of {directory} bytes, more than {MAX_DIRECTORY_BYTES}"
        )
    if comment > MAX_COMMENT_BYTES:
        raise BundleError(
            f"bundle file: archive comment of {comment} bytes, more than {MAX_COMMENT_BYTES}"
        )


def _check_members(infos: list[zipfile.ZipInfo]) -> dict[str, zipfile.ZipInfo]:
    """Exactly the bundle's names at top level, each once, readable without a password."""
    found: dict[str, zipfile.ZipInfo] = {}
    for info in infos:
        name = info.filename
        if name not in MEMBERS:
            raise BundleError(
                f"bundle file: unexpected member {name!r} (a bundle holds only "
                f"{', '.join(sorted(MEMBERS))}, at top level)"
            )
        if name in found:
            raise BundleError(f"bundle file: duplicate member {name!r}")
        if info.flag_bits & 0x1:
            raise BundleError(f"bundle file: member {name!r} is encrypted")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise BundleError(
                f"bundle file: member {name!r} uses compression method {info.compress_type} "
                "(stored or deflate only)"
            )
        found[name] = info
    for name in (MANIFEST, MODEL):
        if name not in found:
            raise BundleError(f"bundle file: missing {name}")
    return found


class BundleArchive:
    """An opened bundle: manifest and signature read under small caps, the model not yet."""

    def __init__(self, data: bytes) -> None:
        _check_directory(data)
        try:
            self._zip = zipfile.ZipFile(io.BytesIO(data))
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, struct.error):
            raise BundleError("bundle file: not a zip archive (wrong file type?)") from None
        except (RuntimeError, NotImplementedError) as exc:  # e.g. "zip file version 15.8"
            raise BundleError(f"bundle file: unreadable archive ({exc})") from None
        self._members = _check_members(self._zip.infolist())
        self.manifest_bytes = self._read(MANIFEST, MAX_MANIFEST_BYTES)
        self.signature = (
            self._read(SIGNATURE, SIGNATURE_BYTES) if SIGNATURE in self._members else None
        )

    def model(self, size: int, limit: int = MAX_MODEL_BYTES) -> bytes:
        """Inflate ``model.tflite``; refused as soon as it passes ``size`` (or ``limit``)."""
        if size > limit:
            raise BundleError(f"bundle model: {size} bytes, larger than the limit of {limit}")
        return self._read(MODEL, size)

    def companion(self, size: int | None, limit: int = MAX_MODEL_BYTES) -> bytes | None:
        """Inflate ``anomaly.tflite`` when present, capped like the model; None when absent.

        ``size`` is what the signed manifest declares; a member it does not declare is refused
        before a byte of it is inflated.
        """
        if COMPANION not in self._members:
            return None
        if size is None:
            raise BundleError(f"bundle file: {COMPANION} present but the manifest declares none")
        if size > limit:
            raise BundleError(
                f"bundle benign model: {size} bytes, larger than the limit of {limit}"
            )
        return self._read(COMPANION, size)

    def _read(self, name: str, cap: int) -> bytes:
        """A member inflated chunk by chunk; BundleError once it passes ``cap`` bytes."""
        info = self._members[name]
        if info.file_size > cap:  # a cheap early refusal; the loop below does not rely on it
            raise BundleError(f"bundle file: {name} declares {info.file_size} bytes, cap {cap}")
        out = bytearray()
        try:
            with self._zip.open(info) as stream:
                while chunk := stream.read(CHUNK):
                    out += chunk
                    if len(out) > cap:
                        break
        except (zipfile.BadZipFile, OSError, EOFError, zlib.error, struct.error) as exc:
            raise BundleError(f"bundle file: corrupt archive ({exc})") from None
        except ValueError as exc:  # a header offset that seeks before the start
            raise BundleError(f"bundle file: corrupt archive ({exc})") from None
        except (RuntimeError, NotImplementedError) as exc:
            # zipfile's words for what _check_members should already have refused
            raise BundleError(f"bundle file: unreadable member ({exc})") from None
        if len(out) > cap:
            raise BundleError(f"bundle file: {name} inflates past {cap} bytes")
        return bytes(out)

    def close(self) -> None:
        """Release the zip (the payload bytes go with it)."""
        self._zip.close()


def open_archive(source: str | Path | bytes, max_bytes: int = MAX_BUNDLE_BYTES) -> BundleArchive:
    """Size-check the payload and open it: manifest and signature read, model left inflated."""
    return BundleArchive(payload(source, max_bytes))


def read_bundle(source: str | Path | bytes, max_bytes: int = MAX_BUNDLE_BYTES) -> RawBundle:
    """All members, unverified, each under its cap (desktop tools that report on them)."""
    archive = open_archive(source, max_bytes)
    try:
        model = archive.model(MAX_MODEL_BYTES)
        companion = archive.companion(MAX_MODEL_BYTES)
    finally:
        archive.close()
    return RawBundle(archive.manifest_bytes, model, archive.signature, companion)
