"""Write provisioned files into the FAT boot partition of a disk image, unprivileged.

No loop device and no mount: the MBR is parsed here to find the first FAT partition's byte
offset, and mtools addresses the file system inside the image as ``FILE.img@@OFFSET``. That is
how a build machine or CI job without root prepares an SD card image for a gateway.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import stat
import struct
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

logger = logging.getLogger(__name__)

SECTOR = 512
# MBR partition type ids of FAT file systems; Raspberry Pi OS images use 0x0C (FAT32 LBA).
FAT_TYPES = {
    0x01: "FAT12",
    0x04: "FAT16 (<32 MB)",
    0x06: "FAT16",
    0x0B: "FAT32 (CHS)",
    0x0C: "FAT32 (LBA)",
    0x0E: "FAT16 (LBA)",
}
GPT_PROTECTIVE = 0xEE
# Raspberry Pi Imager's hook: run firstrun.sh once, then reboot (Bookworm: /boot/firmware).
FIRSTRUN_HOOK = (
    "systemd.run=/boot/firmware/firstrun.sh systemd.run_success_action=reboot "
    "systemd.unit=kernel-command-line.target"
)
USER_DATA_MARKER = "iotids-provision"
FIRSTRUN_MARKER = b"iotids-provision"  # in our firstrun.sh; Imager's has no such line
# Where a firstrun.sh found in the image (Raspberry Pi Imager's settings: user, SSH, Wi-Fi)
# is kept; our firstrun.sh runs it first.
CHAINED_FIRSTRUN = "iotids/imager-firstrun.sh"
# The firstrun.sh paths a hook may already run: Imager's, and ours. Any other script of that name
# is not one our firstrun.sh replaces: the install would never run.
FIRSTRUN_PATHS = ("/boot/firstrun.sh", "/boot/firmware/firstrun.sh")
OPERATOR_DIR = "operator"  # the operator's files: rendered beside, never written to the card


class ImageError(Exception):
    """The image cannot take the files: no MBR, no FAT partition, or mtools refused."""


@dataclass(frozen=True)
class Partition:
    """One primary MBR partition entry."""

    number: int
    type_id: int
    start_lba: int
    sectors: int

    @property
    def offset(self) -> int:
        """Byte offset of the partition inside the image."""
        return self.start_lba * SECTOR

    @property
    def is_fat(self) -> bool:
        return self.type_id in FAT_TYPES


def read_partitions(image: Path) -> tuple[Partition, ...]:
    """The non-empty primary partitions of an MBR disk image, in table order."""
    if "@@" in str(image):
        # mtools splits FILE@@OFFSET at the first "@@": it would open (and write) another file.
        raise ImageError(
            f"{image}: an image path must not contain '@@' (mtools reads it as an offset)"
        )
    try:
        if not stat.S_ISREG(image.stat().st_mode):
            # A FIFO would block open() for ever; a device is not what the README takes.
            raise ImageError(f"{image}: not a regular file (an image file, not a device or pipe)")
        with image.open("rb") as fh:
            mbr = fh.read(SECTOR)
            size = os.fstat(fh.fileno()).st_size
    except OSError as exc:
        raise ImageError(f"{image}: cannot read: {exc.strerror or exc}") from None
    if len(mbr) < SECTOR or mbr[510:512] != b"\x55\xaa":
        raise ImageError(f"{image}: no MBR partition table (boot signature 55 AA missing)")
    parts = []
    for i in range(4):
        entry = mbr[446 + 16 * i : 446 + 16 * (i + 1)]
        type_id = entry[4]
        start, count = struct.unpack_from("<II", entry, 8)
        if type_id == 0 or count == 0:
            continue
        if type_id == GPT_PROTECTIVE:
            raise ImageError(f"{image}: a GPT disk; Raspberry Pi OS images use MBR")
        if (start + count) * SECTOR > size:
            raise ImageError(f"{image}: partition {i + 1} runs past the end of the image")
        parts.append(Partition(i + 1, type_id, start, count))
    return tuple(parts)


def boot_partition(image: Path) -> Partition:
    """The first FAT partition: where the Raspberry Pi firmware and cmdline.txt live."""
    for part in read_partitions(image):
        if part.is_fat:
            return part
    raise ImageError(f"{image}: no FAT partition in the MBR (the boot partition is FAT32)")


def _mtools(image: Path, part: Partition, *args: str) -> subprocess.CompletedProcess[bytes]:
    """Run one mtools command against the partition; ImageError with mtools' own words."""
    tool = args[0]
    if shutil.which(tool) is None:
        raise ImageError(f"{tool} not found: install mtools (apt-get install mtools)")
    target = f"{image}@@{part.offset}"
    env = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}
    result = subprocess.run([tool, "-i", target, *args[1:]], capture_output=True, env=env)
    if result.returncode != 0:
        reason = result.stderr.decode("utf-8", "replace").strip().splitlines()
        raise ImageError(f"{tool} on {target}: {reason[-1] if reason else 'failed'}")
    return result


