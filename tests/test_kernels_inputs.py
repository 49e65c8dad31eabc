"""Invalid inputs to the public ops raise for every backend (the torch references included), naming
what came and what was expected, before any fused primitive runs."""
from __future__ import annotations

import re

import pytest
import torch

from doubledip.kernels import blend_loss, exclusion_loss, perturb

N, C, H, W = 2, 3, 8, 10


def _other_device(device):
    """A device other than ``device`` for a device-mix case (meta needs no second accelerator)."""
    return "meta" if device != "meta" else "cpu"


def _images(device, k=3):
    gen = torch.Generator().manual_seed(0)
    return [torch.rand(N, C, H, W, generator=gen).to(device) for _ in range(k)]


BLEND_CASES = {
    # name: (args from (a, b, t, device), error, message)
    "target of another batch": (lambda a, b, t, d: (None, a, b, t[:1]), ValueError,
                                f"blend_loss: target must have the shape of a {(N, C, H, W)}, got {(1, C, H, W)}"),
    "b of another batch": (lambda a, b, t, d: (None, a, b[:1], t), ValueError,
                           f"blend_loss: b must have the shape of a {(N, C, H, W)}, got {(1, C, H, W)}"),
    "target of another size": (lambda a, b, t, d: (None, a, b, t[..., :-1]), ValueError,
                               f"target must have the shape of a {(N, C, H, W)}, got {(N, C, H, W - 1)}"),
    "mask of another batch": (lambda a, b, t, d: (torch.rand(N + 1, 1, H, W, device=d), a, b, t), ValueError,
                              f"blend_loss: mask must broadcast to the shape of a {(N, C, H, W)}, got {(N + 1, 1, H, W)}"),
    "mask of another size": (lambda a, b, t, d: (torch.rand(N, 1, H - 1, W, device=d), a, b, t), ValueError,
                             f"mask must broadcast to the shape of a {(N, C, H, W)}, got {(N, 1, H - 1, W)}"),
    "5-D mask": (lambda a, b, t, d: (torch.rand(1, N, 1, H, W, device=d), a, b, t), ValueError,
                 f"mask must broadcast to the shape of a {(N, C, H, W)}, got {(1, N, 1, H, W)}"),
    "3-D images": (lambda a, b, t, d: (None, a[0], b[0], t[0]), ValueError,
                   f"blend_loss: a must be N x C x H x W (4-D), got shape {(C, H, W)}"),
    "a not a tensor": (lambda a, b, t, d: (None, a.tolist(), b, t), TypeError,
                       "blend_loss: a must be a torch.Tensor, got list"),
    "integer target": (lambda a, b, t, d: (None, a, b, t.long()), TypeError,
                       "blend_loss: target must be a floating-point tensor, got torch.int64"),
    "string mask": (lambda a, b, t, d: ("0.5", a, b, t), TypeError,
                    "blend_loss: mask must be None, a number or a tensor, got str"),
    "boolean mask": (lambda a, b, t, d: (torch.ones(N, 1, H, W, dtype=torch.bool, device=d), a, b, t), TypeError,
                     "blend_loss: mask must be a floating-point tensor, got torch.bool"),
    "target on another device": (lambda a, b, t, d: (None, a, b, t.to(_other_device(d))), ValueError,
                                 "blend_loss: target must be on the device of a"),
    "mask on another device": (lambda a, b, t, d: (torch.rand(N, 1, H, W, device=_other_device(d)), a, b, t),
                               ValueError, "blend_loss: mask must be on the device of a"),
}


@pytest.mark.parametrize("case", sorted(BLEND_CASES))
def test_blend_rejects_invalid_inputs(backend, fused_calls, case):
    name, device = backend
    make, error, message = BLEND_CASES[case]
    a, b, t = _images(device)
    with pytest.raises(error, match=re.escape(message)):
        blend_loss(*make(a, b, t, device))
    fused_calls.expect("torch")  # refused before any primitive


