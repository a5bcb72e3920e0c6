"""SIGTERM handled like Ctrl-C (:func:`terminate_as_interrupt`), and worker processes that die with their parent
(:func:`die_with_parent`). See ``docs/reliability.md``."""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["Terminated", "terminate_as_interrupt", "die_with_parent"]

_PR_SET_PDEATHSIG = 1


class Terminated(KeyboardInterrupt):
    """SIGTERM received (raised in the main thread by :func:`terminate_as_interrupt`). ``signum`` is 15."""

    signum = signal.SIGTERM


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` in the main thread (once; a second SIGTERM during
    the clean-up is ignored). Does nothing outside the main thread or when SIGTERM already has a handler."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return
    fired = []

    def handler(signum, frame):
        if not fired:
            fired.append(signum)
            raise Terminated()

    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def die_with_parent(parent_pid: int, sig: int = signal.SIGTERM) -> None:
    """Have this process receive ``sig`` when ``parent_pid`` (its parent) exits for any reason.

    On Linux this is ``prctl(PR_SET_PDEATHSIG, sig)``; if the parent is already gone when it is set up, the
    signal is sent at once. Elsewhere, a daemon thread polls ``os.getppid()`` and sends ``sig`` to this process.
    """
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0:
                if os.getppid() != parent_pid:  # the parent died before the prctl: too late for the kernel
                    os.kill(os.getpid(), sig)
                return
        except (OSError, AttributeError):
            pass

    def watch():
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os.kill(os.getpid(), sig)

    threading.Thread(target=watch, name="rawsynth-parent-watchdog", daemon=True).start()