def check_fat(image: Path, part: Partition) -> None:
    """Prove mtools can read the partition's file system before anything is written."""
    _mtools(image, part, "mdir", "-b", "::/")


def root_names(image: Path, part: Partition) -> frozenset[str]:
    """Lower-cased names in the partition's root directory (FAT names are case-insensitive)."""
    listing = _mtools(image, part, "mdir", "-b", "::/").stdout.decode("utf-8", "replace")
    return frozenset(line.rstrip("/").rsplit("/", 1)[-1].lower() for line in listing.splitlines())


def read_file(image: Path, part: Partition, name: str) -> bytes | None:
    """A file from the partition's root directory, byte for byte; None when there is none."""
    if name.lower() not in root_names(image, part):
        return None
    return _mtools(image, part, "mtype", f"::/{name}").stdout


def read_dir_file(image: Path, part: Partition, path: str) -> bytes | None:
    """A file at ``path`` (``folder/name``) in the partition; None when there is none."""
    folder, _, name = path.rpartition("/")
    found = _mtools(image, part, "mdir", "-b", f"::/{folder}").stdout.decode("utf-8", "replace")
    names = {line.rstrip("/").rsplit("/", 1)[-1].lower() for line in found.splitlines()}
    if name.lower() not in names:
        return None
    return _mtools(image, part, "mtype", f"::/{path}").stdout


def write_file(image: Path, part: Partition, name: str, data: bytes) -> None:
    """Create or replace a file (``name`` may be ``folder/file``, the folder existing)."""
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / PurePosixPath(name).name
        local.write_bytes(data)
        _mtools(image, part, "mcopy", "-o", str(local), f"::/{name}")


def cluster_bytes(image: Path, part: Partition) -> int:
    """The partition's cluster size in bytes, from ``minfo``'s boot sector."""
    info = _mtools(image, part, "minfo", "::").stdout.decode("utf-8", "replace")
    sector = re.search(r"sector size: (\d+) bytes", info)
    per = re.search(r"cluster size: (\d+) sectors", info)
    if sector is None or per is None:
        raise ImageError(f"{image}: minfo did not say the partition's cluster size")
    return int(sector.group(1)) * int(per.group(1))


def free_bytes(image: Path, part: Partition) -> int:
    """Free bytes in the partition, as ``mdir`` counts them (its last line)."""
    listing = _mtools(image, part, "mdir", "::/").stdout.decode("utf-8", "replace")
    for line in reversed(listing.splitlines()):
        if "bytes free" in line:
            return int("".join(c for c in line.split("bytes free")[0] if c.isdigit()) or 0)
    raise ImageError(f"{image}: mdir did not say how much of the partition is free")


def used_bytes(image: Path, part: Partition, path: str, cluster: int) -> int:
    """Bytes ``path`` (a folder in the partition) takes, in whole clusters (``mdu``)."""
    total = _mtools(image, part, "mdu", "-s", path).stdout.decode("utf-8", "replace").split()
    return int(total[-1]) * cluster if total and total[-1].isdigit() else 0


