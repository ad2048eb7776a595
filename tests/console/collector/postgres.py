"""A real PostgreSQL server for tests, from Debian's ``postgresql`` package.

``initdb`` + ``pg_ctl`` in a fresh directory, on a free loopback port, trust authentication,
stopped at teardown. PostgreSQL refuses to run as root, so as root the server runs as the
``postgres`` user (``runuser``) in a directory it owns under /tmp (pytest's tmp_path is not
traversable by other users).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.broker import HOST, free_port


def _bin_dir() -> Path | None:
    """The newest installed PostgreSQL's bin directory (Debian keeps them versioned)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: p.split("/")[4])
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class Postgres:
    """One throw-away PostgreSQL cluster; ``url`` connects to its ``postgres`` database."""

    def __init__(self) -> None:
        bin_dir = _bin_dir()
        if bin_dir is None:
            pytest.skip("PostgreSQL is not installed (Debian package postgresql)")
        self.bin = bin_dir
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="iotids-pg-"))
        self.data = self.root / "data"
        self.user = "postgres" if os.getuid() == 0 else pwd.getpwuid(os.getuid()).pw_name
        if os.getuid() == 0:
            entry = pwd.getpwnam(self.user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        self.url = f"postgresql://{self.user}@{HOST}:{self.port}/postgres"

    def _run(self, *args: str, timeout: float = 60.0) -> None:
        command = [str(self.bin / args[0]), *args[1:]]
        if os.getuid() == 0:
            command = ["runuser", "-u", self.user, "--", *command]
        done = subprocess.run(command, capture_output=True, timeout=timeout, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{args[0]} failed: {done.stderr.decode(errors='replace')}")

    def start(self) -> None:
        """initdb (the first time), then start and wait until it accepts connections."""
        if not self.data.exists():
            self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", self.user, "--no-sync")
        options = f"-h {HOST} -p {self.port} -k {self.root} -c fsync=off"
        self._run(
            "pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.root / "log"), "-w",
            "start",
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                self._run("pg_isready", "-h", HOST, "-p", str(self.port), timeout=10)
                return
            except RuntimeError:
                time.sleep(0.2)
        raise RuntimeError("PostgreSQL did not become ready in 30 s")

    def halt(self) -> None:
        """Stop the server at once (as a crash would), keeping its data for ``start``."""
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def stop(self) -> None:
        """Stop immediately and remove the cluster."""
        self.halt()
        shutil.rmtree(self.root, ignore_errors=True)
