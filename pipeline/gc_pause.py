"""Python's cyclic garbage collector paused while a process loads its libraries.

Importing torch and torchvision, matplotlib or Ray Data makes hundreds of thousands of objects
and next to no garbage, yet the collector walks them again and again as they are made: here it
was a fifth to a half of the import time (torch + torchvision 1.85 -> 1.45 s, matplotlib 0.35
-> 0.17 s, ray.data 0.65 -> 0.43 s; docs/benchmarks.md). What survives the pause is frozen
(`gc.freeze`): it lives as long as the process, and later collections no longer walk it."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def paused_gc() -> Iterator[None]:
    """No cyclic collection inside; on leaving, freeze what was made and collect as before.
    Nested pauses leave it to the outermost; the pause is process-wide (every thread)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.freeze()
            gc.enable()
