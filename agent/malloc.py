"""At most two glibc malloc arenas: threads that allocate share them instead of one each.

glibc gives each thread that contends for an arena one of its own, up to 8 per core, and an
arena keeps the blocks freed in it; the agent's source, inference, publisher and paho threads
all allocate. ``mallopt(M_ARENA_MAX, 2)`` must run before those threads start. Elsewhere than
glibc (musl, macOS) there is no such call: nothing is done.
"""

from __future__ import annotations

import ctypes

M_ARENA_MAX = -8  # glibc's malloc.h


def limit_arenas(count: int = 2) -> bool:
    """Ask glibc for at most ``count`` arenas; True when it accepted."""
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False  # not glibc, or no C library to ask
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_ARENA_MAX, count))
