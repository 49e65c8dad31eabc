"""Backend choice, the C++ core's loading, import lightness and torch.compile of the fused ops."""
from __future__ import annotations

import os
import subprocess
import sys
import warnings

import pytest
import torch

from doubledip import bindings
from doubledip.kernels import (blend_loss, blend_loss_ref, exclusion_loss, exclusion_loss_ref, perturb,
                               perturb_ref)
from doubledip.kernels import _dispatch
from doubledip.kernels._dispatch import triton_importable

REQUIRE_CPP = os.environ.get("DOUBLEDIP_REQUIRE_CPP") == "1"


@pytest.fixture
def missing_core():
    """Pretend the compiled core is not built; restore the real one afterwards."""
    bindings._reset_for_tests("doubledip.bindings._no_such_core")
    yield
    bindings._reset_for_tests()


def test_cpp_core_loaded():
    """After a normal install the core is loaded; CI sets DOUBLEDIP_REQUIRE_CPP=1 to make this strict."""
    if not REQUIRE_CPP and not bindings.is_available():
        pytest.skip("C++ core not built (set DOUBLEDIP_REQUIRE_CPP=1 to make this a failure)")
    assert bindings.is_available()
    assert bindings.core().__name__ == "doubledip.bindings._core"


def test_missing_core_warns_once_and_falls_back(missing_core, monkeypatch):
    monkeypatch.delenv("DOUBLEDIP_REQUIRE_CPP", raising=False)
    monkeypatch.setenv("DOUBLEDIP_BACKEND", "auto")
    with pytest.warns(RuntimeWarning, match="C\\+\\+ CPU core is not built"):
        assert not bindings.is_available()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _dispatch.resolve(torch.device("cpu")) == "torch"
    monkeypatch.setenv("DOUBLEDIP_BACKEND", "cpp")
    with pytest.raises(RuntimeError, match="not built"):
        _dispatch.resolve(torch.device("cpu"))


def test_missing_core_is_an_error_when_required(missing_core, monkeypatch):
    monkeypatch.setenv("DOUBLEDIP_REQUIRE_CPP", "1")
    with pytest.raises(RuntimeError, match="DOUBLEDIP_REQUIRE_CPP=1"):
        bindings.is_available()


def test_backend_env_is_validated(monkeypatch):
    monkeypatch.setenv("DOUBLEDIP_BACKEND", "cuda-magic")
    with pytest.raises(ValueError, match="DOUBLEDIP_BACKEND must be one of"):
        blend_loss(None, torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2))


def test_resolution(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setenv("DOUBLEDIP_BACKEND", "torch")
    assert _dispatch.resolve(cpu) == "torch"
    monkeypatch.setenv("DOUBLEDIP_BACKEND", "auto")
    assert _dispatch.resolve(cpu) == ("cpp" if bindings.is_available() else "torch")
    assert _dispatch.resolve(torch.device("meta")) == "torch"
    monkeypatch.setenv("DOUBLEDIP_BACKEND", "cpp")
    with pytest.raises(RuntimeError, match="CPU tensors only"):
        _dispatch.resolve(torch.device("cuda"))
    monkeypatch.setenv("DOUBLEDIP_BACKEND", "triton")
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    if triton_importable():
        with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
            _dispatch.resolve(cpu)


def test_import_stays_light():
    """`import doubledip` and `import doubledip.kernels` never import triton (an optional extra)."""
    code = ("import sys, doubledip, doubledip.kernels, doubledip.bindings; "
            "print('triton' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "TRITON_INTERPRET": "0"})
    assert out.stdout.strip() == "False"


def _step(m, a, b, t, seed):
    """A small loss step that uses all three ops."""
    x = perturb(a, 0.05, seed)
    return blend_loss(m, x, b, t, "l1") + 0.5 * exclusion_loss(x, b) + blend_loss(None, a, b, t, "mse")


def _compare_compiled(compiled, seeds=(1, 2)):
    gen = torch.Generator().manual_seed(0)
    m = torch.rand(2, 1, 16, 20, generator=gen)
    a, b, t = (torch.rand(2, 3, 16, 20, generator=gen) for _ in range(3))
    for seed in seeds:
        xs = [x.clone().requires_grad_() for x in (m, a, b, t)]
        ys = [x.clone().requires_grad_() for x in (m, a, b, t)]
        got, want = compiled(*xs, seed), _step(*ys, seed)
        got.backward()
        want.backward()
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
        for x, y in zip(xs, ys):
            torch.testing.assert_close(x.grad, y.grad, rtol=1e-5, atol=1e-7)


def _compile_backends():
    names = ["torch"]
    if REQUIRE_CPP or bindings.is_available():
        names.append("cpp")
    if triton_importable() and os.environ.get("TRITON_INTERPRET") == "1":
        names.append("triton")
    return names


@pytest.mark.parametrize("backend", _compile_backends())
def test_compile_traces_the_ops(backend, monkeypatch):
    """Dynamo + AOTAutograd on the ops give eager's numbers; the fused backends without a graph break.

    (perturb_ref seeds a torch.Generator, which dynamo cannot create in a graph: it breaks there.)
    Uses the aot_eager backend (seconds); the inductor test below is the slow, complete one.
    """
    monkeypatch.setenv("DOUBLEDIP_BACKEND", backend)
    torch._dynamo.reset()
    _compare_compiled(torch.compile(_step, backend="aot_eager", fullgraph=backend != "torch"))


@pytest.mark.slow
def test_compile_inductor_matches_eager(monkeypatch):
    """Full torch.compile (inductor, about 40 s cold on a 2-core CPU) with the C++ backend."""
    if not bindings.is_available():
        pytest.skip("C++ core not built")
    monkeypatch.setenv("DOUBLEDIP_BACKEND", "cpp")
    torch._dynamo.reset()
    _compare_compiled(torch.compile(_step, fullgraph=True), seeds=(1,))


def test_references_are_the_torch_backend(monkeypatch):
    """DOUBLEDIP_BACKEND=torch runs exactly the references."""
    monkeypatch.setenv("DOUBLEDIP_BACKEND", "torch")
    gen = torch.Generator().manual_seed(1)
    a, b, t = (torch.rand(1, 3, 12, 12, generator=gen) for _ in range(3))
    assert torch.equal(blend_loss(None, a, b, t), blend_loss_ref(None, a, b, t))
    assert torch.equal(exclusion_loss(a, b), exclusion_loss_ref(a, b))
    assert torch.equal(perturb(a, 0.1, 3), perturb_ref(a, 0.1, 3))
