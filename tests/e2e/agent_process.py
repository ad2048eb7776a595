"""The real agent as a child process: `python -m agent run --config F` with a test-written config.

The end-to-end tests drive the gateway exactly as systemd does: a TOML file, credentials in the
environment, signals to stop it. The agent's log goes to a file the test reads while it runs, and
its durable outbox is read (read-only) to know what it produced while no broker could see it.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from tests.broker import REPO, Broker

# Environment variable names the test owns, so the developer's own settings never leak in.
USER_ENV = "IOTIDS_E2E_MQTT_USERNAME"
PASSWORD_ENV = "IOTIDS_E2E_MQTT_PASSWORD"
CREDENTIALS_ENV = "IOTIDS_E2E_CREDENTIALS_DIRECTORY"


@dataclass(frozen=True)
class AgentSetup:
    """What one agent is configured with (written to its TOML file)."""

    device: str
    capture: Path
    bundle: Path
    trusted_key: Path
    realtime: bool = True
    loop: bool = True
    ca_file: Path | None = None
    stats_interval: float = 1.0
    agent_extra: tuple[str, ...] = ()  # more ``[agent]`` lines, e.g. 'allow_downgrade = true'
    homeassistant: bool = True
    outbox_path: Path | None = None
    outbox_max_messages: int | None = None
    # The looped capture repeats its attack within the default 30 s hold, which would keep one
    # incident open for the whole test; these tests need each pass's detection to end.
    hold: float = 0.0


def agent_toml(setup: AgentSetup, broker: Broker, state_dir: Path) -> str:
    """The agent's config: a paced pcap replay, one int8 model, MQTT to ``broker``."""
    lines = [
        "[agent]",
        f'device_id = "{setup.device}"',
        f'state_dir = "{state_dir}"',
        f'trusted_keys = ["{setup.trusted_key}"]',
        f"stats_interval = {setup.stats_interval}",
        *setup.agent_extra,
        "[mqtt]",
        f'host = "{broker.host}"',
        f"port = {broker.port}",
        "keepalive = 5",
        # Quick, capped reconnects: a 30 s outage must not grow paho's delay past the test.
        "backoff_min = 1.0",
        "backoff_max = 2.0",
        "replay_rate = 200.0",
        f'username_env = "{USER_ENV}"',
        f'password_env = "{PASSWORD_ENV}"',
        f'credentials_dir_env = "{CREDENTIALS_ENV}"',
    ]
    if setup.ca_file is not None:
        lines += ["[mqtt.tls]", f'ca_file = "{setup.ca_file}"']
    if not setup.homeassistant:
        lines += ["[mqtt.homeassistant]", "enabled = false"]
    outbox = []
    if setup.outbox_path is not None:
        outbox.append(f'path = "{setup.outbox_path}"')
    if setup.outbox_max_messages is not None:
        outbox.append(f"max_messages = {setup.outbox_max_messages}")
    if outbox:
        lines += ["[outbox]", *outbox]
    lines += [
        "[[sources]]",
        'name = "lan"',
        'kind = "pcap"',
        f'path = "{setup.capture}"',
        f"realtime = {str(setup.realtime).lower()}",
        f"loop = {str(setup.loop).lower()}",
        "[[models]]",
        'name = "cnn"',
        f'bundle = "{setup.bundle}"',
        'source = "lan"',
        f"hold = {setup.hold}",
    ]
    return "\n".join(lines) + "\n"


class AgentProcess:
    """One agent child process (restartable on the same state directory and config)."""

    def __init__(
        self,
        setup: AgentSetup,
        broker: Broker,
        workdir: Path,
        credentials: tuple[str, str] | None = None,
    ) -> None:
        self.setup = setup
        self.workdir = workdir
        self.state_dir = workdir / "state"
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.config_path = workdir / "agent.toml"
        self.config_path.write_text(agent_toml(setup, broker, self.state_dir))
        self.log_path = workdir / "agent.log"
        self.env = _environment(credentials)
        self.process: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None
        self._log_offset = 0

    @property
    def running(self) -> bool:
        """True while the agent process is alive."""
        return self.process is not None and self.process.poll() is None

    @property
    def outbox_path(self) -> Path:
        """The agent's durable outbox (the default ``<state_dir>/outbox.sqlite``)."""
        return self.state_dir / "outbox.sqlite"

    def start(self) -> None:
        """Start (or restart) the agent; its stderr is appended to ``agent.log``."""
        assert self.process is None or self.process.poll() is not None, "already running"
        self._close_log()
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        self._log_file = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "agent", "run", "--config", str(self.config_path)],
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._log_file,
            env=self.env,
        )

    def log(self) -> str:
        """The agent's stderr since its latest start."""
        if not self.log_path.exists():
            return ""
        return self.log_path.read_bytes()[self._log_offset :].decode(errors="replace")

    def wait_log(self, text: str, timeout: float) -> bool:
        """Wait until the current run logged ``text`` (False on timeout or if it exited first)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log():
                return True
            if self.process is not None and self.process.poll() is not None:
                return text in self.log()
            time.sleep(0.1)
        return text in self.log()

    def wait_exit(self, timeout: float) -> int:
        """Wait for the process to end on its own; its exit code."""
        assert self.process is not None
        code = self.process.wait(timeout)
        self._close_log()
        return code

    def terminate(self, timeout: float = 20.0) -> int:
        """SIGTERM (what systemd sends) and wait; the exit code."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.wait_exit(timeout)

    def peak_rss_kb(self) -> int:
        """The running agent's peak resident memory so far (VmHWM), in KiB."""
        assert self.process is not None
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        raise AssertionError("no VmHWM in /proc/<pid>/status")

    def kill(self) -> int:
        """SIGKILL, as a power cut or the OOM killer would; the exit code."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        return self.wait_exit(10.0)

    def close(self) -> None:
        """Teardown: kill a still-running agent and close the log."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._close_log()

    def queued_events(self) -> list[dict[str, Any]]:
        """Event payloads waiting in the outbox right now, in publishing order."""
        if not self.outbox_path.exists():
            return []
        db = sqlite3.connect(f"file:{self.outbox_path}?mode=ro", uri=True, timeout=5.0)
        try:
            rows = db.execute(
                "SELECT payload FROM outbox WHERE kind LIKE 'event_%' ORDER BY seq"
            ).fetchall()
        except sqlite3.OperationalError:  # the agent has not created its table yet
            return []
        finally:
            db.close()
        return [json.loads(bytes(payload)) for (payload,) in rows]

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None


def _environment(credentials: tuple[str, str] | None) -> Mapping[str, str]:
    """The child's environment: ours minus any MQTT credentials, plus the test's own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IOTIDS_")}
    env.pop("CREDENTIALS_DIRECTORY", None)
    env["PYTHONUNBUFFERED"] = "1"
    if credentials is not None:
        env[USER_ENV], env[PASSWORD_ENV] = credentials
    return env
