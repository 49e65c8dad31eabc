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
def test_blend_matches_reference(backend, fused_calls, size, mask_kind, loss):
    name, device = backend
    gen = torch.Generator().manual_seed(zlib.crc32(repr((size, mask_kind, loss)).encode()))
    a, b, t = (torch.rand(size, generator=gen).to(device).requires_grad_() for _ in range(3))
    m = _mask(mask_kind, size, device, gen)
    if m is not None:
        m.requires_grad_()
    got, got_g = _run(lambda m, a, b, t: blend_loss(m, a, b, t, loss), [m, a, b, t])
    fused_calls.expect(name, "blend_fwd", "blend_bwd")
    want, want_g = _run(lambda m, a, b, t: blend_loss_ref(m, a, b, t, loss), [m, a, b, t])
    _close(got, want)
    for g, w in zip(got_g, want_g):
        if w is not None:
            _close(g, w)


@pytest.mark.parametrize("mask_kind", ["none", "pixel", "item"])
def test_blend_only_some_gradients(backend, fused_calls, mask_kind):
    """Only the inputs that require grad get one (the others are not computed)."""
    name, device = backend
    size = (2, 3, 9, 11)
    gen = torch.Generator().manual_seed(3)
    a = torch.rand(size, generator=gen).to(device).requires_grad_()
    b, t = torch.rand(size, generator=gen).to(device), torch.rand(size, generator=gen).to(device)
    m = _mask(mask_kind, size, device, gen)
    got, (_, ga, gb, gt) = _run(lambda m, a, b, t: blend_loss(m, a, b, t, "mse"), [m, a, b, t])
    fused_calls.expect(name, "blend_fwd", "blend_bwd")
    want, (_, wa, _, _) = _run(lambda m, a, b, t: blend_loss_ref(m, a, b, t, "mse"), [m, a, b, t])
    _close(got, want)
    _close(ga, wa)
    assert gb is None and gt is None


def test_blend_no_grad_and_odd_inputs(backend, fused_calls):
    """No-grad calls, non-contiguous inputs and a python-float mask: all fused."""
    name, device = backend
    gen = torch.Generator().manual_seed(5)
    a, b, t = (torch.rand(2, 3, 13, 17, generator=gen).to(device) for _ in range(3))
    with torch.no_grad():
        got = blend_loss(None, a, b, t)
    fused_calls.expect(name, "blend_fwd")
    _close(got, blend_loss_ref(None, a, b, t))
    at = a.transpose(2, 3)
    bt, tt = b.transpose(2, 3), t.transpose(2, 3)
    fused_calls.clear()
    got = blend_loss(None, at, bt, tt, "mse")
    fused_calls.expect(name, "blend_fwd")
    _close(got, blend_loss_ref(None, at, bt, tt, "mse"))
    fused_calls.clear()
    got = blend_loss(0.3, a, b, t)
    fused_calls.expect(name, "blend_fwd")
    _close(got, blend_loss_ref(0.3, a, b, t))


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


UNFUSED = {"float64": lambda x: x.double(), "mask (1, 1, H, W)": None, "mask (1, C, H, W)": None,
           "mask (C, 1, 1)": None, "empty": lambda x: x[:0]}


def _unfused_inputs(kind, device):
    """Valid inputs that the fused kernels do not handle: (mask, a, b, t), each requiring grad."""
    gen = torch.Generator().manual_seed(8)
    a, b, t = (torch.rand(2, 3, 13, 17, generator=gen) for _ in range(3))
    m = torch.rand(2, 1, 13, 17, generator=gen)
    if kind.startswith("mask"):
        m = torch.rand({"mask (1, 1, H, W)": (1, 1, 13, 17), "mask (1, C, H, W)": (1, 3, 13, 17),
                        "mask (C, 1, 1)": (3, 1, 1)}[kind], generator=gen)
    else:
        m, a, b, t = (UNFUSED[kind](x) for x in (m, a, b, t))
    return [x.to(device).requires_grad_() for x in (m, a, b, t)]


@pytest.mark.parametrize("kind", sorted(UNFUSED))
def test_blend_unfused_inputs_use_the_reference_under_auto(auto_backend, kind, fused_calls):
    """Under auto, valid inputs the kernels do not handle (float64, masks broadcast over the batch or
    of fewer dims, empty tensors) get the reference's value and gradients, logged once."""
    tensors = _unfused_inputs(kind, auto_backend.device)
    got, got_g = _run(lambda m, a, b, t: blend_loss(m, a, b, t, "l1"), tensors)
    _run(lambda m, a, b, t: blend_loss(m, a, b, t, "l1"), tensors)  # the same reason: no second log
    fused_calls.expect("torch")
    want, want_g = _run(lambda m, a, b, t: blend_loss_ref(m, a, b, t, "l1"), tensors)
    torch.testing.assert_close(got, want, equal_nan=True)
    for g, w in zip(got_g, want_g):
        torch.testing.assert_close(g, w, equal_nan=True)
    (message,) = auto_backend.fallbacks("blend_loss")
    assert f"the {auto_backend.name} kernels do not handle" in message and "plain-torch reference" in message


@pytest.mark.parametrize("kind", sorted(UNFUSED))
def test_blend_unfused_inputs_are_refused_by_a_forced_backend(backend, kind, fused_calls):
    """A forced fused backend raises for the same inputs (the torch backend serves them)."""
    name, device = backend
    tensors = _unfused_inputs(kind, device)
    if name == "torch":
        torch.testing.assert_close(blend_loss(*tensors), blend_loss_ref(*tensors), equal_nan=True)
    else:
        with pytest.raises(ValueError, match=f"the {name} kernels do not handle .*DOUBLEDIP_BACKEND={name} is forced"):
            blend_loss(*tensors)
    fused_calls.expect("torch")
