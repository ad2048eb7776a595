"""A real ``agent run`` in a child process, for tests that look at the process itself.

``code`` is a small script run with ``python -c`` (it usually registers an ``atexit`` report,
then runs the agent with ``runpy``); the tests read what it printed after a SIGTERM.

The agent's log goes to a file, not a pipe: at debug, under a flood, it logs a line per detection
update, and a pipe nobody reads while the test waits fills in a second (``test_log_sink`` shows
the agent no longer blocks on it, but a pipe full of lines says nothing a test could read).
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from tests.agent.flood_bundle import REPO, FloodKit
from tests.broker import Broker

MQTT_OFF = "[mqtt]\nenabled = false\n"


def mqtt_toml(broker: Broker, tls: str = "") -> str:
    """An ``[mqtt]`` table for ``broker`` that retries every second (outage tests)."""
    return (
        f'[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\nbackoff_min = 1.0\n'
        f"backoff_max = 1.0\n{tls}"
    )


def agent_toml(kit: FloodKit, folder: Path, mqtt: str = MQTT_OFF, log_level: str = "info") -> Path:
    """A config replaying the kit's flood capture in a loop into its flood bundle."""
    config = folder / "agent.toml"
    config.write_text(
        f'[agent]\ndevice_id = "gw"\nstate_dir = "{folder}"\nstats_interval = 0.2\n'
        f'log_level = "{log_level}"\n'
        f'trusted_keys = ["{kit.public_key}"]\n{mqtt}'
        f'[[sources]]\nname = "cap"\nkind = "pcap"\npath = "{kit.capture}"\nloop = true\n'
        f'[[models]]\nname = "flood"\nbundle = "{kit.bundle}"\nsource = "cap"\n'
    )
    return config


class AgentProcess(subprocess.Popen[str]):
    """The child, with stdout piped and stderr (the agent's log) written to ``log_path``."""

    log_path: Path

    def log(self) -> str:
        """The agent's log so far."""
        return self.log_path.read_text(errors="replace")


def spawn(argv: list[str], log_path: Path, env: dict[str, str] | None = None) -> AgentProcess:
    """Run ``argv`` from the repository, its stderr to ``log_path``."""
    with log_path.open("w") as log:
        proc = AgentProcess(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=log, text=True, env=env)
    proc.log_path = log_path
    return proc


def start(code: str, config: Path, *args: str) -> AgentProcess:
    """``python -c code CONFIG ARGS...``; its log goes to ``agent-stderr.log`` beside CONFIG."""
    argv = [sys.executable, "-c", code, str(config), *args]
    return spawn(argv, config.parent / "agent-stderr.log")


@contextlib.contextmanager
def running(code: str, config: Path, *args: str) -> Iterator[AgentProcess]:
    """:func:`start`, and whatever happens inside, no process left behind after."""
    proc = start(code, config, *args)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def wait_running(proc: AgentProcess, timeout: float = 120) -> str:
    """Wait for the agent's "running" line (or its exit); its log up to that line."""
    deadline = time.monotonic() + timeout
    while True:
        text = proc.log()
        at = text.find("running")
        if at >= 0:
            return text[: text.find("\n", at) + 1 or len(text)]
        if proc.poll() is not None or time.monotonic() > deadline:
            return text
        time.sleep(0.05)


def stop(proc: AgentProcess, timeout: float = 30) -> tuple[str, str]:
    """SIGTERM, then stdout and the whole log (killed if it outlives ``timeout``)."""
    proc.send_signal(signal.SIGTERM)
    try:
        # communicate drains stdout while waiting: a full pipe must not hold the exit
        out, _ = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return out, proc.log()
