"""Writing a rendered tree: every file with its final mode, all at once or not at all."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

# A file to write: its bytes, or a path to copy (wheels can be large), and its mode.
Content = bytes | Path


@dataclass(frozen=True)
class FileSpec:
    """One file of the rendered tree."""

    content: Content
    mode: int = 0o644


def _write(path: Path, spec: FileSpec) -> None:
    """Create one file with its final mode from the start (secrets are never briefly 0644)."""
    path.parent.mkdir(mode=0o700 if spec.mode == 0o600 else 0o755, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, spec.mode)
    with os.fdopen(fd, "wb") as fh:
        if isinstance(spec.content, Path):
            with spec.content.open("rb") as src:
                shutil.copyfileobj(src, fh)
        else:
            fh.write(spec.content)
    os.chmod(path, spec.mode)  # O_CREAT's mode is filtered by the umask


def write_files(files: Mapping[PurePosixPath, FileSpec], out: Path) -> None:
    """Write ``files`` into a temporary folder beside ``out``, then rename it to ``out``.

    The folder keeps mkdtemp's 0700: it holds the device's credentials.
    """
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        for rel, spec in sorted(files.items()):
            _write(tmp / rel, spec)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
