"""Keep native runtimes' start-up banners off the user's terminal, and nothing else.

TFLite prints ``INFO: Created TensorFlow Lite XNNPACK delegate for CPU.`` from C++ straight to
file descriptor 2 when the first interpreter of a process is built, and TensorFlow logs
through absl before ``TF_CPP_MIN_LOG_LEVEL`` takes effect. Neither goes through Python's
``sys.stderr`` and neither runtime offers a Python switch for it, so fd 2 is pointed at a
temporary file around the call. Afterwards every captured line the caller does not drop is
written back to the real stderr: a runtime error, or a log line another thread wrote in those
milliseconds, still reaches the user.

``quiet_tensorflow`` is for the desktop tools (training, converters, benchmarks): the gateway
never calls it, and the import is by name so the agent package itself never imports TensorFlow.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator

XNNPACK_BANNER = "INFO: Created TensorFlow Lite XNNPACK delegate"
CAPTURE_LIMIT = 64 * 1024  # what is written back at most; a banner is one short line

# dup2 on fd 2 is process-wide: two threads capturing at once must not restore each other's
# copy; re-entrant because a captured block may build an interpreter, which captures again.
_FD2_LOCK = threading.RLock()


def _drop_all(line: str) -> bool:
    return True


def is_tflite_banner(line: str) -> bool:
    """The XNNPACK delegate notice TFLite prints once per process."""
    return line.startswith(XNNPACK_BANNER)


@contextlib.contextmanager
def native_stderr_filtered(drop: Callable[[str], bool]) -> Iterator[None]:
    """Capture fd 2 while the block runs; afterwards write back each line ``drop`` refuses."""
    with _FD2_LOCK:
        sys.stderr.flush()
        try:
            sink = tempfile.TemporaryFile()  # noqa: SIM115 - closed by the with below
            saved = os.dup(2)
        except OSError:  # no fd 2 (closed stdio) or no writable temp dir: leave stderr alone
            yield
            return
        with sink:
            os.dup2(sink.fileno(), 2)
            try:
                yield
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
                os.close(saved)
                sink.seek(0)
                captured = sink.read(CAPTURE_LIMIT).decode("utf-8", errors="replace")
                kept = [line for line in captured.splitlines(keepends=True) if not drop(line)]
                if kept:
                    os.write(2, "".join(kept).encode("utf-8"))


def tflite_banner_quiet() -> contextlib.AbstractContextManager[None]:
    """Around interpreter creation: drop only TFLite's XNNPACK notice."""
    return native_stderr_filtered(is_tflite_banner)


def quiet_tensorflow() -> None:
    """Import TensorFlow with its banners silenced, and quiet its and absl's loggers.

    Environment defaults are set before the import (a user's own setting wins); oneDNN's
    "custom operations are on" notice is printed through absl before the log level applies,
    hence the capture around the import, which drops everything TensorFlow prints there.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    with native_stderr_filtered(_drop_all):
        importlib.import_module("tensorflow")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    logging.getLogger("absl").setLevel(logging.ERROR)
    with contextlib.suppress(ImportError):
        absl_logging = importlib.import_module("absl.logging")
        absl_logging.set_verbosity(absl_logging.ERROR)
