"""Per-call backend choice for the fused ops.

``DOUBLEDIP_BACKEND=auto|torch|triton|cpp`` forces one. For now only the plain-torch references
are registered; the Triton and C++ backends register themselves here.
"""
from __future__ import annotations

import os

BACKENDS = ("auto", "torch", "triton", "cpp")


def backend_name() -> str:
    name = os.environ.get("DOUBLEDIP_BACKEND", "auto").strip().lower() or "auto"
    if name not in BACKENDS:
        raise ValueError(f"DOUBLEDIP_BACKEND must be one of {BACKENDS}, got {name!r}")
    return name


def pick(op: str, tensor):
    """The implementation of ``op`` for ``tensor``'s device under the current backend setting."""
    from doubledip import kernels

    backend_name()
    return getattr(kernels, f"{op}_ref")
