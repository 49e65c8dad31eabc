"""Fused perturbation z + sigma * N(0, 1): statistics, determinism per seed, seeds differ."""
from __future__ import annotations


import torch
from scipy import stats

from doubledip.kernels import perturb, perturb_ref


def test_noise_statistics(backend):
    """Mean, standard deviation and shape of the noise (N = 98,304: 5 sigma bounds)."""
    _, device = backend
    z = torch.full((2, 3, 128, 128), 0.25, device=device)
    noise = ((perturb(z, 0.5, 1234) - z) / 0.5).double().cpu().flatten()
    n = noise.numel()
    assert abs(noise.mean().item()) < 5 / n**0.5
    assert abs(noise.std().item() - 1) < 5 * (0.5 / n) ** 0.5 * 1.5
    assert stats.kstest(noise[:20000].numpy(), "norm").pvalue > 1e-4
    assert noise.abs().max().item() < 7  # no garbage


def test_noise_deterministic_per_seed_and_seeds_differ(backend):
    _, device = backend
    z = torch.rand(1, 3, 37, 53, generator=torch.Generator().manual_seed(0)).to(device)  # odd numel
    first = perturb(z, 0.1, 7)
    assert first.shape == z.shape and first.dtype == z.dtype
    torch.testing.assert_close(perturb(z, 0.1, 7), first, rtol=0, atol=0)
    other = perturb(z, 0.1, 8)
    assert (other - first).abs().mean().item() > 0.05  # about 0.1 * 2 / sqrt(pi) for independent draws
    # draws of neighbouring seeds are uncorrelated
    corr = torch.corrcoef(torch.stack([(first - z).flatten(), (other - z).flatten()]))[0, 1].item()
    assert abs(corr) < 0.1
    for seed in (0, -3, 2**40 + 1, 2**63 + 5):  # any python int works
        assert torch.isfinite(perturb(z, 0.1, seed)).all()


def test_noise_sigma_zero_and_gradient(backend):
    _, device = backend
    z = torch.rand(4, 5, device=device, requires_grad=True)
    assert torch.equal(perturb(z, 0.0, 3), z)
    out = perturb(z, 0.3, 3)
    out.sum().backward()
    torch.testing.assert_close(z.grad, torch.ones_like(z))
    z64 = torch.rand(3, 3, dtype=torch.float64, device=device)
    assert perturb(z64, 0.1, 1).dtype == torch.float64


def test_noise_reference_gradcheck():
    z = torch.rand(2, 3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda z: perturb_ref(z, 0.2, 5), (z,))
