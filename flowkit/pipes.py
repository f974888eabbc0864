"""Writing to a stdout whose reader went away (``flowkit run ... | head``).

A Unix tool killed by SIGPIPE prints nothing; Python ignores SIGPIPE and raises
``BrokenPipeError`` on each write instead. :func:`write` turns the first one into silence: the
stream's file descriptor is pointed at ``/dev/null``, so later writes (and the interpreter's
final flush) succeed and go nowhere.
"""

from __future__ import annotations

import contextlib
import os
from typing import TextIO

__all__ = ["EXIT_BROKEN_PIPE", "discard", "write"]

#: The exit status of a command whose output pipe closed early: 128 + SIGPIPE, as a shell
#: reports for a tool the signal ended.
EXIT_BROKEN_PIPE = 141


def write(stream: TextIO, text: str) -> bool:
    """Write and flush ``text``; returns False (and silences ``stream``) if its reader is gone."""
    try:
        stream.write(text)
        stream.flush()
    except BrokenPipeError:
        discard(stream)
        return False
    return True


def discard(stream: TextIO) -> None:
    """Send what ``stream`` still holds, and everything written to it later, to ``/dev/null``."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
