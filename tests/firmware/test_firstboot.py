"""First-boot scripts: shell-clean, consistent with the rendered tree, firstrun runs once."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from agent.cli import main
from firmware_configs.image import FIRSTRUN_HOOK
from firmware_configs.provision import HERE
from tests.broker import make_pki
from tests.firmware.fixtures import Inputs, imager_firstrun

SCRIPTS = (HERE / "firstboot/install.sh", HERE / "firstboot/firstrun.sh")


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_bash_parses_the_script(script: Path) -> None:
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert (result.returncode, result.stderr) == (0, "")


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_shellcheck_is_silent(script: Path) -> None:
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (apt-get install shellcheck)")
    result = subprocess.run(["shellcheck", str(script)], capture_output=True, text=True)
    assert (result.returncode, result.stdout) == (0, "")


def test_user_data_runs_the_installer() -> None:
    yaml = pytest.importorskip("yaml")
    text = (HERE / "firstboot/user-data").read_text()
    assert text.startswith("#cloud-config\n")
    assert yaml.safe_load(text) == {"runcmd": [["bash", "/boot/firmware/iotids/install.sh"]]}


def test_installer_reads_only_files_the_render_makes(inputs: Inputs, tmp_path: Path) -> None:
    ca = make_pki(tmp_path / "pki").ca_cert
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / "iotids-0.1.0-py3-none-any.whl").write_bytes(b"PK")
    out = tmp_path / "gw"
    args = [
        "provision", "--profile", "cm4", "--device-id", "gw-9", "--broker", "mqtts://b",
        "--bundle", str(inputs.bundle), "--trust-key", str(inputs.key), "--username", "gw-9",
        "--password-file", str(inputs.password_file), "--ca-file", str(ca),
        "--wheelhouse", str(wheels), "--out", str(out),
    ]  # fmt: skip
    assert main(args) == 0
    wanted = set(re.findall(r'"\$SRC/([A-Za-z0-9._/-]+)"', SCRIPTS[0].read_text()))
    assert wanted == {
        "agent.toml", "keys", "bundles", "ca.crt", "credentials", "iotids-agent.service",
        "iotids-install.service", "journald-iotids.conf", "wheelhouse",
    }  # fmt: skip
    for name in wanted:
        assert (out / "iotids" / name).exists(), name


def _boot_dir(tmp_path: Path, install_status: int, retry_unit: bool = True) -> Path:
    """A stand-in /boot/firmware: firstrun.sh, a hooked cmdline.txt, an installer stub.

    The stub appends ``install`` to ``order`` and, like the real one, puts the retry unit in
    the scratch root first (unless ``retry_unit`` is False: it failed before that).
    """
    boot = tmp_path / "boot"
    (boot / "iotids").mkdir(parents=True)
    shutil.copy(SCRIPTS[1], boot / "firstrun.sh")
    cmdline = f"console=tty1 root=PARTUUID=x {FIRSTRUN_HOOK} rootwait quiet\n"
    (boot / "cmdline.txt").write_text(cmdline)
    unit = tmp_path / "root/etc/systemd/system/iotids-install.service"
    make_unit = f'mkdir -p "{unit.parent}"; touch "{unit}"\n' if retry_unit else ""
    stub = f'#!/bin/bash\n{make_unit}echo install >> "{tmp_path}/order"\nexit {install_status}\n'
    (boot / "iotids/install.sh").write_text(stub)
    return boot


def _firstrun(tmp_path: Path, boot: Path) -> subprocess.CompletedProcess[str]:
    env = {"IOTIDS_ROOT": str(tmp_path / "root"), "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        ["bash", str(boot / "firstrun.sh")], env=env, capture_output=True, text=True, check=False
    )


@pytest.mark.parametrize("install_status", [0, 1])
def test_firstrun_unhooks_itself_once_the_install_or_its_retry_unit_is_in_place(
    tmp_path: Path, install_status: int
) -> None:
    boot = _boot_dir(tmp_path, install_status)
    result = _firstrun(tmp_path, boot)  # the boot folder is found from the script's own path
    assert result.returncode == 0
    assert (tmp_path / "order").read_text() == "install\n"
    assert (boot / "cmdline.txt").read_text() == "console=tty1 root=PARTUUID=x rootwait quiet\n"
    assert not (boot / "firstrun.sh").exists()
    retried = "iotids-install.service retries at every boot until it succeeds"
    assert (retried in result.stderr) == bool(install_status)


def test_firstrun_keeps_its_hook_when_nothing_else_would_retry(tmp_path: Path) -> None:
    boot = _boot_dir(tmp_path, install_status=1, retry_unit=False)
    hooked = (boot / "cmdline.txt").read_text()
    result = _firstrun(tmp_path, boot)
    assert result.returncode == 0  # the system still reboots, into the same first boot
    assert (boot / "cmdline.txt").read_text() == hooked
    assert (boot / "firstrun.sh").exists()
    assert "keeping the first-boot hook: the next boot tries again" in result.stderr


def test_firstrun_runs_imagers_settings_first_then_the_install(tmp_path: Path) -> None:
    boot = _boot_dir(tmp_path, install_status=0)
    imager = imager_firstrun(boot, tmp_path / "order")
    (boot / "iotids/imager-firstrun.sh").write_text(imager)
    result = _firstrun(tmp_path, boot)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "order").read_text() == "imager\ninstall\n"
    assert "applied Raspberry Pi Imager's settings" in result.stderr
    assert not (boot / "iotids/imager-firstrun.sh").exists()  # it runs once
    assert "systemd.run" not in (boot / "cmdline.txt").read_text()
