"""Shared pytest setup.

Fused-kernel tests (tests/test_kernels_*.py): run Triton kernels on CPU tensors in Triton's
interpreter. TRITON_INTERPRET must be set before triton is first imported, hence here, at the top,
before any import. On a GPU machine run `TRITON_INTERPRET=0 pytest tests/test_kernels_*.py` to test
the compiled kernels on CUDA tensors instead.
"""
import os

os.environ.setdefault("TRITON_INTERPRET", "1")


import collections  # noqa: E402
import functools  # noqa: E402
import logging  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

from doubledip import bindings  # noqa: E402
from doubledip.kernels import _dispatch  # noqa: E402
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


class FusedCalls:
    """Counts the calls of every fused primitive this machine has, by (backend, name)."""

    def __init__(self):
        self.counts = collections.Counter()

    def spy(self, monkeypatch, backend, module, names):
        for name in names:
            monkeypatch.setattr(module, name, self._counted(backend, name, getattr(module, name)))

    def _counted(self, backend, name, fn):
        @functools.wraps(fn)
        def counted(*args, **kwargs):
            self.counts[backend, name] += 1
            return fn(*args, **kwargs)

        return counted

    def expect(self, backend: str, *names: str) -> None:
        """Assert that ``backend`` ran each primitive of ``names`` and that no other backend ran any
        (``torch``: that no fused primitive ran at all)."""
        others = {k: v for k, v in self.counts.items() if k[0] != backend}
        assert not others, f"backend {backend} expected, but these primitives ran: {others}"
        if backend != "torch":
            missing = [n for n in names if not self.counts[backend, n]]
            assert not missing, f"{backend} did not run {missing} (ran: {dict(self.counts)})"

    def clear(self) -> None:
        self.counts.clear()


@pytest.fixture
def fused_calls(monkeypatch):
    """A FusedCalls spying on the C++ core's primitives and the Triton launchers (when triton
    imports): ``fused_calls.expect(backend, "blend_fwd", ...)`` proves what ran."""
    # the op modules call each primitive as an attribute of its module (eager and inside the
    # compiled custom ops), so a patched attribute sees every call
    from doubledip.bindings import ops  # loads no core: the spies work whether it is built or not

    calls = FusedCalls()
    calls.spy(monkeypatch, "cpp", ops, ("blend_fwd", "blend_bwd", "avg_pool2", "excl_means", "excl_grad", "perturb"))
    if triton_importable():
        from doubledip.kernels import _triton_blend, _triton_exclusion, _triton_noise

        calls.spy(monkeypatch, "triton", _triton_blend, ("blend_fwd", "blend_bwd"))
        calls.spy(monkeypatch, "triton", _triton_exclusion, ("avg_pool2", "excl_means", "excl_grad"))
        calls.spy(monkeypatch, "triton", _triton_noise, ("perturb",))
    return calls


class AutoBackend:
    """The fused backend that ``DOUBLEDIP_BACKEND=auto`` picks for ``device``, and its fallback log."""

    def __init__(self, name, device, caplog):
        self.name, self.device, self._caplog = name, device, caplog

    def fallbacks(self, op: str) -> list:
        """The messages logged so far for fallbacks of ``op``."""
        return [r.getMessage() for r in self._caplog.records
                if r.name == "doubledip.kernels" and r.getMessage().startswith(f"doubledip.kernels: {op}:")]


@pytest.fixture
def auto_backend(monkeypatch, caplog):
    """DOUBLEDIP_BACKEND=auto on a device where it picks a fused backend (CUDA with triton unless
    TRITON_INTERPRET=1, else the C++ core on CPU; skips if neither), with the memory of logged
    fallbacks cleared and the logger ``doubledip.kernels`` captured."""
    monkeypatch.setenv("DOUBLEDIP_BACKEND", "auto")
    monkeypatch.setattr(_dispatch, "_noted", set())
    caplog.set_level(logging.WARNING, logger="doubledip.kernels")
    devices = ["cpu"]
    if torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1":
        devices.insert(0, "cuda")
    for device in devices:
        name = _dispatch.resolve(device)
        if name != "torch":
            return AutoBackend(name, device, caplog)
    pytest.skip("auto picks no fused backend on this machine")
