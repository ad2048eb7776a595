"""``--image``: the rendered folder lands in the FAT boot partition of a disk image, unmounted."""

from __future__ import annotations

import struct
import subprocess
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
    IMAGER_CMDLINE,
    IMAGER_START_LBA,
    SECTOR,
    START_LBA,
    Inputs,
    make_boot_image,
    make_imager_image,
    mcopy,
    mdir,
    mtools_env,
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
    operator = {name for name in rendered if name.startswith("operator/")}
    assert operator == {"operator/publish-discovery.sh"}
    rendered -= operator  # the operator's, never the gateway's
    assert rendered <= mdir(image)
    assert not [name for name in mdir(image) if name.startswith("operator")]
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
    assert hook_firstrun(IMAGER_CMDLINE) == IMAGER_CMDLINE  # Imager's hook: ours chains it


def _extract(image: Path, folder: Path) -> Path:
    """The boot partition's files, as the Pi sees them under /boot at first boot."""
    folder.mkdir()
    target = f"{image}@@{IMAGER_START_LBA * SECTOR}"
    subprocess.run(
        ["mcopy", "-s", "-n", "-i", target, "::/*", str(folder)],
        check=True,
        capture_output=True,
        env=mtools_env(),
    )
    return folder


def test_imagers_firstrun_is_chained_never_replaced(inputs: Inputs, tmp_path: Path) -> None:
    boot, order = tmp_path / "boot", tmp_path / "order"
    image = make_imager_image(tmp_path / "raspios.img", boot, order)
    theirs = mtype(image, "firstrun.sh", start=IMAGER_START_LBA)
    assert provision(inputs, tmp_path / "gw", image) == 0
    ours = (tmp_path / "gw/firstrun.sh").read_bytes()
    assert mtype(image, "firstrun.sh", start=IMAGER_START_LBA) == ours
    assert mtype(image, "iotids/imager-firstrun.sh", start=IMAGER_START_LBA) == theirs
    # Imager's hook stays as Imager wrote it: /boot/firstrun.sh is ours now.
    assert mtype(image, "cmdline.txt", start=IMAGER_START_LBA).decode() == IMAGER_CMDLINE
    # Provisioning again (another device) keeps Imager's script: it has not run yet.
    assert provision(inputs, tmp_path / "gw-again", image, "gw-02") == 0
    assert mtype(image, "iotids/imager-firstrun.sh", start=IMAGER_START_LBA) == theirs
    # First boot, from the card's own files: Imager's settings, then our install.
    _extract(image, boot)
    (boot / "iotids/install.sh").write_text(f'#!/bin/bash\necho install >> "{order}"\n')
    result = subprocess.run(
        ["bash", str(boot / "firstrun.sh")],
        env={"PATH": "/usr/bin:/bin", "IOTIDS_ROOT": str(tmp_path / "root")},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert order.read_text() == "imager\ninstall\n"
    assert "systemd.run" not in (boot / "cmdline.txt").read_text()
    assert (boot / "cmdline.txt").read_text().startswith("console=serial0,115200")
    assert not (boot / "firstrun.sh").exists()


@pytest.mark.parametrize(
    ("cmdline", "firstrun", "message"),
    [
        ("root=x systemd.run=/boot/custom.sh\n", None, "already runs another script"),
        (CMDLINE, b"#!/bin/bash\necho not hooked\n", "a firstrun.sh that cmdline.txt does not"),
    ],
    ids=["another-script", "unhooked-firstrun"],
)
def test_a_first_boot_that_cannot_be_chained_is_refused_untouched(
    inputs: Inputs,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    cmdline: str,
    firstrun: bytes | None,
    message: str,
) -> None:
    image = make_boot_image(tmp_path / "pi.img", 32, cmdline)
    if firstrun is not None:
        (tmp_path / "firstrun.sh").write_bytes(firstrun)
        mcopy(image, str(tmp_path / "firstrun.sh"), "::/firstrun.sh")
    before = image.read_bytes()
    out = tmp_path / "gw"
    assert provision(inputs, out, image) == 2
    err = capsys.readouterr().err
    assert err.startswith("iotids provision: ")
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert image.read_bytes() == before
    assert not out.exists()


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


def test_a_boot_partition_without_room_is_refused_untouched(
    inputs: Inputs, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from firmware_configs.image import free_bytes

    image = make_boot_image(tmp_path / "pi.img", 32, CMDLINE)
    filler = tmp_path / "filler.bin"
    with filler.open("wb") as fh:  # all but 8 KiB of the partition taken
        fh.truncate(free_bytes(image, boot_partition(image)) - 8192)
    mcopy(image, str(filler), "::/filler.bin")
    before = image.read_bytes()
    assert provision(inputs, tmp_path / "gw", image) == 2
    err = capsys.readouterr().err
    assert "the boot partition has room for" in err
    assert "nothing written" in err
    assert image.read_bytes() == before
