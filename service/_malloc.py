"""Giving freed memory back to the system, where the C library is glibc.

A burst of large answers (a guest's response, a result being read) allocates many buffers of a
few megabytes. glibc serves each from mmap and frees it with munmap, until a freed one makes it
raise its mmap threshold: from then on such buffers come from the heap, and when freed stay
resident. `tune` fixes the threshold, so large buffers always go back to the system when
freed; `release` hands back what the heap holds free (after a burst's instances are dropped).
Elsewhere both do nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from typing import Any

log = logging.getLogger("service.malloc")

_M_MMAP_THRESHOLD = -3
#: Allocations this large are mmapped and unmapped on free (glibc's own default, held fixed).
MMAP_THRESHOLD = 128 * 1024


def _libc() -> Any:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.mallopt, libc.malloc_trim  # noqa: B018 (glibc only: look them up now)
    except (OSError, AttributeError):
        return None
    return libc


_LIBC = _libc()


def tune() -> None:
    """Keeps glibc from moving large allocations into the heap, where they would stay resident."""
    if _LIBC is not None and _LIBC.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) != 1:
        log.info("mallopt(M_MMAP_THRESHOLD) was refused; freed memory may stay resident after bursts")


def release() -> None:
    """Returns the heap's free memory to the system."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)
