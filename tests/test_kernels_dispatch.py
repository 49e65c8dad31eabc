"""Backend choice, the C++ core's loading, import lightness and torch.compile of the fused ops."""
from __future__ import annotations

import ast
import inspect
import logging
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


def test_missing_core_warns_once_and_falls_back(missing_core, monkeypatch, caplog, fused_calls):
    """Without the core, auto serves CPU tensors with the references and logs that once."""
    monkeypatch.delenv("DOUBLEDIP_REQUIRE_CPP", raising=False)
    monkeypatch.setenv("DOUBLEDIP_BACKEND", "auto")
    monkeypatch.setattr(_dispatch, "_noted", set())
    with pytest.warns(RuntimeWarning, match="C\\+\\+ CPU core is not built"):
        assert not bindings.is_available()
    a = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    with warnings.catch_warnings(), caplog.at_level(logging.WARNING, logger="doubledip.kernels"):
        warnings.simplefilter("error")
        assert _dispatch.resolve(torch.device("cpu")) == "torch"
        assert torch.equal(blend_loss(None, a, a, a), blend_loss_ref(None, a, a, a))
    fused_calls.expect("torch")
    (record,) = caplog.records
    assert record.name == "doubledip.kernels" and "C++ CPU core is not built" in record.getMessage()
    monkeypatch.setenv("DOUBLEDIP_BACKEND", "cpp")
    with pytest.raises(RuntimeError, match="not built"):
        _dispatch.resolve(torch.device("cpu"))


def test_missing_triton_is_logged_once_under_auto(monkeypatch, caplog):
    """Without triton, auto serves CUDA tensors with the references (logged once); forced, it raises."""
    monkeypatch.setattr(_dispatch, "triton_importable", lambda: False)
    monkeypatch.setattr(_dispatch, "_noted", set())
    monkeypatch.setenv("DOUBLEDIP_BACKEND", "auto")
    with caplog.at_level(logging.WARNING, logger="doubledip.kernels"):
        assert [_dispatch.resolve(torch.device("cuda")) for _ in range(2)] == ["torch", "torch"]
    (record,) = caplog.records
    assert "triton is not installed" in record.getMessage()
    monkeypatch.setenv("DOUBLEDIP_BACKEND", "triton")
    with pytest.raises(RuntimeError, match="triton is not installed"):
        _dispatch.resolve(torch.device("cuda"))


def test_fall_back_logs_once_per_reason_or_raises_when_forced(monkeypatch, caplog):
    monkeypatch.setattr(_dispatch, "_noted", set())
    monkeypatch.setenv("DOUBLEDIP_BACKEND", "auto")
    with caplog.at_level(logging.WARNING, logger="doubledip.kernels"):
        for reason, detail in [("reason one", "first"), ("reason one", "second"), ("reason two", "")]:
            assert _dispatch.fall_back("some_op", "cpp", reason, detail) == "torch"
        assert _dispatch.fall_back("other_op", "cpp", "reason one") == "torch"
    assert [r.getMessage() for r in caplog.records] == [
        "doubledip.kernels: some_op: the cpp kernels do not handle reason one (first); using the plain-torch reference",
        "doubledip.kernels: some_op: the cpp kernels do not handle reason two; using the plain-torch reference",
        "doubledip.kernels: other_op: the cpp kernels do not handle reason one; using the plain-torch reference",
    ]
    monkeypatch.setenv("DOUBLEDIP_BACKEND", "triton")
    with pytest.raises(ValueError, match=r"some_op: the triton kernels do not handle reason one \(first\); "
                                         r"DOUBLEDIP_BACKEND=triton is forced"):
        _dispatch.fall_back("some_op", "triton", "reason one", "first")


def test_dispatch_is_a_leaf():
    """_dispatch imports nothing of doubledip.kernels (the op modules import it, never the reverse)."""
    tree = ast.parse(inspect.getsource(_dispatch))
    imported = [node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    imported += [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
    assert imported and not [m for m in imported if m and m.startswith("doubledip.kernels")]


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


@pytest.mark.parametrize("name", _compile_backends())
def test_compile_traces_the_ops(name, monkeypatch, fused_calls):
    """Dynamo + AOTAutograd on the ops give eager's numbers; the fused backends without a graph break
    (their primitives run inside the graph as the doubledip:: custom ops).

    (perturb_ref seeds a torch.Generator, which dynamo cannot create in a graph: it breaks there.)
    Uses the aot_eager backend (seconds); the inductor test below is the slow, complete one.
    """
    monkeypatch.setenv("DOUBLEDIP_BACKEND", name)
    torch._dynamo.reset()
    _compare_compiled(torch.compile(_step, backend="aot_eager", fullgraph=name != "torch"))
    fused_calls.expect(name, "blend_fwd", "blend_bwd", "avg_pool2", "excl_means", "excl_grad", "perturb")


@pytest.mark.slow
def test_compile_inductor_matches_eager(monkeypatch, fused_calls):
    """Full torch.compile (inductor, about 40 s cold on a 2-core CPU) with the C++ backend."""
    if not bindings.is_available():
        pytest.skip("C++ core not built")
    monkeypatch.setenv("DOUBLEDIP_BACKEND", "cpp")
    torch._dynamo.reset()
    _compare_compiled(torch.compile(_step, fullgraph=True), seeds=(1,))
    fused_calls.expect("cpp", "blend_fwd", "blend_bwd", "avg_pool2", "excl_means", "excl_grad", "perturb")


def test_references_are_the_torch_backend(monkeypatch, fused_calls):
    """DOUBLEDIP_BACKEND=torch runs exactly the references."""
    monkeypatch.setenv("DOUBLEDIP_BACKEND", "torch")
    gen = torch.Generator().manual_seed(1)
    a, b, t = (torch.rand(1, 3, 12, 12, generator=gen) for _ in range(3))
    assert torch.equal(blend_loss(None, a, b, t), blend_loss_ref(None, a, b, t))
    assert torch.equal(exclusion_loss(a, b), exclusion_loss_ref(a, b))
    assert torch.equal(perturb(a, 0.1, 3), perturb_ref(a, 0.1, 3))
    fused_calls.expect("torch")
