"""Pausing the cyclic garbage collector around bulk allocations of flowkit's own objects."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

__all__ = ["freeze_more", "gc_frozen_run", "gc_paused"]


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


class _Freeze:
    """Whether the GC's permanent generation holds a freeze of ours (the GC is one per process,
    so this is too: a nested run must neither freeze again nor unfreeze the outer run's)."""

    __slots__ = ("ours",)

    def __init__(self) -> None:
        self.ours = False


_FREEZE = _Freeze()


@contextlib.contextmanager
def gc_frozen_run() -> Iterator[None]:
    """For the duration of a run: freeze what exists (see :func:`freeze_more`) and collect young
    objects less often. Leaves the GC exactly as it was; if the program froze objects itself,
    its freeze is left alone and nothing is frozen here."""
    thresholds = gc.get_threshold()
    own = gc.get_freeze_count() == 0 and not _FREEZE.ours
    if own:
        gc.freeze()
        _FREEZE.ours = True
    gc.set_threshold(max(thresholds[0], 50_000), *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        if own:
            gc.unfreeze()
            _FREEZE.ours = False


def freeze_more() -> None:
    """Also freeze what was allocated since the run began (the loaded journal), if the freeze is
    ours."""
    if _FREEZE.ours:
        gc.freeze()
