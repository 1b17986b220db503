"""Keep freed memory inside the process while a command trains or runs networks.

With its default settings glibc's ``malloc`` gives every block larger than 32 MB back to the operating system
as soon as it is freed, and trims the top of its heap whenever more than 64 MB lie free there. A network's
activations and kernel workspaces are such blocks: freed at the end of every batch and asked for again at the
next, so that the system maps the same memory in again, one 4 KB page fault at a time. An LSTM training step of
1 024 parcels faults in about 850 000 pages (3.4 GB) this way; on 2 cores that is about a third of the step
(``benchmarks/RESULTS.md``). Told to take every block from its heap and never to trim it, ``malloc`` hands the
same pages out again from the second batch on. The process then holds its peak memory until it exits, which
suits a command that trains or predicts and then ends; the dashboard's own process is left alone.

Set ``CROPCORE_KEEP_FREED_MEMORY=0`` to keep the C library's defaults.
"""

from __future__ import annotations

import ctypes
import os

#: ``mallopt`` parameters, from glibc's malloc.h.
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_MAX = -1, -2, -4
SETTINGS = (
    (M_MMAP_MAX, 0),  # no block of its own mapping: every block comes from the heap and returns to it
    (M_TRIM_THRESHOLD, -1),  # never give the heap's top back
    (M_TOP_PAD, 64 << 20),  # grow the heap 64 MB beyond each request: fewer, larger extensions
)
ENVIRONMENT_SWITCH = "CROPCORE_KEEP_FREED_MEMORY"
_applied = False


def running_glibc() -> bool:
    """Whether the C library this process runs on is glibc (asked of the library itself)."""
    try:
        return (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc")
    except (ValueError, OSError, AttributeError):  # a name this platform's confstr does not know
        return False


def keep_freed_memory() -> bool:
    """Apply ``SETTINGS`` to glibc's allocator for the rest of the process. False where nothing was changed:
    a C library other than glibc, or the environment switch set to 0."""
    global _applied
    if os.environ.get(ENVIRONMENT_SWITCH, "1").strip() == "0" or not running_glibc():
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    _applied = all(mallopt(parameter, value) == 1 for parameter, value in SETTINGS)
    return _applied


def freed_memory_kept() -> bool:
    """Whether ``keep_freed_memory`` has applied its settings in this process: code that would otherwise keep
    its own buffers between batches (the LSTM's training layers) can then leave that to ``malloc``."""
    return _applied
