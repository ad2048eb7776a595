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
    tmp_path: Path,
    boot: Path,
    *stubs: str,
    python: str = sys.executable,
    script: Path | None = None,
    mode: tuple[str, ...] = (),
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
        ["bash", str(script or boot / "iotids/install.sh"), *mode],
        env=env,
        capture_output=True,
        text=True,
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
    # The retry unit is enabled before anything else and disabled once everything worked.
    enable = calls.index(f"systemctl --root {root} enable iotids-install.service")
    assert enable < calls.index("useradd")
    assert enable < calls.index(f"systemctl --root {root} disable iotids-install.service")
    assert (root / "etc/iotids/installed").is_file()
    assert "the agent is installed; iotids-install.service is disabled" in result.stderr

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
    assert "is python3-venv installed?" in result.stderr
    assert result.stderr.strip().splitlines()[-1].endswith("every minute until it succeeds")


@pytest.mark.slow
def test_a_failed_install_is_retried_by_its_unit_until_it_succeeds(
    inputs: Inputs, tmp_path: Path
) -> None:
    boot = _boot(inputs, tmp_path, wheelhouse=True)
    root = tmp_path / "root"
    broken = tmp_path / "python3.11"
    broken.write_text("#!/bin/sh\nexit 1\n")  # the first boot's install fails
    broken.chmod(0o755)
    first, calls = _run(tmp_path, boot, python=str(broken))
    assert first.returncode != 0
    assert f"systemctl --root {root} enable iotids-install.service" in calls
    assert "disable iotids-install.service" not in calls
    assert not (root / "etc/iotids/installed").exists()  # the unit's condition: keep retrying
    unit = (root / "etc/systemd/system/iotids-install.service").read_text()
    assert "ExecStart=/opt/iotids/install.sh retry" in unit
    assert "ConditionPathExists=!/etc/iotids/installed" in unit
    assert "Restart=on-failure" in unit
    # A later boot: the unit runs the installed copy, which now succeeds.
    second, calls = _run(tmp_path, boot, script=root / "opt/iotids/install.sh", mode=("retry",))
    assert second.returncode == 0, second.stderr
    assert f"systemctl --root {root} disable iotids-install.service" in calls
    assert (root / "etc/iotids/installed").is_file()
    assert subprocess.run([root / "opt/iotids/venv/bin/iotids"], check=False).returncode == 0
