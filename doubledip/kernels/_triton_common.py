"""Shared launch settings for the Triton kernels (imported only when a Triton backend is chosen).

Under ``TRITON_INTERPRET=1`` (CPU tensors) every program is emulated with numpy: few large
programs run fastest there, while on a GPU smaller blocks keep registers and occupancy sane.
"""
from __future__ import annotations

import os


def interpreted() -> bool:
    """Whether triton runs in its CPU interpreter (set before triton was imported)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def block(gpu: int, interp: int) -> int:
    """The block size (a power of 2) for the current mode."""
    return interp if interpreted() else gpu


def next_pow2(x: int) -> int:
    return 1 << max(0, (int(x) - 1).bit_length())
