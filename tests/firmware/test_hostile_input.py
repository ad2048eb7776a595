"""Hostile values handed to ``iotids provision``: refused in one line, or rendered harmlessly."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import threading
import tomllib
from pathlib import Path

import pytest

from agent.cli import main
from agent.config import parse_config
from agent.config_render import render_config
from firmware_configs.discovery import render_publish_script
from firmware_configs.image import FIRSTRUN_HOOK, hook_firstrun
from firmware_configs.provision import ProvisionError, safe_name, unit_value
from tests.broker import make_pki
from tests.firmware.fixtures import Inputs, make_boot_image, mdir, stub_iotids_wheel


def argv(inputs: Inputs, out: Path, *extra: str, broker: str = "mqtt://broker.lan") -> list[str]:
    return [
        "provision", "--profile", "pi4", "--device-id", "gw-01", "--broker", broker,
        "--bundle", str(inputs.bundle), "--trust-key", str(inputs.key), "--out", str(out),
        *extra,
    ]  # fmt: skip


def refused(args: list[str], capsys: pytest.CaptureFixture[str], pattern: str) -> None:
    """Exit 2 with one line on stderr matching ``pattern``."""
    assert main(args) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert re.search(pattern, line), line


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (".release.pub", "_release.pub"),  # install.sh's "$from"/* skips dot files
        ("release.", "release_"),  # FAT drops a trailing dot
        ("..", "__"),
        ("con", "_con"),  # mtools refuses DOS device names
        ("LPT1.pub", "_LPT1.pub"),
        ("a b;$(x).pub", "a_b___x_.pub"),
        ("release.pub", "release.pub"),
    ],
)
def test_safe_names_reach_the_gateway_as_named(name: str, expected: str) -> None:
    assert safe_name(name) == expected


def test_a_dot_key_is_installed_under_the_name_agent_toml_gives(
    inputs: Inputs, tmp_path: Path
) -> None:
    hidden = tmp_path / ".release.pub"
    shutil.copy(inputs.key, hidden)
    out = tmp_path / "gw"
    args = argv(inputs, out)
    args[args.index("--trust-key") + 1] = str(hidden)
    assert main(args) == 0
    keys = tomllib.loads((out / "iotids/agent.toml").read_text())["agent"]["trusted_keys"]
    assert keys == ["/etc/iotids/keys/_release.pub"]
    copied = subprocess.run(
        ["bash", "-c", 'for f in "$1"/*; do basename "$f"; done', "_", str(out / "iotids/keys")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert copied == ["_release.pub"]


def test_keys_whose_names_differ_only_in_case_are_refused(
    inputs: Inputs, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    upper = tmp_path / "k" / "Release.pub"
    upper.parent.mkdir()
    shutil.copy(inputs.key, upper)
    args = argv(inputs, tmp_path / "gw", "--trust-key", str(upper))
    refused(args, capsys, r"^iotids provision: --trust-key: two files share a name on FAT")
    assert not (tmp_path / "gw").exists()


@pytest.mark.parametrize(
    ("names", "pattern"),
    [
        (("Dup-1.0-py3-none-any.whl", "dup-1.0-py3-none-any.whl"), "share a name on FAT"),
        (("x:y-1.0-py3-none-any.whl",), r"x:y-1\.0-py3-none-any\.whl .*not a wheel file name"),
        ((".hidden-1.0-py3-none-any.whl",), "not a wheel file name"),
    ],
)
def test_wheel_names_fat_cannot_hold_are_refused_before_the_image_is_touched(
    inputs: Inputs,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    names: tuple[str, ...],
    pattern: str,
) -> None:
    wheel = stub_iotids_wheel(tmp_path / "wheels")
    for name in names:
        shutil.copy(wheel, wheel.parent / name)
    image = make_boot_image(tmp_path / "pi.img", 32, "console=tty1 rootwait\n")
    before = image.read_bytes()
    args = argv(inputs, tmp_path / "gw", "--wheelhouse", str(wheel.parent), "--image", str(image))
    refused(args, capsys, rf"^iotids provision: --wheelhouse: .*{pattern}")
    assert image.read_bytes() == before
    assert "iotids" not in mdir(image)


def test_an_image_path_with_two_ats_is_refused_not_read_as_another_file(
    inputs: Inputs, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "a"  # a FAT file system that mtools would open for "a@@x.img"
    subprocess.run(["mkfs.vfat", "-C", str(other), "8192"], check=True, capture_output=True)
    before = other.read_bytes()
    image = make_boot_image(tmp_path / "plain.img", 32, "console=tty1 rootwait\n")
    image = image.rename(tmp_path / "a@@x.img")
    args = argv(inputs, tmp_path / "gw", "--image", str(image))
    refused(args, capsys, r"a@@x\.img: an image path must not contain '@@'")
    assert other.read_bytes() == before
    assert not (tmp_path / "gw").exists()


def test_an_image_that_is_a_pipe_is_refused_not_waited_for(
    inputs: Inputs, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fifo = tmp_path / "disk.img"
    os.mkfifo(fifo)
    unblock = threading.Timer(10, _open_for_writing, [fifo])  # a failure, not a hang
    unblock.start()
    try:
        args = argv(inputs, tmp_path / "gw", "--image", str(fifo))
        refused(args, capsys, r"disk\.img: not a regular file")
    finally:
        unblock.cancel()


def _open_for_writing(fifo: Path) -> None:
    with contextlib.suppress(OSError):  # ENXIO: nobody is reading, nothing to unblock
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))


@pytest.mark.parametrize(
    "script", ["/usr/local/sbin/firstrun.sh", "/boot/firmware/iotids/firstrun.sh", "firstrun.sh"]
)
def test_a_hook_to_another_firstrun_sh_is_refused_untouched(
    inputs: Inputs, tmp_path: Path, capsys: pytest.CaptureFixture[str], script: str
) -> None:
    image = make_boot_image(tmp_path / "pi.img", 32, f"console=tty1 systemd.run={script}\n")
    before = image.read_bytes()
    args = argv(inputs, tmp_path / "gw", "--image", str(image))
    refused(args, capsys, rf"cmdline\.txt already runs another script at first boot \({script}\)")
    assert image.read_bytes() == before


@pytest.mark.parametrize("option", ["--ca-file", "--password-file", "--trust-key", "--bundle"])
def test_an_endless_input_file_is_refused_not_read_whole(
    inputs: Inputs, tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str
) -> None:
    args = argv(inputs, tmp_path / "gw", broker="mqtts://broker.lan")
    if option in args:
        args[args.index(option) + 1] = "/dev/zero"
    else:
        args += [option, "/dev/zero"]
    refused(args, capsys, rf"^iotids provision: {option}: /dev/zero is larger than [0-9,]+ bytes$")


@pytest.mark.parametrize("interface", ["eth0\nx", 'a"b$(id)', "eth 0", "..", "", "a" * 16])
def test_an_interface_is_held_to_the_profiles_rule(
    inputs: Inputs, tmp_path: Path, capsys: pytest.CaptureFixture[str], interface: str
) -> None:
    args = argv(inputs, tmp_path / "gw", "--interface", interface)
    refused(args, capsys, r"^iotids provision: --interface: must be an interface name")


@pytest.mark.parametrize(
    ("flag", "env", "source"),
    [
        ("gw-01\n", None, "--username"),
        ("gw\x1b[2J", None, "--username"),
        (None, "gw-01\r\n", "IOTIDS_MQTT_USERNAME"),
    ],
)
def test_a_user_name_with_control_characters_is_refused(
    inputs: Inputs,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    flag: str | None,
    env: str | None,
    source: str,
) -> None:
    if env is not None:
        monkeypatch.setenv("IOTIDS_MQTT_USERNAME", env)
    extra = () if flag is None else ("--username", flag)
    args = argv(inputs, tmp_path / "gw", *extra)
    refused(args, capsys, rf"^iotids provision: {source}: the MQTT user name must not contain")


@pytest.mark.parametrize("content", [b"-----BEGIN CERTIFICATE-----\n", b"\x30\x82\x01\x00", b"ca"])
def test_a_ca_file_without_a_pem_certificate_is_refused(
    inputs: Inputs, tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes
) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_bytes(content)
    args = argv(inputs, tmp_path / "gw", "--ca-file", str(ca), broker="mqtts://broker.lan")
    refused(args, capsys, r"^iotids provision: --ca-file: .*ca\.pem holds no PEM certificate$")


def test_a_pem_ca_is_shipped_as_given(inputs: Inputs, tmp_path: Path) -> None:
    ca = make_pki(tmp_path / "pki").ca_cert
    out = tmp_path / "gw"
    assert main(argv(inputs, out, "--ca-file", str(ca), broker="mqtts://broker.lan")) == 0
    assert (out / "iotids/ca.crt").read_bytes() == ca.read_bytes()


# Defence in depth: the renderers quote for their target even what the CLI has already checked.


def test_the_discovery_script_quotes_the_device_id(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    script = tmp_path / "publish.sh"
    script.write_text(render_publish_script(f"gw$(touch {marker})`touch {marker}`"))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "mosquitto_pub").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "mosquitto_pub").chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin"}
    result = subprocess.run(["sh", str(script)], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert not marker.exists()
    with pytest.raises(ValueError, match="control character"):
        render_publish_script("gw\nrm -rf /")


def test_a_unit_value_cannot_add_a_directive() -> None:
    assert unit_value("gw-%n") == "gw-%%n"  # no specifier expansion
    for hostile in ("gw\nExecStartPre=/bin/sh -c id", "gw\\"):
        with pytest.raises(ProvisionError, match="cannot be written into a systemd unit"):
            unit_value(hostile)


def test_a_toml_comment_cannot_add_a_key() -> None:
    config = parse_config({"agent": {"device_id": "gw-01"}})
    text = render_config(config, header=["for gw\n[mqtt]\nhost = 'evil'", "bell\x07"])
    assert tomllib.loads(text) == tomllib.loads(render_config(config))
    assert "# [mqtt]" in text
    assert "# bell?" in text


def test_the_hook_goes_on_the_first_line_of_a_multi_line_cmdline() -> None:
    cmdline = "console=tty1 root=PARTUUID=x-02 rootwait\nquiet splash\n"
    hooked = hook_firstrun(cmdline)
    assert hooked is not None
    first, second = hooked.splitlines()
    assert first.endswith(FIRSTRUN_HOOK)
    assert second == "quiet splash"
    assert hook_firstrun(hooked) == hooked
