"""Shared pytest setup.

Fused-kernel tests (tests/test_kernels_*.py): run Triton kernels on CPU tensors in Triton's
interpreter. TRITON_INTERPRET must be set before triton is first imported, hence here, at the top,
before any import. On a GPU machine run `TRITON_INTERPRET=0 pytest tests/test_kernels_*.py` to test
the compiled kernels on CUDA tensors instead.
"""
import os

os.environ.setdefault("TRITON_INTERPRET", "1")


import pytest  # noqa: E402  (after TRITON_INTERPRET is set)
import torch  # noqa: E402

from doubledip import bindings  # noqa: E402
from doubledip.kernels._dispatch import triton_importable  # noqa: E402


def _cases():
    cases = [("torch", "cpu"), ("cpp", "cpu"), ("triton", "cpu")]
    if torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1":
        cases = [(b, "cuda") for b in ("torch", "triton")] + cases[:2]
    return cases


@pytest.fixture(params=_cases(), ids=lambda c: f"{c[0]}-{c[1]}")
def backend(request, monkeypatch):
    """(backend, device) with DOUBLEDIP_BACKEND set; skips backends this machine lacks."""
    name, device = request.param
    if name == "cpp" and os.environ.get("DOUBLEDIP_REQUIRE_CPP") != "1" and not bindings.is_available():
        pytest.skip("C++ core not built")
    if name == "triton" and not triton_importable():
        pytest.skip("triton not installed")
    if name == "triton" and device == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("Triton on CPU tensors needs TRITON_INTERPRET=1")
    monkeypatch.setenv("DOUBLEDIP_BACKEND", name)
    return name, device