EXCLUSION_CASES = {
    "b of another batch": (lambda a, b, d: (a, b[:1]), ValueError,
                           f"exclusion_loss: b must have the shape of a {(N, C, H, W)}, got {(1, C, H, W)}"),
    "b of another size": (lambda a, b, d: (a, b[..., :6]), ValueError,
                          f"exclusion_loss: b must have the shape of a {(N, C, H, W)}, got {(N, C, H, 6)}"),
    "3-D images": (lambda a, b, d: (a[0], b[0]), ValueError,
                   f"exclusion_loss: a must be N x C x H x W (4-D), got shape {(C, H, W)}"),
    "b not a tensor": (lambda a, b, d: (a, 0.5), TypeError, "exclusion_loss: b must be a torch.Tensor, got float"),
    "integer a": (lambda a, b, d: ((a * 10).long(), b), TypeError,
                  "exclusion_loss: a must be a floating-point tensor, got torch.int64"),
    "b on another device": (lambda a, b, d: (a, b.to(_other_device(d))), ValueError,
                            "exclusion_loss: b must be on the device of a"),
    "zero levels": (lambda a, b, d: (a, b, 0), ValueError, "exclusion_loss: levels must be >= 1, got 0"),
    "float levels": (lambda a, b, d: (a, b, 2.0), TypeError, "exclusion_loss: levels must be an int, got float"),
    "boolean levels": (lambda a, b, d: (a, b, True), TypeError, "exclusion_loss: levels must be an int, got bool"),
}


@pytest.mark.parametrize("case", sorted(EXCLUSION_CASES))
def test_exclusion_rejects_invalid_inputs(backend, fused_calls, case):
    name, device = backend
    make, error, message = EXCLUSION_CASES[case]
    a, b = _images(device, 2)
    with pytest.raises(error, match=re.escape(message)):
        exclusion_loss(*make(a, b, device))
    fused_calls.expect("torch")


PERTURB_CASES = {
    "z not a tensor": (lambda z: ([0.0, 1.0], 0.1, 1), TypeError, "perturb: z must be a torch.Tensor, got list"),
    "integer z": (lambda z: (z.long(), 0.1, 1), TypeError, "perturb: z must be a floating-point tensor, got torch.int64"),
    "string sigma": (lambda z: (z, "0.1", 1), TypeError, "perturb: sigma must be a real number, got str"),
    "tensor sigma": (lambda z: (z, torch.tensor([0.1, 0.2]), 1), TypeError,
                     "perturb: sigma must be a real number, got Tensor"),
    "negative sigma": (lambda z: (z, -0.1, 1), ValueError, "perturb: sigma must be a finite number >= 0, got -0.1"),
    "nan sigma": (lambda z: (z, float("nan"), 1), ValueError, "perturb: sigma must be a finite number >= 0, got nan"),
    "float seed": (lambda z: (z, 0.1, 1.5), TypeError, "perturb: seed must be an int, got float"),
    "string seed": (lambda z: (z, 0.1, "1"), TypeError, "perturb: seed must be an int, got str"),
}


@pytest.mark.parametrize("case", sorted(PERTURB_CASES))
def test_perturb_rejects_invalid_inputs(backend, fused_calls, case):
    name, device = backend
    make, error, message = PERTURB_CASES[case]
    (z,) = _images(device, 1)
    with pytest.raises(error, match=re.escape(message)):
        perturb(*make(z))
    fused_calls.expect("torch")


def test_valid_edge_inputs_are_accepted(backend, fused_calls):
    """What the checks must let through, on every backend: a mask that broadcasts along channels,
    python and numpy numbers for mask, sigma and seed, a seed beyond 64 bits."""
    np = pytest.importorskip("numpy")
    name, device = backend
    a, b, t = _images(device)
    m = torch.rand(N, 1, H, W, device=device)
    for mask in (m, 0.25, np.float32(0.25), 1):
        assert torch.isfinite(blend_loss(mask, a, b, t))
    assert torch.isfinite(exclusion_loss(a, b, np.int64(2)))
    assert perturb(a, np.float64(0.1), np.int64(3)).shape == a.shape
    assert perturb(a, 0.1, 2**70 + 1).shape == a.shape
    fused_calls.expect(name, "blend_fwd", "excl_means", "perturb")
