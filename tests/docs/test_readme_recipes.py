"""The README's recipes run verbatim on a fresh directory, so they cannot rot.

The fenced ``sh`` blocks of "Train on your own captures" and "Deploying on a gateway" are read
from README.md and run one command at a time through ``bash`` in an empty folder, as a user
would paste them. The user's own captures are generated with ``iotids synth traffic``; steps
that need what this machine has not got are replaced by their documented local equivalents
(LOCAL below, each with its reason), and any other command of those blocks runs as written —
a new line in the README is run here the day it is added.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.broker import REPO, Broker, make_pki
from tests.firmware.fixtures import make_boot_image, stub_iotids_wheel

pytestmark = [pytest.mark.slow, pytest.mark.tf, pytest.mark.broker]

SECTIONS = ("## Train on your own captures", "## Deploying on a gateway")
# Command prefix -> (replacement or None to leave it out, why). ``{broker}`` is host and port.
LOCAL: dict[str, tuple[str | None, str]] = {
    "iotids provision wheelhouse": (
        None,
        "downloads aarch64 wheels from the package index; wheels/ holds a stub iotids wheel",
    ),
    "iotids monitor": (
        "iotids monitor --broker mqtt://{host}:{port} --once --timeout 1 --json",
        "a live view that runs until stopped: its one-snapshot form, on the local broker",
    ),
    "sh gw-01/operator/publish-discovery.sh": (
        "sh gw-01/operator/publish-discovery.sh -h {host} -p {port}",
        "the operator's broker is a local Mosquitto without TLS or users",
    ),
}


def readme_commands(
    readme: Path = REPO / "README.md", sections: tuple[str, ...] = SECTIONS
) -> list[str]:
    """The commands of the sections' ``sh`` blocks: continuations joined, comments cut."""
    text = readme.read_text(encoding="utf-8")
    commands: list[str] = []
    for heading in sections:
        start = text.index(heading)
        end = text.find("\n## ", start + len(heading))
        section = text[start : end if end >= 0 else len(text)]
        for block in re.findall(r"```sh\n(.*?)```", section, re.S):
            joined = re.sub(r"\\\n\s*", " ", block)
            for line in joined.splitlines():
                command = re.sub(r"(^|\s)#.*$", "", line).strip()
                if command:
                    commands.append(command)
    return commands


def test_the_recipes_are_found() -> None:
    commands = readme_commands()
    assert any(c.startswith("iotids train --dataset captures") for c in commands)
    assert any(c.startswith("iotids agent replay") for c in commands)
    assert any("iotids provision --profile pi4" in c for c in commands)


def _captures(folder: Path) -> None:
    """The user's captures: one class per file, named by class, a suspicious capture and a
    stretch of the gateway's own network."""
    gen = folder / "generated"
    flood = gen / "flood.json"
    gen.mkdir()
    flood.write_text(
        json.dumps(
            {
                "seed": 7,
                "duration": 90,
                "attacks": [{"kind": "syn_flood", "start": 0, "stop": 90, "intensity": 800}],
            }
        )
    )
    runs = {
        "benign": ["--preset", "benign", "--duration", "90", "--seed", "11"],
        "synflood": ["--scenario", str(flood)],
        "suspicious": ["--preset", "default", "--duration", "120", "--seed", "12"],
        "site": ["--preset", "benign", "--duration", "150", "--seed", "13"],
    }
    for name, args in runs.items():
        _iotids(folder, "synth", "traffic", "-q", "-o", str(gen / name), *args)
    (folder / "captures").mkdir()
    shutil.copy(gen / "benign" / "traffic.pcap", folder / "captures" / "benign-a.pcap")
    shutil.copy(gen / "synflood" / "traffic.pcap", folder / "captures" / "synflood-b.pcap")
    shutil.copy(gen / "suspicious" / "traffic.pcap", folder / "suspicious.pcapng")
    shutil.copy(gen / "site" / "traffic.pcap", folder / "site-hour.pcap")  # the gateway's own


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}


def _iotids(folder: Path, *args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "agent.cli", *args], cwd=folder, env=_env(), check=True, timeout=300
    )


def _run(folder: Path, command: str) -> subprocess.CompletedProcess[str]:
    # ``iotids`` is this checkout's command, whatever the shared venv has installed.
    script = f'iotids() {{ "{sys.executable}" -m agent.cli "$@"; }}\nset -e\n{command}\n'
    return subprocess.run(
        ["bash", "-c", script],
        cwd=folder,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=900,
    )


def test_train_and_deploy_recipes_run_verbatim(tmp_path: Path, mosquitto: Broker) -> None:
    if shutil.which("mosquitto_pub") is None:
        pytest.skip("publish-discovery.sh needs mosquitto_pub (mosquitto-clients)")
    _captures(tmp_path)
    make_boot_image(tmp_path / "raspios-bookworm-arm64.img", 32, "console=tty1 rootwait\n")
    shutil.copy(make_pki(tmp_path / "pki").ca_cert, tmp_path / "ca.pem")
    (tmp_path / "wheels").mkdir()
    stub_iotids_wheel(tmp_path / "wheels")
    outputs: dict[str, str] = {}
    for command in readme_commands():
        prefix = next((p for p in LOCAL if command.startswith(p)), None)
        if prefix is not None:
            replacement, _why = LOCAL[prefix]
            if replacement is None:
                continue
            command = replacement.format(host=mosquitto.host, port=mosquitto.port)
        done = _run(tmp_path, command)
        assert done.returncode == 0, f"{command}\n{done.stderr[-3000:]}"
        outputs[command.split(" --")[0]] = done.stdout
    assert (tmp_path / "keys" / "release.key").is_file()
    verify = next(v for k, v in outputs.items() if k.startswith("iotids verify"))
    assert json.loads(verify)["signature"]["status"] == "ok"
    replay = next(v for k, v in outputs.items() if k.startswith("iotids agent replay"))
    events = [json.loads(line) for line in replay.splitlines()]
    assert all(e["schema"] == "iotids.event/1" for e in events)
    assert (tmp_path / "gw-01" / "operator" / "publish-discovery.sh").is_file()
    snapshot = next(v for k, v in outputs.items() if k.startswith("iotids monitor"))
    assert isinstance(json.loads(snapshot), dict)
