"""Fused perturbation z + sigma * N(0, 1): statistics, determinism per seed, seeds differ."""
from __future__ import annotations


import pytest
import torch
from scipy import stats

from doubledip.kernels import perturb, perturb_ref


def test_noise_statistics(backend, fused_calls):
    """Mean, standard deviation and shape of the noise (N = 98,304: 5 sigma bounds)."""
    name, device = backend
    z = torch.full((2, 3, 128, 128), 0.25, device=device)
    noise = ((perturb(z, 0.5, 1234) - z) / 0.5).double().cpu().flatten()
    fused_calls.expect(name, "perturb")
    n = noise.numel()
    assert abs(noise.mean().item()) < 5 / n**0.5
    assert abs(noise.std().item() - 1) < 5 * (0.5 / n) ** 0.5 * 1.5
    assert stats.kstest(noise[:20000].numpy(), "norm").pvalue > 1e-4
    assert noise.abs().max().item() < 7  # no garbage


def test_noise_deterministic_per_seed_and_seeds_differ(backend, fused_calls):
    name, device = backend
    z = torch.rand(1, 3, 37, 53, generator=torch.Generator().manual_seed(0)).to(device)  # odd numel
    first = perturb(z, 0.1, 7)
    fused_calls.expect(name, "perturb")
    assert first.shape == z.shape and first.dtype == z.dtype
    torch.testing.assert_close(perturb(z, 0.1, 7), first, rtol=0, atol=0)
    other = perturb(z, 0.1, 8)
    assert (other - first).abs().mean().item() > 0.05  # about 0.1 * 2 / sqrt(pi) for independent draws
    # draws of neighbouring seeds are uncorrelated
    corr = torch.corrcoef(torch.stack([(first - z).flatten(), (other - z).flatten()]))[0, 1].item()
    assert abs(corr) < 0.1
    for seed in (0, -3, 2**40 + 1, 2**63 + 5):  # any python int works
        assert torch.isfinite(perturb(z, 0.1, seed)).all()


def test_noise_sigma_zero_and_gradient(backend, fused_calls):
    name, device = backend
    z = torch.rand(4, 5, device=device, requires_grad=True)
    assert perturb(z, 0.0, 3) is z
    fused_calls.expect("torch")  # sigma = 0 runs nothing
    out = perturb(z, 0.3, 3)
    out.sum().backward()
    fused_calls.expect(name, "perturb")
    torch.testing.assert_close(z.grad, torch.ones_like(z))


def test_noise_float64_uses_the_reference_under_auto(auto_backend, fused_calls):
    z64 = torch.rand(3, 3, dtype=torch.float64, device=auto_backend.device)
    got = perturb(z64, 0.1, 1)
    perturb(z64, 0.1, 2)  # the same reason: no second log
    fused_calls.expect("torch")
    torch.testing.assert_close(got, perturb_ref(z64, 0.1, 1), rtol=0, atol=0)
    (message,) = auto_backend.fallbacks("perturb")
    assert f"the {auto_backend.name} kernels do not handle tensors other than float32" in message


def test_noise_float64_is_refused_by_a_forced_backend(backend, fused_calls):
    name, device = backend
    z64 = torch.rand(3, 3, dtype=torch.float64, device=device)
    if name == "torch":
        torch.testing.assert_close(perturb(z64, 0.1, 1), perturb_ref(z64, 0.1, 1), rtol=0, atol=0)
    else:
        with pytest.raises(ValueError, match=f"the {name} kernels do not handle tensors other than float32"):
            perturb(z64, 0.1, 1)
    fused_calls.expect("torch")


def test_noise_reference_gradcheck():
    z = torch.rand(2, 3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda z: perturb_ref(z, 0.2, 5), (z,))
