"""Host-allocator settings for ``SolverConfig(low_memory=True)`` on glibc (Linux); no-ops elsewhere.

On the CPU, PyTorch takes tensor memory from the C allocator (glibc's malloc). glibc serves a
request from its heap unless it exceeds the mmap threshold, a threshold that rises by itself (up
to 32 MB) each time an mmap-served block is freed. After the first step almost every activation
of a 512 x 512 run is served from the heap, and freed heap memory stays resident: the heap's
holes add 200-250 MB to the process's peak resident memory (separation at 512 x 512: 780 MB
with recomputation alone, against about 530 MB of live data).

``low_memory`` therefore (1) fixes the mmap threshold at 16 MiB, so the full-resolution tensors
(16.8 MB and up at 512 x 512) are mapped and unmapped on their own, and (2) hands the heap's free
pages back to the kernel (``malloc_trim``) before each recomputed segment's backward. Both cost
page faults when the memory is touched again: about 20% more CPU time per step on top of the
recomputation (measured at 512 x 512; ``benchmarks/experiments/README.md``). The threshold is a setting of
the whole process and stays after the run (glibc keeps no way back to the rising threshold).
"""
from __future__ import annotations

import ctypes
import ctypes.util
from typing import Optional

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number
MMAP_THRESHOLD = 16 << 20

_libc: Optional[ctypes.CDLL] = None
_probed = False
_threshold_set = False


def _glibc() -> Optional[ctypes.CDLL]:
    """The process's glibc, or None (another C library, or none reachable through ctypes)."""
    global _libc, _probed
    if not _probed:
        _probed = True
        try:
            libc = ctypes.CDLL(None)
            libc.gnu_get_libc_version  # glibc only
            libc.mallopt.argtypes, libc.mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
            libc.malloc_trim.argtypes, libc.malloc_trim.restype = [ctypes.c_size_t], ctypes.c_int
            _libc = libc
        except (OSError, AttributeError):
            _libc = None
    return _libc


def fix_mmap_threshold() -> bool:
    """Serve blocks of 16 MiB and more by mmap from now on, for the whole process (once).
    Returns whether the setting is in force."""
    global _threshold_set
    libc = _glibc()
    if libc is not None and not _threshold_set:
        _threshold_set = bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD))
    return _threshold_set


def release_free_heap() -> None:
    """Return the heap's free pages to the kernel (``malloc_trim(0)``); no-op off glibc."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)
