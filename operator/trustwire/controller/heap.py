"""Give freed heap memory back to the operating system after a burst of work.

Why: after a restart the operator replays every object and reconciles all of them at
once. CPython returns the freed blocks to glibc's malloc, which keeps those pages —
fragmented between blocks still alive — until someone asks for them back, so a restarted
operator settled ~40 MB above one that issued the same material gradually
(``docs/benchmarks.md``, finding 3). ``malloc_trim(0)`` hands back every whole free page;
it costs milliseconds, so the controller calls it when its work queue goes idle, at most
once per ``interval``. Where the C library has no ``malloc_trim`` (musl, macOS) it does
nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import time
from collections.abc import Callable
from typing import Any


def _glibc() -> Any | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "malloc_trim") else None


class HeapTrimmer:
    def __init__(self, interval: float = 30.0, clock: Callable[[], float] = time.monotonic,
                 libc: Any | None = None) -> None:
        self.interval, self.clock = interval, clock
        self.libc = libc if libc is not None else _glibc()
        self.last: float | None = None

    @property
    def available(self) -> bool:
        return self.libc is not None

    def __call__(self) -> bool:
        """Trim unless it was done less than ``interval`` ago; True when memory may have been returned."""
        now = self.clock()
        if self.libc is None or (self.last is not None and now - self.last < self.interval):
            return False
        self.last = now
        return bool(self.libc.malloc_trim(0))
