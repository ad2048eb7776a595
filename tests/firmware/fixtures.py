"""Small inputs and FAT disk images for the provisioning tests, generated here (never copied)."""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import struct
import subprocess
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.bundle import Golden, Manifest, Scaler, TensorSpec, key_id
from agent.features.schema import FeatureSet
from agent.features.steps import StepSpec
from agent.features.traffic import TRAFFIC_V1
from tests.agent.bundles import bundle_bytes

SECTOR = 512
IMAGE_MB = 40
START_LBA = 2048  # 1 MiB, as Raspberry Pi OS images align their boot partition


@dataclass(frozen=True)
class Inputs:
    """What an operator hands to ``iotids provision``."""

    bundle: Path
    key: Path
    signer: Ed25519PrivateKey
    password_file: Path
    password: str


def signed_bundle(
    signer: Ed25519PrivateKey | None,
    feature_set: FeatureSet = TRAFFIC_V1,
    step: StepSpec | None = None,
    quantization: str = "int8",
) -> bytes:
    """A format-1 bundle that passes every check but the golden vectors (placeholder model).

    Provisioning runs the checks a device makes before loading the model; the golden vectors
    need the device's runtime, so a stand-in model is enough here.
    """
    model = b"TFL3" + os.urandom(256)
    width, window = feature_set.width, 4
    zeros, ones = (0.0,) * width, (1.0,) * width
    spec = TensorSpec("int8", 1 / 256, -128)
    manifest = Manifest(
        bundle_id="flood-int8-fixture",
        created="2026-01-01T00:00:00Z",
        model_type="dnn",
        task="classify",
        feature_set=feature_set.id,
        schema_id=feature_set.schema_id,
        columns=feature_set.columns,
        step=step or StepSpec(),
        window=window,
        input_shape=(window, width),
        output_shape=(1, 2),
        input=spec,
        output=spec,
        quantization=quantization,
        scaler=Scaler("minmax", zeros, ones, zeros, ones),
        labels=("benign", "flood"),
        categories={"benign": "benign", "flood": "dos"},
        thresholds={"flood": 0.5},
        threshold_calibration={},
        metrics={},
        golden=Golden(np.zeros((1, window, width), np.float32), np.zeros((1, 2), np.float32), 1e-3),
        model_sha256=hashlib.sha256(model).hexdigest(),
        model_size=len(model),
        tools={},
        runtimes={},
        key_id=None if signer is None else key_id(signer.public_key()),
    )
    return bundle_bytes(manifest, model, signer)


def make_inputs(folder: Path) -> Inputs:
    """A signed bundle, its Ed25519 public key (PEM) and a password file (0600)."""
    folder.mkdir()
    signer = Ed25519PrivateKey.generate()
    bundle = folder / "traffic-cnn.iotb"
    bundle.write_bytes(signed_bundle(signer))
    key = folder / "release.pub"
    pem = signer.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    key.write_bytes(pem)
    password = "pw-" + os.urandom(12).hex()
    password_file = folder / "password"
    password_file.write_text(password + "\n")
    password_file.chmod(0o600)
    return Inputs(bundle, key, signer, password_file, password)


def write_mbr(image: Path, type_id: int, start: int, sectors: int, size: int) -> None:
    """A sparse image file with one primary partition in its MBR."""
    mbr = bytearray(SECTOR)
    mbr[446:462] = bytes([0x00, 0, 0, 0, type_id, 0, 0, 0]) + struct.pack("<II", start, sectors)
    mbr[510:512] = b"\x55\xaa"
    with image.open("wb") as fh:
        fh.truncate(size)
        fh.write(mbr)


