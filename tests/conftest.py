"""Shared pytest setup.

Fused-kernel tests (tests/test_kernels_*.py): run Triton kernels on CPU tensors in Triton's
interpreter. TRITON_INTERPRET must be set before triton is first imported, hence here, at the top,
before any import. On a GPU machine run `TRITON_INTERPRET=0 pytest tests/test_kernels_*.py` to test
the compiled kernels on CUDA tensors instead.
"""
import os

os.environ.setdefault("TRITON_INTERPRET", "1")
