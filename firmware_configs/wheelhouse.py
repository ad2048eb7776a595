"""An offline wheelhouse for Raspberry Pi OS Bookworm 64-bit: gateways install without internet.

The gateway runs CPython 3.11 on aarch64 with glibc 2.36, so every ``manylinux_2_N_aarch64``
wheel up to N = 36 installs there. pip only matches the platform tags it is given (it does not
infer older glibc levels from a newer one), and ai-edge-litert 2.x ships ``manylinux_2_27``
wheels only: the whole ladder of tags is listed.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import tomllib
import urllib.error
import urllib.request
from importlib import metadata
from pathlib import Path

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
PYTHON_VERSION = "3.11"
GLIBC_MINOR = 36  # Debian 12 "bookworm"
PLATFORMS = (
    "manylinux2014_aarch64",
    *(f"manylinux_2_{minor}_aarch64" for minor in range(17, GLIBC_MINOR + 1)),
)


class WheelhouseError(Exception):
    """pip could not resolve or fetch the agent's wheels for the gateway platform."""


def base_requirements(pyproject: Path = REPO / "pyproject.toml") -> tuple[str, ...]:
    """The agent's base dependencies: pyproject.toml in a checkout, else the installed metadata."""
    if pyproject.is_file():
        with pyproject.open("rb") as fh:
            return tuple(tomllib.load(fh)["project"]["dependencies"])
    requires = metadata.requires("iotids") or []
    return tuple(r for r in requires if "extra ==" not in r)


def download_command(requirements: tuple[str, ...], dest: Path) -> list[str]:
    """The ``pip download`` line that fetches binary wheels for the gateway, not this machine."""
    platforms = [arg for tag in PLATFORMS for arg in ("--platform", tag)]
    return [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--disable-pip-version-check",
        "--only-binary=:all:",
        *platforms,
        "--python-version",
        PYTHON_VERSION,
        "--implementation",
        "cp",
        "--dest",
        str(dest),
        *requirements,
    ]


def download(dest: Path, requirements: tuple[str, ...] | None = None) -> tuple[Path, ...]:
    """Fetch the wheels of ``requirements`` (default: the agent's) and their dependencies."""
    dest.mkdir(parents=True, exist_ok=True)
    wanted = base_requirements() if requirements is None else requirements
    result = subprocess.run(download_command(wanted, dest), capture_output=True, text=True)
    if result.returncode != 0:
        errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR")]
        said = errors[-1] if errors else f"pip download exited {result.returncode}"
        unreachable = index_unreachable(result.stderr)
        if unreachable is not None:
            raise WheelhouseError(
                f"the package index could not be reached ({unreachable}), so pip found no "
                f"wheels ({said.removeprefix('ERROR: ')}); build the wheelhouse on a machine "
                "with internet access, or set PIP_INDEX_URL to a reachable mirror"
            )
        raise WheelhouseError(said)
    return tuple(sorted(dest.glob("*.whl")))


# What pip logs when it cannot reach an index (shown only when it retries).
_NETWORK = re.compile(
    r"NewConnectionError|Failed to establish a new connection|Temporary failure in name "
    r"resolution|Name or service not known|Network is unreachable|ProxyError|Could not fetch URL"
)


def index_url() -> str:
    """The index pip downloads from: ``PIP_INDEX_URL``, pip's own config, else PyPI."""
    if os.environ.get("PIP_INDEX_URL"):
        return os.environ["PIP_INDEX_URL"].split()[0]
    command = [sys.executable, "-m", "pip", "config", "get", "global.index-url"]
    try:
        found = subprocess.run(command, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        found = None
    if found is not None and found.returncode == 0 and found.stdout.strip():
        return found.stdout.strip().split()[0]
    return "https://pypi.org/simple"


def index_unreachable(pip_stderr: str, timeout: float = 5.0) -> str | None:
    """Why the package index cannot be reached, or None when it answers.

    pip says ``No matching distribution found`` both for a requirement no wheel satisfies and
    for an index it never reached (its connection warnings only appear while it retries), so
    the index is asked directly before the user is told which of the two it was.
    """
    url = index_url()
    match = _NETWORK.search(pip_stderr)
    try:
        with urllib.request.urlopen(url, timeout=timeout):  # noqa: S310 - pip's own index URL
            pass
    except urllib.error.HTTPError:
        return None  # it answered, even if not with 200: the index is reachable
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        return f"{url}: {reason}"
    if match is not None:
        return f"pip: {match.group(0)}"
    return None


def build_self(dest: Path, source: Path = REPO) -> Path | None:
    """Build the pure-Python iotids wheel into ``dest``; None (and a warning) when it cannot be."""
    if not (source / "pyproject.toml").is_file():
        logger.warning("no iotids source tree at %s: the wheelhouse lacks the iotids wheel", source)
        return None
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(dest)]
    result = subprocess.run([*command, str(source)], capture_output=True, text=True)
    wheels = sorted(dest.glob("iotids-*.whl"), key=lambda p: p.stat().st_mtime)
    if result.returncode != 0 or not wheels:
        reason = (result.stderr.strip().splitlines() or ["no wheel produced"])[-1]
        logger.warning("could not build the iotids wheel: %s", reason)
        return None
    return wheels[-1]
