"""Keep freed heap memory in a worker process, so large payloads do not page-fault.

A job with a large payload makes a few objects of about its size: the reply's bytes, the
decoded text and the decoded argument. glibc's malloc hands free memory at the top of a
thread's heap back to the kernel once it passes the trim threshold (by default twice the
largest block freed so far), and the next job's objects then fault every page in again. With
1 MB payloads that was about 700 page faults per job, a fifth of the job's time
(``scripts/bench.py --only payload``: 277 jobs/s, 330 with this).

Setting the two thresholds keeps blocks up to :data:`MMAP_THRESHOLD` on the heap and lets up to
:data:`TRIM_THRESHOLD` of free heap stay with each of malloc's arenas. That is what glibc's own
adaptive thresholds settle on after a 16 MB block has been freed, so a worker holds no more
than one that once ran a 16 MB job. Only glibc has ``mallopt``; elsewhere this does nothing,
and so it does when the environment already tunes malloc (``GLIBC_TUNABLES``,
``MALLOC_TRIM_THRESHOLD_``, ``MALLOC_MMAP_THRESHOLD_``): those settings stay the user's.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Mapping

__all__ = ["MMAP_THRESHOLD", "TRIM_THRESHOLD", "keep_freed_heap"]

MMAP_THRESHOLD = 16 << 20  # blocks up to this size come from the heap and are reused
TRIM_THRESHOLD = 32 << 20  # free heap an arena keeps before giving some back

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt's parameter numbers (malloc.h)
_USER_TUNING = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_")


def keep_freed_heap(environ: Mapping[str, str] = os.environ) -> bool:
    """Set malloc's thresholds for this process (and the children it forks later).

    Returns whether they were set: False off glibc, or when ``environ`` tunes malloc itself.
    """
    if not sys.platform.startswith("linux") or _tuned_by_user(environ):
        return False
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
        libc.gnu_get_libc_version  # noqa: B018 - glibc only: musl's mallopt does nothing
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # mmap first: setting either threshold ends glibc's adaptive ones, so both are set.
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
                and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))


def _tuned_by_user(environ: Mapping[str, str]) -> bool:
    return any(name in environ for name in _USER_TUNING) or (
        "glibc.malloc." in environ.get("GLIBC_TUNABLES", ""))
