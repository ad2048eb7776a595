"""install.sh, run for real into a scratch root: files, modes, credentials, units, venv."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from agent.cli import main
from tests.firmware.fixtures import Inputs, stub_iotids_wheel

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="install.sh chowns to root")

STUB = '#!/bin/sh\necho "$(basename "$0") $*" >> "$IOTIDS_TEST_LOG"\n'


def _boot(inputs: Inputs, tmp_path: Path, wheelhouse: bool) -> Path:
    """A boot partition as ``iotids provision`` leaves it."""
    boot = tmp_path / "boot"
    args = [
        "provision", "--profile", "pi4", "--device-id", "gw-01", "--broker", "mqtts://b:8883",
        "--bundle", str(inputs.bundle), "--trust-key", str(inputs.key), "--username", "gw-01",
        "--password-file", str(inputs.password_file), "--out", str(boot),
    ]  # fmt: skip
    if wheelhouse:
        args += ["--wheelhouse", str(stub_iotids_wheel(tmp_path / "wheels").parent)]
    assert main(args) == 0
    return boot


def _run(
    tmp_path: Path, boot: Path, *stubs: str, python: str = sys.executable
) -> tuple[subprocess.CompletedProcess[str], str]:
    """Run install.sh with useradd / systemctl (and ``stubs``) replaced by loggers."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name in ("useradd", "systemctl", *stubs):
        (bin_dir / name).write_text(STUB)
        (bin_dir / name).chmod(0o755)
    log = tmp_path / "calls.log"
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "IOTIDS_BOOT_DIR": str(boot),
        "IOTIDS_ROOT": str(tmp_path / "root"),
        "IOTIDS_PYTHON": python,
        "IOTIDS_TEST_LOG": str(log),
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }
    result = subprocess.run(
        ["bash", str(boot / "iotids/install.sh")], env=env, capture_output=True, text=True
    )
    return result, log.read_text() if log.exists() else ""


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.slow
def test_install_from_the_wheelhouse(inputs: Inputs, tmp_path: Path) -> None:
    boot = _boot(inputs, tmp_path, wheelhouse=True)
    rendered = (boot / "iotids/agent.toml").read_bytes()
    result, calls = _run(tmp_path, boot)
    assert result.returncode == 0, result.stderr
    root = tmp_path / "root"
    etc = root / "etc/iotids"
    assert (etc / "agent.toml").read_bytes() == rendered
    assert (etc / "bundles/traffic-cnn.iotb").read_bytes() == inputs.bundle.read_bytes()
    assert (etc / "keys/release.pub").read_bytes() == inputs.key.read_bytes()
    assert (etc / "credentials/mqtt-password").read_text() == inputs.password
    assert _mode(etc / "credentials") == 0o700
    assert _mode(etc / "credentials/mqtt-password") == 0o600
    assert _mode(etc / "agent.toml") == 0o644
    assert not (boot / "iotids/credentials").exists()  # gone from the world-readable FAT
    units = root / "etc/systemd/system"
    assert (units / "iotids-agent.service").read_bytes() == (
        boot / "iotids/iotids-agent.service"
    ).read_bytes()
    assert (root / "etc/systemd/journald.conf.d/iotids.conf").is_file()
    assert _mode(root / "opt/iotids/install.sh") == 0o755
    assert subprocess.run([root / "opt/iotids/venv/bin/iotids"], check=False).returncode == 0
    assert f"useradd --root {root} --system" in calls
    assert f"systemctl --root {root} enable iotids-agent.service" in calls
    assert "enable iotids-install.service" not in calls

    again, _ = _run(tmp_path, boot)  # idempotent: a second boot changes nothing
    assert again.returncode == 0, again.stderr
    assert (etc / "credentials/mqtt-password").read_text() == inputs.password


def test_without_wheelhouse_or_network_the_install_waits_for_the_network(
    inputs: Inputs, tmp_path: Path
) -> None:
    boot = _boot(inputs, tmp_path, wheelhouse=False)
    result, calls = _run(tmp_path, boot, "ip")  # `ip` prints no default route
    assert result.returncode == 0, result.stderr
    root = tmp_path / "root"
    assert f"systemctl --root {root} enable iotids-install.service" in calls
    assert not (root / "opt/iotids/venv").exists()
    assert (root / "etc/systemd/system/iotids-install.service").is_file()
    assert "installed by iotids-install.service when online" in result.stderr


def test_a_python_without_venv_fails_loudly(inputs: Inputs, tmp_path: Path) -> None:
    boot = _boot(inputs, tmp_path, wheelhouse=True)
    no_venv = tmp_path / "python3.11"
    no_venv.write_text("#!/bin/sh\nexit 1\n")  # what a Python without python3-venv does here
    no_venv.chmod(0o755)
    result, _ = _run(tmp_path, boot, python=str(no_venv))
    assert result.returncode != 0
    assert result.stderr.strip().endswith("is python3-venv installed?")
