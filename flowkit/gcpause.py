"""Pausing the cyclic garbage collector around bulk allocations of flowkit's own objects."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

__all__ = ["gc_paused"]


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic GC while flowkit allocates per-step objects that form no cycles.

    Building the graph or a run's bookkeeping for 100,000 steps would otherwise trigger collections
    that rescan everything allocated so far, again and again: half the time of a large build.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
