"""Quiet TensorFlow's and absl's start-up banners in the desktop tools (STYLE.md)."""

from __future__ import annotations

import logging
import os


def quiet_tensorflow() -> None:
    """Import TensorFlow with its C++ start-up banners silenced, and quiet its loggers.

    TF 2.21 logs through absl before ``TF_CPP_MIN_LOG_LEVEL`` takes effect (the oneDNN and
    "before absl::InitializeLog()" lines), so stderr is pointed at /dev/null during the import.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import tensorflow  # noqa: F401 - imported here so its banners go to /dev/null
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.ERROR)
