"""Quality evaluation: cases with a known answer, metrics, baselines and the suite runner.

Importing this package is light (its names load on first use); scikit-image (the ``data`` extra)
is needed to build cases and for SSIM, and is imported only when used.
"""
from __future__ import annotations

__all__ = ["evaluate", "format_table"]


def __getattr__(name: str):
    if name in __all__:
        from doubledip.evaluation import suite

        return getattr(suite, name)
    raise AttributeError(f"module 'doubledip.evaluation' has no attribute {name!r}")
