"""Quality evaluation: cases with a known answer, metrics, baselines and the suite runner.

Importing this package is light; scikit-image (the ``data`` extra) is needed to build cases and
for SSIM, and is imported only when used.
"""
from doubledip.evaluation.suite import evaluate, format_table

__all__ = ["evaluate", "format_table"]
