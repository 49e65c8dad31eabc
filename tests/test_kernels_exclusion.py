"""Fused exclusion loss: every backend against the plain-torch reference, value and gradients."""
from __future__ import annotations


import pytest
import torch

from doubledip.kernels import exclusion_loss, exclusion_loss_ref


def _value_and_grads(fn, a, b):
    a = a.detach().clone().requires_grad_()
    b = b.detach().clone().requires_grad_()
    out = fn(a, b)
    out.backward()
    return out.detach(), a.grad, b.grad


def _close(got, want, rtol=2e-5, atol=2e-6):
    scale = want.abs().max().item() or 1.0
    torch.testing.assert_close(got, want, rtol=rtol, atol=atol * scale)


@pytest.mark.parametrize(
    "size,levels",
    [((1, 3, 37, 53), 3), ((2, 3, 24, 40), 3), ((2, 3, 19, 23), 2), ((1, 3, 9, 6), 1),
     ((2, 1, 21, 18), 3), ((1, 2, 17, 20), 3)],
    ids=lambda v: "x".join(map(str, v)) if isinstance(v, tuple) else f"L{v}",
)
def test_exclusion_matches_reference(backend, fused_calls, size, levels):
    name, device = backend
    gen = torch.Generator().manual_seed(sum(size) * 7 + levels)
    # images in [0, 1] as the method's; different statistics for a and b
    a = torch.rand(size, generator=gen).to(device)
    b = (0.5 * torch.rand(size, generator=gen) ** 2).to(device)
    got = _value_and_grads(lambda a, b: exclusion_loss(a, b, levels), a, b)
    fused_calls.expect(name, "excl_means", "excl_grad", *(["avg_pool2"] if levels > 1 else []))
    want = _value_and_grads(lambda a, b: exclusion_loss_ref(a, b, levels), a, b)
    for g, w in zip(got, want):
        _close(g, w)


def test_exclusion_large_gradients_and_no_grad(backend, fused_calls):
    """Steep images (psi saturates) and a no-grad call."""
    name, device = backend
    gen = torch.Generator().manual_seed(2)
    a = (8 * torch.randn(1, 3, 20, 28, generator=gen)).to(device)
    b = (3 * torch.randn(1, 3, 20, 28, generator=gen)).to(device)
    got = _value_and_grads(exclusion_loss, a, b)
    fused_calls.expect(name, "avg_pool2", "excl_means", "excl_grad")
    want = _value_and_grads(exclusion_loss_ref, a, b)
    for g, w in zip(got, want):
        _close(g, w)
    fused_calls.clear()
    with torch.no_grad():
        got = exclusion_loss(a, b)
    fused_calls.expect(name, "avg_pool2", "excl_means")
    assert not fused_calls.counts[name, "excl_grad"]
    _close(got, exclusion_loss_ref(a, b))


def test_exclusion_flat_images_stay_finite(backend, fused_calls):
    """A constant image has zero pair means: loss 0 and a zero (not nan) gradient."""
    name, device = backend
    a = torch.full((1, 3, 16, 16), 0.5, device=device)
    b = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0)).to(device)
    loss, ga, gb = _value_and_grads(exclusion_loss, a, b)
    fused_calls.expect(name, "excl_means", "excl_grad")
    assert loss.item() == 0.0
    if backend[0] != "torch":  # the reference's 0^(-3/4) gives inf/nan here
        assert torch.isfinite(ga).all() and torch.isfinite(gb).all()


def _unfused(kind, device):
    """Valid images that the fused kernels do not handle."""
    gen = torch.Generator().manual_seed(4)
    a, b = (torch.rand(1, 3, 12, 14, generator=gen) for _ in range(2))
    if kind == "float64":
        a, b = a.double(), b.double()
    elif kind == "too small":
        a, b = a[..., :7, :7], b[..., :7, :7]  # level 2 would be 1 x 1
    elif kind == "empty":
        a, b = a[:0], b[:0]
    return a.to(device).requires_grad_(), b.to(device).requires_grad_()


UNFUSED = ["float64", "too small", "empty"]


@pytest.mark.parametrize("kind", UNFUSED)
def test_exclusion_unfused_inputs_use_the_reference_under_auto(auto_backend, kind, fused_calls):
    """float64, images too small for the pyramid and empty batches: the reference, logged once."""
    a, b = _unfused(kind, auto_backend.device)
    got = _value_and_grads(exclusion_loss, a, b)
    exclusion_loss(a, b)  # the same reason: no second log
    fused_calls.expect("torch")
    want = _value_and_grads(exclusion_loss_ref, a, b)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, equal_nan=True)
    (message,) = auto_backend.fallbacks("exclusion_loss")
    assert f"the {auto_backend.name} kernels do not handle" in message


@pytest.mark.parametrize("kind", UNFUSED)
def test_exclusion_unfused_inputs_are_refused_by_a_forced_backend(backend, kind, fused_calls):
    name, device = backend
    a, b = _unfused(kind, device)
    if name == "torch":
        torch.testing.assert_close(exclusion_loss(a, b), exclusion_loss_ref(a, b), equal_nan=True)
    else:
        with pytest.raises(ValueError, match=f"the {name} kernels do not handle .*DOUBLEDIP_BACKEND={name} is forced"):
            exclusion_loss(a, b)
    fused_calls.expect("torch")


def test_exclusion_reference_gradcheck():
    gen = torch.Generator().manual_seed(9)
    a = torch.rand(1, 3, 12, 16, generator=gen, dtype=torch.float64, requires_grad=True)
    b = torch.rand(1, 3, 12, 16, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(exclusion_loss_ref, (a, b))
    a2 = torch.rand(2, 3, 8, 9, generator=gen, dtype=torch.float64, requires_grad=True)
    b2 = torch.rand(2, 3, 8, 9, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: exclusion_loss_ref(a, b, 2), (a2, b2))
