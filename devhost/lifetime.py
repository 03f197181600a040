"""Tie a process's life to the process that started it, so that a killed parent (a test session, a
`perennial up` or demo killed with SIGKILL) leaves no server holding ports and state behind.

Two ways, for two kinds of child:

- Our own Python servers watch their parent: when ``os.getppid()`` no longer names the process that
  started them, they have been re-parented (to init or a sub-reaper) and stop. Portable, and it does not
  depend on which *thread* of the parent started them.
- A program we cannot change (Azurite, a training script) gets ``PR_SET_PDEATHSIG`` before ``exec``: Linux
  signals it when the parent thread that forked it exits, so start such children from a thread that
  lives as long as they should (the main thread, or a runner's own). Elsewhere it is a no-op.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import os
import sys
import time
from collections.abc import Callable

#: How often a watcher looks at its parent: a leftover server is gone within about this long.
POLL_SECONDS = 0.5
_PR_SET_PDEATHSIG = 1


def orphaned(parent: int) -> bool:
    """Whether the process ``parent`` that started this one has exited (this one was re-parented)."""
    return os.getppid() != parent


async def until_orphaned(parent: int, poll_seconds: float = POLL_SECONDS) -> None:
    """Return once ``parent`` has exited; for a server on an event loop."""
    while not orphaned(parent):
        await asyncio.sleep(poll_seconds)


def exit_when_orphaned(parent: int, poll_seconds: float = POLL_SECONDS) -> None:
    """A daemon thread's body for a server without an event loop: exit the process once ``parent`` is gone."""
    while not orphaned(parent):
        time.sleep(poll_seconds)
    os._exit(0)


def _load_prctl() -> Callable[[int, int], int] | None:
    # Looked up here, in the parent: the child runs between fork and exec, where loading a library
    # could deadlock on a lock another thread of the parent held at the fork.
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None
    prctl: Callable[[int, int], int] = libc.prctl
    return prctl


_PRCTL = _load_prctl()


def die_with_parent(signal_number: int) -> Callable[[], None]:
    """A ``preexec_fn`` that asks Linux to send the child ``signal_number`` when its parent thread exits."""
    parent = os.getpid()

    def arrange() -> None:
        if _PRCTL is not None:
            _PRCTL(_PR_SET_PDEATHSIG, signal_number)
            if orphaned(parent):  # the parent died before the request was in place
                os.kill(os.getpid(), signal_number)

    return arrange
