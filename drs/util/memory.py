"""Hand the C heap's free pages back to the operating system (glibc's ``malloc_trim``).

A long loop that interleaves large short-lived buffers (decoded images, tensors, maps) with small
long-lived ones (HDF5's metadata of every dataset written) fragments glibc's heap: once a large
block has been freed, glibc raises its mmap threshold, so later large buffers come from the heap,
and the small blocks allocated between them keep its pages from being returned. Resident memory
then grows with every image although nothing is kept. ``malloc_trim(0)`` returns every free page of
the heap, wherever it lies. A no-op where the C library has no ``malloc_trim`` (not glibc).
"""

from __future__ import annotations

import ctypes
import ctypes.util
from functools import lru_cache


@lru_cache(maxsize=1)
def _malloc_trim():
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        return None


def release_free_memory() -> None:
    """Return the C heap's free pages to the operating system (where the C library can)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