def make_boot_image(image: Path, fat_bits: int, cmdline: str | None) -> Path:
    """A 40 MB disk image: MBR, one FAT partition at 1 MiB, and optionally a cmdline.txt."""
    if shutil.which("mkfs.vfat") is None or shutil.which("mcopy") is None:
        pytest.skip("needs dosfstools and mtools")
    size = IMAGE_MB * 1024 * 1024
    sectors = size // SECTOR - START_LBA
    write_mbr(image, 0x0C if fat_bits == 32 else 0x0E, START_LBA, sectors, size)
    subprocess.run(
        [
            "mkfs.vfat",
            "-F",
            str(fat_bits),
            "-n",
            "BOOTFS",
            "--offset",
            str(START_LBA),
            str(image),
            str(sectors * SECTOR // 1024),
        ],
        check=True,
        capture_output=True,
    )
    if cmdline is not None:
        local = image.parent / "cmdline.txt"
        local.write_text(cmdline)
        mcopy(image, str(local), "::/cmdline.txt")
        local.unlink()
    return image


IMAGER_START_LBA = 8192  # Raspberry Pi OS images put the FAT32 boot partition at 4 MiB
IMAGER_HOOK = (
    "systemd.run=/boot/firstrun.sh systemd.run_success_action=reboot "
    "systemd.unit=kernel-command-line.target"
)
IMAGER_CMDLINE = (
    "console=serial0,115200 console=tty1 root=PARTUUID=5e3da3da-02 rootfstype=ext4 "
    f"fsck.repair=yes rootwait quiet init=/usr/lib/raspberrypi-sys-mods/firstboot {IMAGER_HOOK}\n"
)


def imager_firstrun(boot: Path, order: Path) -> str:
    """A stand-in for the firstrun.sh Raspberry Pi Imager writes: its settings, then its cleanup.

    The settings are replaced by a line appended to ``order``; the cleanup is Imager's own
    (remove /boot/firstrun.sh, cut the hook off cmdline.txt), aimed at ``boot``.
    """
    return (
        "#!/bin/bash\n\nset +e\n\n"
        "# user, SSH, Wi-Fi and locale settings would be applied here\n"
        f'echo imager >> "{order}"\n'
        f'rm -f "{boot}/firstrun.sh"\n'
        f"sed -i 's| systemd.run.*||g' \"{boot}/cmdline.txt\"\n"
        "exit 0\n"
    )


def make_imager_image(image: Path, boot: Path, order: Path) -> Path:
    """A disk image as Raspberry Pi Imager leaves it: MBR, FAT32 at sector 8192, cmdline.txt
    hooked to /boot/firstrun.sh, and Imager's firstrun.sh (aimed at ``boot`` once extracted)."""
    if shutil.which("mkfs.vfat") is None or shutil.which("mcopy") is None:
        pytest.skip("needs dosfstools and mtools")
    size = 64 * 1024 * 1024
    sectors = size // SECTOR - IMAGER_START_LBA
    write_mbr(image, 0x0C, IMAGER_START_LBA, sectors, size)
    subprocess.run(
        ["mkfs.vfat", "-F", "32", "-n", "bootfs", "--offset", str(IMAGER_START_LBA), str(image),
         str(sectors * SECTOR // 1024)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    for name, text in (
        ("cmdline.txt", IMAGER_CMDLINE),
        ("firstrun.sh", imager_firstrun(boot, order)),
    ):
        local = image.parent / name
        local.write_text(text)
        mcopy(image, str(local), f"::/{name}", start=IMAGER_START_LBA)
        local.unlink()
    return image


def mtools_env() -> dict[str, str]:
    return {**os.environ, "MTOOLS_SKIP_CHECK": "1"}


def mcopy(image: Path, *args: str, start: int = START_LBA) -> None:
    subprocess.run(
        ["mcopy", "-o", "-i", f"{image}@@{start * SECTOR}", *args],
        check=True,
        capture_output=True,
        env=mtools_env(),
    )


def mtype(image: Path, name: str, start: int = START_LBA) -> bytes:
    """A file read back from the image's boot partition."""
    return subprocess.run(
        ["mtype", "-i", f"{image}@@{start * SECTOR}", f"::/{name}"],
        check=True,
        capture_output=True,
        env=mtools_env(),
    ).stdout


def mdir(image: Path, start: int = START_LBA) -> set[str]:
    """Every path in the image's boot partition."""
    out = subprocess.run(
        ["mdir", "-/", "-b", "-i", f"{image}@@{start * SECTOR}", "::/"],
        check=True,
        capture_output=True,
        env=mtools_env(),
        text=True,
    ).stdout
    return {line.removeprefix("::/").rstrip("/") for line in out.splitlines()}


def stub_iotids_wheel(folder: Path) -> Path:
    """A tiny valid ``iotids`` wheel whose console script exits 0: installs offline in seconds.

    It stands in for the real wheel, whose dependencies (numpy, LiteRT...) would have to be
    downloaded for this machine; what is under test is the installer, not the agent.
    """
    dist = "iotids-0.1.0.dist-info"
    files = {
        "iotids_stub.py": b"def main() -> int:\n    return 0\n",
        f"{dist}/METADATA": b"Metadata-Version: 2.1\nName: iotids\nVersion: 0.1.0\n",
        f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\n"
        b"Tag: py3-none-any\n",
        f"{dist}/entry_points.txt": b"[console_scripts]\niotids = iotids_stub:main\n",
    }
    record = [f"{name},sha256={_digest(data)},{len(data)}" for name, data in files.items()] + [
        f"{dist}/RECORD,,"
    ]
    files[f"{dist}/RECORD"] = ("\n".join(record) + "\n").encode()
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / "iotids-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return wheel


def _digest(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
