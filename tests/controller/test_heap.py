"""trustwire.controller.heap.HeapTrimmer: memory really goes back to the OS, and not too often."""

from __future__ import annotations

import gc
import sys
from typing import Any

import pytest

from trustwire.controller.heap import HeapTrimmer


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(not sys.platform.startswith("linux") or not HeapTrimmer().available,
                    reason="malloc_trim needs Linux with glibc; elsewhere the trimmer is a no-op")
def test_fragmented_free_memory_is_returned() -> None:
    """Free 15 of every 16 blocks of ~240 MB: free() alone keeps the pages (live blocks sit
    between them); one trim hands them back."""
    keep: list[bytearray] = []
    drop: list[bytearray] = []
    for i in range(60_000):
        block = bytearray(4000)
        block[0] = block[-1] = 1  # touch both ends: the pages are really resident
        (keep if i % 16 == 0 else drop).append(block)
    drop.clear()
    gc.collect()
    before = _rss_mb()
    assert HeapTrimmer()() is True
    after = _rss_mb()
    assert before - after > 100, (before, after)
    assert len(keep) == 3750


class CountingLibc:
    """Stands in for the C library: counts calls (the real one is exercised above)."""

    def __init__(self) -> None:
        self.calls = 0

    def malloc_trim(self, pad: int) -> int:
        assert pad == 0
        self.calls += 1
        return 1


def test_trims_at_most_once_per_interval() -> None:
    now = [100.0]
    libc: Any = CountingLibc()
    trim = HeapTrimmer(interval=30.0, clock=lambda: now[0], libc=libc)
    assert trim() is True
    for moment in (100.0, 110.0, 129.9):
        now[0] = moment
        assert trim() is False
    now[0] = 130.0
    assert trim() is True
    assert libc.calls == 2
