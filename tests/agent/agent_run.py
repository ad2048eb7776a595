"""A real ``agent run`` in a child process, for tests that look at the process itself.

``code`` is a small script run with ``python -c`` (it usually registers an ``atexit`` report,
then runs the agent with ``runpy``); the tests read what it printed after a SIGTERM.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from tests.agent.flood_bundle import REPO, FloodKit

MQTT_OFF = "[mqtt]\nenabled = false\n"


def agent_toml(kit: FloodKit, folder: Path, mqtt: str = MQTT_OFF) -> Path:
    """A config replaying the kit's flood capture in a loop into its flood bundle."""
    config = folder / "agent.toml"
    config.write_text(
        f'[agent]\ndevice_id = "gw"\nstate_dir = "{folder}"\nstats_interval = 0.2\n'
        f'trusted_keys = ["{kit.public_key}"]\n{mqtt}'
        f'[[sources]]\nname = "cap"\nkind = "pcap"\npath = "{kit.capture}"\nloop = true\n'
        f'[[models]]\nname = "flood"\nbundle = "{kit.bundle}"\nsource = "cap"\n'
    )
    return config


def start(code: str, config: Path, *args: str) -> subprocess.Popen[str]:
    """``python -c code CONFIG ARGS...`` with stdout and stderr piped."""
    return subprocess.Popen(
        [sys.executable, "-c", code, str(config), *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@contextlib.contextmanager
def running(code: str, config: Path, *args: str) -> Iterator[subprocess.Popen[str]]:
    """:func:`start`, and whatever happens inside, no process left behind after."""
    proc = start(code, config, *args)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def wait_running(proc: subprocess.Popen[str]) -> str:
    """Read the agent's log up to its "running" line (or its end); what was read."""
    assert proc.stderr is not None
    lines = []
    for line in proc.stderr:
        lines.append(line)
        if "running" in line:
            break
    return "".join(lines)


def stop(proc: subprocess.Popen[str], timeout: float = 30) -> tuple[str, str]:
    """SIGTERM, then the rest of stdout and stderr (killed if it outlives ``timeout``)."""
    proc.send_signal(signal.SIGTERM)
    try:
        # communicate drains the pipes while waiting: a full pipe must not hold the exit
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return out, err
