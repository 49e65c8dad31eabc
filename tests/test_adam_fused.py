"""The fused C++ Adam step (csrc/adam.cpp) against the torch._foreach_* reference and torch.optim.Adam.

Default (``sqrt="torch"``): bit-equal to both. ``sqrt="ieee"``: bit-equal to the reference computed
with a correctly rounded sqrt; within rounding of torch's (MKL's sqrt on this build).
"""
import numpy as np
import pytest
import torch

from doubledip import bindings
from doubledip.bindings import ops
from doubledip.engine import adam as adam_module
from doubledip.engine.adam import Adam

needs_core = pytest.mark.skipif(not bindings.is_available(), reason="C++ core not built")
CL = torch.channels_last


def _mix(seed=0, dtype=torch.float32):
    """A generator-like parameter set: channels-last conv weights (one over the core's serial
    threshold, so threads split it), biases, 1-element tensors, a plain matrix."""
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, cl=False):
        t = torch.randn(*shape, generator=g, dtype=dtype) * 0.1
        return (t.to(memory_format=CL) if cl else t).requires_grad_()

    return [rnd(64, 64, 3, 3, cl=True), rnd(64), rnd(16, 8, 5, 5, cl=True), rnd(16), rnd(1),
            rnd(3, 16, 1, 1, cl=True), rnd(3), rnd(1, 1, 1, 1), rnd(33, 7), rnd(8, 3, 3, 3, cl=True)]


SKIPPED = 3  # index of the parameter whose grad is None on some steps


def _grads(params, it, gen):
    out = []
    for i, p in enumerate(params):
        if i == SKIPPED and it % 4 in (1, 2):
            out.append(None)
            continue
        grad = torch.randn(p.shape, generator=gen, dtype=p.dtype) * (10.0 ** (it % 5 - 3))
        if it == 2:
            grad[..., 0] = 0  # exact zeros: v stays 0 there on the first steps
        out.append(grad.contiguous(memory_format=CL) if p.dim() == 4 else grad)
    return out


def _set(params, grads):
    for p, grad in zip(params, grads):
        p.grad = None if grad is None else grad.clone(memory_format=torch.preserve_format)


def _clone(params):
    return [p.detach().clone(memory_format=torch.preserve_format).requires_grad_() for p in params]


class _Spy:
    """Counts calls of the fused wrappers (both still run)."""

    def __init__(self, monkeypatch):
        self.calls = {"adam_step": 0, "adam_step_split": 0}
        for name in self.calls:
            real = getattr(ops, name)

            def wrapped(*args, _real=real, _name=name, **kwargs):
                self.calls[_name] += 1
                return _real(*args, **kwargs)

            monkeypatch.setattr(ops, name, wrapped)


def _np_sqrt(ts):
    """Correctly rounded float32 square roots, in each tensor's own layout."""
    return [torch.from_numpy(np.sqrt(t.numpy())) for t in ts]


class _IeeeReference(Adam):
    """The foreach reference with a correctly rounded sqrt in place of torch's."""

    def _update(self, t, params, grads, exp_avgs, exp_avg_sqs):
        b1, b2 = self.beta1, self.beta2
        torch._foreach_lerp_(exp_avgs, grads, 1 - b1)
        torch._foreach_mul_(exp_avg_sqs, b2)
        torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=1 - b2)
        denom = _np_sqrt(exp_avg_sqs)
        torch._foreach_div_(denom, (1 - b2 ** t) ** 0.5)
        torch._foreach_add_(denom, self.eps)
        torch._foreach_addcdiv_(params, exp_avgs, denom, value=-(self.lr / (1 - b1 ** t)))


@pytest.fixture
def threads():
    before = torch.get_num_threads()
    yield lambda n: torch.set_num_threads(n)
    torch.set_num_threads(before)


def _run(monkeypatch, make_fused, make_ref, steps, check):
    """Steps both optimisers on equal gradients (the lr changes mid-run); check(it, ...) each step."""
    ps, qs = _mix(), _mix()
    fused, ref = make_fused(ps), make_ref(qs)
    gen = torch.Generator().manual_seed(1)
    for it in range(steps):
        if it == steps // 2:  # an lr change mid-run (the solver's schedules do this)
            fused.lr = 3e-3
            if isinstance(ref, torch.optim.Optimizer):
                ref.param_groups[0]["lr"] = 3e-3
            else:
                ref.lr = 3e-3
        grads = _grads(ps, it, gen)
        _set(ps, grads)
        _set(qs, grads)
        monkeypatch.delenv("DOUBLEDIP_BACKEND", raising=False)
        fused.step()
        if not isinstance(ref, torch.optim.Optimizer):
            monkeypatch.setenv("DOUBLEDIP_BACKEND", "torch")
        ref.step()
        monkeypatch.delenv("DOUBLEDIP_BACKEND", raising=False)
        check(it, fused, ref, ps, qs)
    return fused, ps


