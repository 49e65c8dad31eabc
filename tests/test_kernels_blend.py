"""Fused blend loss: every backend against the plain-torch reference, forward and every gradient."""
from __future__ import annotations

import zlib

import pytest
import torch

from doubledip.kernels import blend_loss, blend_loss_ref

SIZES = [(1, 3, 37, 53), (3, 3, 16, 20)]
MASKS = ["none", "scalar", "item", "pixel", "full"]


def _mask(kind, shape, device, gen):
    n, c, h, w = shape
    dims = {"none": None, "scalar": (), "item": (n, 1, 1, 1), "pixel": (n, 1, h, w), "full": (n, c, h, w)}[kind]
    return None if dims is None else torch.rand(dims, generator=gen).to(device)


def _run(fn, tensors):
    """Value and gradients of fn(*tensors) for the tensors that require grad (None stays None)."""
    leaves = [None if t is None else t.detach().clone().requires_grad_(t.requires_grad) for t in tensors]
    out = fn(*leaves)
    out.backward()
    return out.detach(), [None if t is None else t.grad for t in leaves]


def _close(got, want, rtol=1e-5, atol=1e-6):
    assert got.shape == want.shape
    scale = want.abs().max().item() or 1.0
    torch.testing.assert_close(got, want, rtol=rtol, atol=atol * scale)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("mask_kind", MASKS)
@pytest.mark.parametrize("loss", ["l1", "mse"])
def test_blend_matches_reference(backend, size, mask_kind, loss):
    _, device = backend
    gen = torch.Generator().manual_seed(zlib.crc32(repr((size, mask_kind, loss)).encode()))
    a, b, t = (torch.rand(size, generator=gen).to(device).requires_grad_() for _ in range(3))
    m = _mask(mask_kind, size, device, gen)
    if m is not None:
        m.requires_grad_()
    got, got_g = _run(lambda m, a, b, t: blend_loss(m, a, b, t, loss), [m, a, b, t])
    want, want_g = _run(lambda m, a, b, t: blend_loss_ref(m, a, b, t, loss), [m, a, b, t])
    _close(got, want)
    for g, w in zip(got_g, want_g):
        if w is not None:
            _close(g, w)


@pytest.mark.parametrize("mask_kind", ["none", "pixel", "item"])
def test_blend_only_some_gradients(backend, mask_kind):
    """Only the inputs that require grad get one (the others are not computed)."""
    _, device = backend
    size = (2, 3, 9, 11)
    gen = torch.Generator().manual_seed(3)
    a = torch.rand(size, generator=gen).to(device).requires_grad_()
    b, t = torch.rand(size, generator=gen).to(device), torch.rand(size, generator=gen).to(device)
    m = _mask(mask_kind, size, device, gen)
    got, (_, ga, gb, gt) = _run(lambda m, a, b, t: blend_loss(m, a, b, t, "mse"), [m, a, b, t])
    want, (_, wa, _, _) = _run(lambda m, a, b, t: blend_loss_ref(m, a, b, t, "mse"), [m, a, b, t])
    _close(got, want)
    _close(ga, wa)
    assert gb is None and gt is None


def test_blend_no_grad_and_odd_inputs(backend):
    """No-grad calls, non-contiguous inputs, a python-float mask and float64 (reference fallback)."""
    _, device = backend
    gen = torch.Generator().manual_seed(5)
    a, b, t = (torch.rand(2, 3, 13, 17, generator=gen).to(device) for _ in range(3))
    with torch.no_grad():
        _close(blend_loss(None, a, b, t), blend_loss_ref(None, a, b, t))
    at = a.transpose(2, 3)
    bt, tt = b.transpose(2, 3), t.transpose(2, 3)
    _close(blend_loss(None, at, bt, tt, "mse"), blend_loss_ref(None, at, bt, tt, "mse"))
    _close(blend_loss(0.3, a, b, t), blend_loss_ref(0.3, a, b, t))
    a64, b64, t64 = a.double(), b.double(), t.double()
    assert blend_loss(None, a64, b64, t64).dtype == torch.float64
    _close(blend_loss(None, a64, b64, t64), blend_loss_ref(None, a64, b64, t64))


def test_blend_rejects_unknown_loss(backend):
    a = torch.rand(1, 3, 4, 4, device=backend[1])
    with pytest.raises(ValueError, match="loss must be one of"):
        blend_loss(None, a, a, a, "huber")


@pytest.mark.parametrize("mask_kind", MASKS)
@pytest.mark.parametrize("loss", ["l1", "mse"])
def test_blend_reference_gradcheck(mask_kind, loss):
    gen = torch.Generator().manual_seed(11)
    size = (2, 2, 5, 6)
    a, b, t = (torch.rand(size, generator=gen, dtype=torch.float64, requires_grad=True) for _ in range(3))
    m = _mask(mask_kind, size, "cpu", gen)
    inputs = [a, b, t] if m is None else [m.double().requires_grad_(), a, b, t]
    if m is None:
        fn = lambda a, b, t: blend_loss_ref(None, a, b, t, loss)  # noqa: E731
    else:
        fn = lambda m, a, b, t: blend_loss_ref(m, a, b, t, loss)  # noqa: E731
    assert torch.autograd.gradcheck(fn, inputs)


@pytest.mark.parametrize("mask_shape", [(1, 1, 13, 17), (1, 3, 13, 17), (3, 1, 1)], ids=str)
def test_blend_other_broadcasts_fall_back(backend, mask_shape):
    """Masks broadcast over the batch (or 3-dim) are not fused: the reference serves them, with gradients."""
    _, device = backend
    gen = torch.Generator().manual_seed(8)
    a, b, t = (torch.rand(2, 3, 13, 17, generator=gen).to(device).requires_grad_() for _ in range(3))
    m = torch.rand(mask_shape, generator=gen).to(device).requires_grad_()
    got, got_g = _run(lambda m, a, b, t: blend_loss(m, a, b, t, "l1"), [m, a, b, t])
    want, want_g = _run(lambda m, a, b, t: blend_loss_ref(m, a, b, t, "l1"), [m, a, b, t])
    _close(got, want)
    for g, w in zip(got_g, want_g):
        _close(g, w)
