"""Worker processes that die with their parent, and SIGTERM as an exception.

A process pool's workers wait on a pipe for work. Killed by SIGTERM, a Python process dies without
running its ``finally`` blocks, and with the fork start method its workers hold the other end of
that pipe themselves, so they wait forever. Hence:

- :func:`sigterm_raises`: while a block runs, SIGTERM raises :class:`Terminated` (a ``SystemExit``
  with status 143) in the main thread, so ``with``/``finally`` clean-ups run: the pool is terminated
  and partial output removed. ``drs`` installs it around every command.
- :func:`map_in_workers`: a ``ProcessPoolExecutor`` whose workers are the direct children of this
  process (start method "fork" on Linux, "spawn" elsewhere; not "forkserver", whose workers are the
  server's children) and whose initializer makes each of them die with the parent even when the
  parent cannot clean up (SIGKILL): on Linux ``prctl(PR_SET_PDEATHSIG, SIGKILL)``, elsewhere a
  thread polling ``os.getppid()``. On any error (or SIGTERM) the workers are terminated at once
  instead of finishing their chunks.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from typing import Any

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
WATCHDOG_SECONDS = 0.5


class Terminated(SystemExit):
    """SIGTERM received (exit status 128 + 15)."""

    def __init__(self, signum: int = signal.SIGTERM):
        super().__init__(128 + int(signum))


def _raise_terminated(signum, frame) -> None:
    raise Terminated(signum)


@contextmanager
def sigterm_raises() -> Iterator[None]:
    """While the block runs, SIGTERM raises :class:`Terminated` in the main thread (elsewhere: no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _watch_parent(parent: int) -> None:
    while True:
        time.sleep(WATCHDOG_SECONDS)
        if os.getppid() != parent:
            os._exit(1)


def die_with_parent(parent: int) -> None:
    """Worker initializer: default SIGTERM (the fork copied the parent's handler), SIGINT ignored
    (the parent handles Ctrl-C and terminates the workers), and death when ``parent`` dies."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    armed = False
    if sys.platform.startswith("linux"):
        try:
            armed = ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL)) == 0
        except (OSError, AttributeError):
            armed = False
    if not armed:
        threading.Thread(target=_watch_parent, args=(parent,), name="parent-watchdog", daemon=True).start()
    if os.getppid() != parent:  # the parent died before the death signal was armed
        os._exit(1)


def _context():
    return multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")


def _terminate(pool: ProcessPoolExecutor) -> None:
    """Kill the pool's workers now (Python >= 3.14 has ``terminate_workers``), then wait for them."""
    terminate = getattr(pool, "terminate_workers", None)
    if terminate is not None:
        terminate()
    else:
        for process in list((getattr(pool, "_processes", None) or {}).values()):
            if process.is_alive():
                process.terminate()
    pool.shutdown(wait=True, cancel_futures=True)


def map_in_workers(fn: Callable[[Any], Any], jobs: Iterable[Any], workers: int, chunksize: int = 1) -> list:
    """``[fn(job) for job in jobs]`` over ``workers`` processes that die with this one (1: inline)."""
    jobs = list(jobs)
    if workers <= 1 or len(jobs) <= 1:
        return [fn(job) for job in jobs]
    with sigterm_raises():
        pool = ProcessPoolExecutor(workers, mp_context=_context(), initializer=die_with_parent, initargs=(os.getpid(),))
        try:
            results = list(pool.map(fn, jobs, chunksize=chunksize))
        except BaseException:
            _terminate(pool)
            raise
        pool.shutdown(wait=True)
        return results