def _state(opt, i, name):
    if isinstance(opt, torch.optim.Optimizer):
        return opt.state[opt.param_groups[0]["params"][i]][name]
    return {"exp_avg": opt.exp_avg, "exp_avg_sq": opt.exp_avg_sq}[name][i]


def _assert_equal(it, fused, ref, ps, qs):
    for i, (p, q) in enumerate(zip(ps, qs)):
        assert torch.equal(p, q), (it, i, (p - q).abs().max().item())
        if fused.exp_avg[i] is not None:
            for name in ("exp_avg", "exp_avg_sq"):
                assert torch.equal(getattr(fused, name)[i], _state(ref, i, name)), (it, i, name)


@needs_core
@pytest.mark.parametrize("n_threads", [1, 2])
def test_fused_is_bit_equal_to_foreach(monkeypatch, threads, n_threads):
    threads(n_threads)
    spy = _Spy(monkeypatch)
    fused, ps = _run(monkeypatch, lambda p: Adam(p, lr=1e-3), lambda p: Adam(p, lr=1e-3), 30, _assert_equal)
    assert spy.calls["adam_step_split"] + spy.calls["adam_step"] >= 30  # the fused path ran
    assert fused.steps[SKIPPED] < fused.steps[0]  # the skipped parameter's count fell behind
    assert ps[0].is_contiguous(memory_format=CL) and fused.exp_avg[0].is_contiguous(memory_format=CL)


@needs_core
def test_fused_is_bit_equal_to_torch_adam(monkeypatch, threads):
    threads(1)
    spy = _Spy(monkeypatch)
    _run(monkeypatch, lambda p: Adam(p, lr=1e-3), lambda p: torch.optim.Adam(p, lr=1e-3), 30,
         _assert_equal)
    assert spy.calls["adam_step_split"] + spy.calls["adam_step"] >= 30


@needs_core
@pytest.mark.parametrize("n_threads", [1, 2, 3])
def test_ieee_single_pass_is_bit_equal_to_an_ieee_reference(monkeypatch, threads, n_threads):
    threads(n_threads)
    spy = _Spy(monkeypatch)
    _run(monkeypatch, lambda p: Adam(p, lr=1e-3, sqrt="ieee"), lambda p: _IeeeReference(p, lr=1e-3), 30,
         _assert_equal)
    assert spy.calls["adam_step"] >= 30 and spy.calls["adam_step_split"] == 0


@needs_core
def test_ieee_single_pass_is_within_rounding_of_torch_adam(monkeypatch, threads):
    """Moments bit-equal (they do not depend on p); parameters within a few ulps of one update per
    step (torch's MKL sqrt is off by one ulp for some inputs)."""
    threads(1)
    steps, diffs = 40, []

    def check(it, fused, ref, ps, qs):
        for i, (p, q) in enumerate(zip(ps, qs)):
            if fused.exp_avg[i] is not None:
                assert torch.equal(fused.exp_avg[i], _state(ref, i, "exp_avg"))
                assert torch.equal(fused.exp_avg_sq[i], _state(ref, i, "exp_avg_sq"))
            # each step moves p by at most ~lr (Adam's update is lr-bounded); allow 4 ulps of that
            # and 1 ulp of p per step so far
            tol = (it + 1) * (4 * 3e-3 * 2.0 ** -23 + q.abs().max().item() * 2.0 ** -23)
            diffs.append((p - q).abs().max().item())
            assert diffs[-1] <= tol, (it, i, diffs[-1], tol)

    _run(monkeypatch, lambda p: Adam(p, lr=1e-3, sqrt="ieee"), lambda p: torch.optim.Adam(p, lr=1e-3),
         steps, check)
    if not adam_module._torch_sqrt_is_ieee():
        assert max(diffs) > 0  # MKL's sqrt here: the two really differ (and the bound was tested)


