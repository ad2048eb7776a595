"""``--image``: the rendered folder lands in the FAT boot partition of a disk image, unmounted."""

from __future__ import annotations

import struct
from dataclasses import replace
from pathlib import Path

import pytest

from agent.cli import main
from firmware_configs.image import (
    FIRSTRUN_HOOK,
    ImageError,
    boot_partition,
    hook_firstrun,
    read_partitions,
)
from tests.firmware.fixtures import (
    SECTOR,
    START_LBA,
    Inputs,
    make_boot_image,
    mcopy,
    mdir,
    mtype,
    write_mbr,
)

CMDLINE = "console=serial0,115200 console=tty1 root=PARTUUID=4e639091-02 rootfstype=ext4 rootwait\n"


def provision(inputs: Inputs, out: Path, image: Path, device: str = "gw-01") -> int:
    return main(
        [
            "provision", "--profile", "pi4", "--device-id", device,
            "--broker", "mqtts://broker.example.net", "--bundle", str(inputs.bundle),
            "--trust-key", str(inputs.key), "--username", device,
            "--password-file", str(inputs.password_file),
            "--out", str(out), "--image", str(image),
        ]
    )  # fmt: skip


@pytest.mark.parametrize("fat_bits", [32, 16])
def test_files_land_in_the_boot_partition(inputs: Inputs, tmp_path: Path, fat_bits: int) -> None:
    image = make_boot_image(tmp_path / "pi.img", fat_bits, CMDLINE)
    out = tmp_path / "gw-01"
    assert provision(inputs, out, image) == 0
    rendered = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}
    assert rendered <= mdir(image)
    for name in rendered:
        assert mtype(image, name) == (out / name).read_bytes(), name
    assert mtype(image, "cmdline.txt").decode() == CMDLINE.strip() + " " + FIRSTRUN_HOOK + "\n"


def test_partition_offset_comes_from_the_mbr(tmp_path: Path) -> None:
    image = make_boot_image(tmp_path / "pi.img", 32, None)
    part = boot_partition(image)
    assert (part.number, part.type_id, part.offset) == (1, 0x0C, START_LBA * SECTOR)


def test_provisioning_again_replaces_files_and_hooks_once(inputs: Inputs, tmp_path: Path) -> None:
    image = make_boot_image(tmp_path / "pi.img", 32, CMDLINE)
    assert provision(inputs, tmp_path / "first", image, "gw-01") == 0
    renamed = inputs.bundle.with_name("second.iotb")
    inputs.bundle.rename(renamed)
    second = replace(inputs, bundle=renamed)
    assert provision(second, tmp_path / "second", image, "gw-02") == 0
    assert b'device_id = "gw-02"' in mtype(image, "iotids/agent.toml")
    assert [p for p in mdir(image) if p.startswith("iotids/bundles/")] == [
        "iotids/bundles/second.iotb"
    ]
    assert mtype(image, "cmdline.txt").decode().count("systemd.run=") == 1


def test_a_foreign_user_data_is_kept(inputs: Inputs, tmp_path: Path) -> None:
    image = make_boot_image(tmp_path / "pi.img", 32, CMDLINE)
    theirs = tmp_path / "user-data"
    theirs.write_text("#cloud-config\nusers:\n  - name: pi\n")
    mcopy(image, str(theirs), "::/user-data")
    assert provision(inputs, tmp_path / "gw", image) == 0
    assert mtype(image, "user-data") == theirs.read_bytes()
    assert "iotids/install.sh" in mdir(image)


def test_no_cmdline_still_copies(inputs: Inputs, tmp_path: Path) -> None:
    image = make_boot_image(tmp_path / "pi.img", 32, None)
    assert provision(inputs, tmp_path / "gw", image) == 0
    assert "cmdline.txt" not in mdir(image)
    assert b"install.sh" in mtype(image, "user-data")


def test_hook_leaves_another_systemd_run_alone() -> None:
    assert hook_firstrun("root=x systemd.run=/boot/firmware/custom.sh") is None
    hooked = hook_firstrun(CMDLINE)
    assert hooked is not None
    assert hook_firstrun(hooked) == hooked


def _broken_image(tmp_path: Path, case: str) -> Path:
    image = tmp_path / "disk.img"
    if case == "zeros":
        image.write_bytes(bytes(4096))
    elif case != "absent":
        type_id, start = {"gpt": (0xEE, START_LBA), "linux": (0x83, START_LBA)}.get(
            case, (0x0C, 8000)
        )
        write_mbr(image, type_id, start, 4096, 4 * 1024 * 1024)
    return image


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("zeros", "no MBR partition table"),
        ("gpt", "a GPT disk"),
        ("linux", "no FAT partition"),
        ("past-end", "runs past the end"),
        ("absent", "cannot read"),
    ],
)
def test_images_that_cannot_take_the_files(tmp_path: Path, case: str, message: str) -> None:
    with pytest.raises(ImageError, match=message):
        boot_partition(_broken_image(tmp_path, case))


def test_bad_image_fails_before_anything_is_written(
    inputs: Inputs, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = tmp_path / "disk.img"  # the MBR says FAT, but the partition was never formatted
    write_mbr(image, 0x0C, START_LBA, 4096, 4 * 1024 * 1024)
    out = tmp_path / "gw"
    assert provision(inputs, out, image) == 2
    assert capsys.readouterr().err.startswith("iotids provision: mdir on ")
    assert not out.exists()


def test_mbr_entries_after_an_empty_slot_are_found(tmp_path: Path) -> None:
    image = make_boot_image(tmp_path / "pi.img", 32, None)
    with image.open("r+b") as fh:  # move the partition entry from slot 1 to slot 2
        fh.seek(446)
        entry = fh.read(16)
        fh.seek(446)
        fh.write(bytes(16) + entry)
    (part,) = read_partitions(image)
    assert part.number == 2
    assert struct.unpack("<I", entry[8:12])[0] == part.start_lba