def needed_bytes(folder: Path, skip: frozenset[str], cluster: int) -> int:
    """What copying ``folder``'s entries (but ``skip``) takes: each file and folder in whole
    clusters, and a cluster of directory entries per folder."""
    total = 0
    for entry in folder.iterdir():
        if entry.name in skip:
            continue
        paths = [entry, *entry.rglob("*")] if entry.is_dir() else [entry]
        for path in paths:
            size = path.stat().st_size if path.is_file() else 0
            total += max(-(-size // cluster), 1) * cluster
    return total


def copy_tree(
    image: Path, part: Partition, folder: Path, skip: frozenset[str] = frozenset()
) -> None:
    """Copy every entry of ``folder`` (recursively) into the partition's root, replacing files."""
    entries = sorted(str(p) for p in folder.iterdir() if p.name not in skip)
    if entries:
        _mtools(image, part, "mcopy", "-s", "-o", "-Q", *entries, "::/")


def hook_firstrun(cmdline: str) -> str | None:
    """``cmdline.txt`` hooked to run ``firstrun.sh`` once; None when another script is hooked.

    Already hooked to the boot partition's ``firstrun.sh`` (ours, or Raspberry Pi Imager's
    ``/boot/firstrun.sh``, which ours then replaces and chains): returned unchanged. Hooked to
    any other script: None, since one kernel command line runs one script. The command line
    is the file's first line (the firmware reads no further): the hook goes there, and any
    later lines are kept as they are.
    """
    first, _, rest = cmdline.strip().partition("\n")
    line = first.strip()
    rest = f"{rest}\n" if rest else ""
    hooked = [w.split("=", 1)[1] for w in line.split() if w.startswith("systemd.run=")]
    if not hooked:
        return f"{line} {FIRSTRUN_HOOK}\n{rest}"
    if all(path in FIRSTRUN_PATHS for path in hooked):
        return f"{line}\n{rest}"
    return None


@dataclass(frozen=True)
class FirstBoot:
    """What the image's first boot runs once ours is in: the kernel command line and the
    Imager script to chain (None: none, or the one already kept in ``iotids/``)."""

    cmdline: bytes | None
    chained: bytes | None


def plan_first_boot(image: Path, part: Partition) -> FirstBoot:
    """Decide, before anything is written, how our firstrun.sh takes over the first boot.

    A ``firstrun.sh`` that is not ours is Raspberry Pi Imager's (user, SSH, Wi-Fi): it is kept
    and run first, never replaced. ImageError when the first boot cannot be chained: another
    ``systemd.run=`` script, or a foreign firstrun.sh that cmdline.txt does not run.
    """
    current = read_file(image, part, "firstrun.sh")
    foreign = current is not None and FIRSTRUN_MARKER not in current
    raw = read_file(image, part, "cmdline.txt")
    cmdline = None if raw is None else raw.decode("utf-8", "replace")
    hooked = None if cmdline is None else hook_firstrun(cmdline)
    if cmdline is not None and hooked is None:
        raise ImageError(
            f"{image}: cmdline.txt already runs another script at first boot "
            f"({_hooked_script(cmdline)}); iotids cannot chain it. Remove its systemd.run= "
            "parameters or write the image without it, then provision again"
        )
    if foreign and (cmdline is None or "systemd.run=" not in cmdline):
        raise ImageError(
            f"{image}: it has a firstrun.sh that cmdline.txt does not run; iotids will not "
            "replace it. Remove it (or re-run Raspberry Pi Imager), then provision again"
        )
    chained = current if foreign else None
    return FirstBoot(None if hooked is None else hooked.encode("utf-8"), chained)


def _hooked_script(cmdline: str) -> str:
    return ", ".join(w.split("=", 1)[1] for w in cmdline.split() if w.startswith("systemd.run="))


def install_into_image(image: Path, rendered: Path) -> None:
    """Write a folder rendered by ``iotids provision`` into the image's boot partition.

    Everything goes in but ``operator/`` (for the operator, not the gateway) and ``user-data``
    when the image already has one that is not ours (Imager writes its own for the default
    user; replacing it would lose that user). A ``firstrun.sh`` from Raspberry Pi Imager is
    kept as ``iotids/imager-firstrun.sh`` and run first by ours; the kernel command line gets
    the firstrun hook unless it already runs a firstrun.sh. Nothing is written when the first
    boot cannot be chained (ImageError).
    """
    part = boot_partition(image)
    first_boot = plan_first_boot(image, part)
    chained = first_boot.chained
    names = root_names(image, part)
    existing = read_file(image, part, "user-data")
    keep_user_data = existing is not None and USER_DATA_MARKER.encode() not in existing
    skip = frozenset({OPERATOR_DIR, *(["user-data"] if keep_user_data else [])})
    # Room first: the old iotids/ is removed before the copy, and a copy that runs out of
    # space leaves a boot partition that boots into half an install.
    cluster = cluster_bytes(image, part)
    room = free_bytes(image, part)
    if "iotids" in names:
        room += used_bytes(image, part, "::/iotids", cluster)
    need = needed_bytes(rendered, skip, cluster)
    if need > room:
        raise ImageError(
            f"{image}: the boot partition has room for {room:,} bytes of ours, the gateway's "
            f"files take {need:,}: nothing written"
        )
    if "iotids" in names:
        # Keep an Imager script chained by an earlier provisioning: it has not run yet.
        if chained is None and read_dir_file(image, part, CHAINED_FIRSTRUN) is not None:
            chained = read_dir_file(image, part, CHAINED_FIRSTRUN)
        # A previous device's keys, bundle or credentials must not linger beside the new ones.
        _mtools(image, part, "mdeltree", "::/iotids")
    copy_tree(image, part, rendered, skip)
    if chained is not None:
        write_file(image, part, CHAINED_FIRSTRUN, chained)
        logger.warning(
            "%s: kept Raspberry Pi Imager's firstrun.sh as %s; it runs first at first boot, "
            "then the iotids install",
            image,
            CHAINED_FIRSTRUN,
        )
    if keep_user_data:
        logger.warning(
            "%s already has a user-data; kept it. For cloud-init first boot add to its runcmd: "
            "- [bash, /boot/firmware/iotids/install.sh]",
            image,
        )
    if first_boot.cmdline is None:
        logger.warning("%s has no cmdline.txt: firstrun.sh will not run, only cloud-init", image)
    else:
        write_file(image, part, "cmdline.txt", first_boot.cmdline)
    logger.info("wrote %s into partition %d of %s", rendered, part.number, image)