@needs_core
def test_fallbacks_use_foreach_and_stay_exact(monkeypatch, threads):
    """float64, a grad whose strides differ from its parameter's, a non-dense parameter: the group
    goes through the foreach path, still bit-equal to torch.optim.Adam."""
    threads(1)
    spy = _Spy(monkeypatch)
    cases = {
        "float64": lambda: _mix(dtype=torch.float64),
        "strides": lambda: _mix(),  # grads of the 4-d parameters set contiguous below
        "non-dense": lambda: _mix() + [torch.randn(6, 10)[:, ::2].requires_grad_()],
    }
    for name, make in cases.items():
        ps = make()
        qs = _clone(ps)
        ours, theirs = Adam(ps, lr=1e-3), torch.optim.Adam(qs, lr=1e-3)
        gen = torch.Generator().manual_seed(2)
        for it in range(6):
            grads = [torch.randn(p.shape, generator=gen, dtype=p.dtype) * 1e-2 for p in ps]  # contiguous
            if name != "strides":
                grads = [g.contiguous(memory_format=CL) if g.dim() == 4 else g for g in grads]
            for p, q, g in zip(ps, qs, grads):
                p.grad, q.grad = g.clone(), g.clone()
            if name == "strides":
                assert ps[0].grad.stride() != ps[0].stride()
            ours.step()
            theirs.step()
            for i, (p, q) in enumerate(zip(ps, qs)):
                assert torch.equal(p, q), (name, it, i)
        assert spy.calls == {"adam_step": 0, "adam_step_split": 0}, name
    # and the same mix with matching grads does take the fused path (the spy works)
    ps = _mix()
    opt = Adam(ps, lr=1e-3)
    for p in ps:
        p.grad = torch.ones_like(p)
    opt.step()
    assert spy.calls["adam_step"] + spy.calls["adam_step_split"] == 1


def test_backend_torch_uses_foreach(monkeypatch):
    monkeypatch.setenv("DOUBLEDIP_BACKEND", "torch")
    spy = _Spy(monkeypatch)
    seen = []
    real = Adam._update

    def update(self, *args):
        seen.append(len(args[1]))
        return real(self, *args)

    monkeypatch.setattr(Adam, "_update", update)
    ps, qs = _mix(), _mix()
    ours, theirs = Adam(ps, lr=1e-3), torch.optim.Adam(qs, lr=1e-3)
    for it in range(3):
        for p, q in zip(ps, qs):
            p.grad = torch.full_like(p, 0.5 - it)
            q.grad = p.grad.clone()
        ours.step()
        theirs.step()
    assert all(torch.equal(p, q) for p, q in zip(ps, qs))
    assert seen == [len(ps)] * 3
    assert spy.calls == {"adam_step": 0, "adam_step_split": 0}


@needs_core
def test_core_adam_step_matches_an_elementwise_reference(threads):
    """The core alone, range splits landing inside tensors (sizes not multiples of anything)."""
    gen = torch.Generator().manual_seed(3)
    sizes = [1, 5, 40000, 17, 70001, 3]
    for n_threads in (1, 2, 3):
        threads(n_threads)
        p = [torch.randn(n, generator=gen) for n in sizes]
        g = [torch.randn(n, generator=gen) * 1e-2 for n in sizes]
        m = [torch.randn(n, generator=gen) * 1e-3 for n in sizes]
        v = [torch.rand(n, generator=gen) * 1e-4 for n in sizes]
        b1, b2, lr, eps, t = 0.9, 0.999, 2e-3, 1e-8, 7
        ref_p, ref_m, ref_v = [x.clone() for x in p], [x.clone() for x in m], [x.clone() for x in v]
        torch._foreach_lerp_(ref_m, g, 1 - b1)
        torch._foreach_mul_(ref_v, b2)
        torch._foreach_addcmul_(ref_v, g, g, value=1 - b2)
        d = _np_sqrt(ref_v)
        torch._foreach_div_(d, (1 - b2 ** t) ** 0.5)
        torch._foreach_add_(d, eps)
        torch._foreach_addcdiv_(ref_p, ref_m, d, value=-(lr / (1 - b1 ** t)))
        ops.adam_step(p, g, m, v, weight1=1 - b1, beta2=b2, value2=1 - b2, bias2_sqrt=(1 - b2 ** t) ** 0.5,
                      eps=eps, neg_step_size=-(lr / (1 - b1 ** t)))
        for a, b in zip(p + m + v, ref_p + ref_m + ref_v):
            assert torch.equal(a, b), n_threads


def test_bad_sqrt_mode():
    with pytest.raises(ValueError, match="sqrt"):
        Adam(_mix(), lr=1e-3, sqrt="fast")
