"""The package's Adam: bit-equal to torch.optim.Adam's default path, and no torch._dynamo import."""
import subprocess
import sys

import pytest
import torch

from doubledip.engine.adam import Adam


def _params(seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(8, 3, 5, 5, generator=g).to(memory_format=torch.channels_last).requires_grad_(),
            torch.randn(8, generator=g).requires_grad_(),
            torch.randn(4, 4, generator=g).requires_grad_()]


@pytest.mark.parametrize("lr", [5e-4, 1e-2])
def test_updates_are_bit_equal_to_torch_adam(lr):
    ours, theirs = _params(), _params()
    mine, reference = Adam(ours, lr=lr), torch.optim.Adam(theirs, lr=lr)
    g = torch.Generator().manual_seed(1)
    for it in range(25):
        for i, (p, q) in enumerate(zip(ours, theirs)):
            if i == 2 and it % 3 == 1:  # skipped this step: its own step count falls behind, as in torch
                p.grad = q.grad = None
                continue
            grad = torch.randn(p.shape, generator=g) * (10.0 ** (it % 4 - 2))
            p.grad, q.grad = grad.clone(), grad.clone()
        mine.step()
        reference.step()
        for p, q in zip(ours, theirs):
            assert torch.equal(p, q), (it, (p - q).abs().max().item())
    assert ours[0].is_contiguous(memory_format=torch.channels_last)
    assert mine.exp_avg[0].is_contiguous(memory_format=torch.channels_last)


def test_zero_grad_sets_none_and_moves_nothing():
    ps = _params()
    before = [p.detach().clone() for p in ps]
    opt = Adam(ps, lr=1e-3)
    for p in ps:
        p.grad = torch.ones_like(p)
    opt.zero_grad()
    assert all(p.grad is None for p in ps)
    opt.step()  # no gradients: no update, no state
    assert all(torch.equal(p, b) for p, b in zip(ps, before))
    assert opt.steps == [0, 0, 0]


def test_bad_arguments():
    with pytest.raises(ValueError, match="empty"):
        Adam([], lr=1e-3)
    with pytest.raises(ValueError, match="lr"):
        Adam(_params(), lr=0.0)


def test_an_eager_fit_does_not_import_dynamo():
    """torch.optim.Adam's constructor imports torch._dynamo (~150 MB resident); ours must not,
    and nothing else on the eager path may (every task, briefly)."""
    code = (
        "import sys, numpy as np, doubledip as dd\n"
        "img = np.random.default_rng(0).random((40, 40, 3)).astype(np.float32)\n"
        "hint = np.zeros((40, 40), np.float32); hint[10:20, 10:30] = 1\n"
        "cfg = dd.SolverConfig(iterations=3, repeats=1, device='cpu')\n"
        "dd.separate(img, cfg); dd.separate_pair(img, img[::-1].copy(), cfg); dd.dehaze(img, cfg)\n"
        "dd.segment(img, cfg, fg_hint=hint, bg_hint=1 - hint); dd.remove_watermark(img, hint, cfg)\n"
        "dd.remove_watermark_multi([img, img[:, ::-1].copy()], cfg)\n"
        "print('dynamo' if 'torch._dynamo' in sys.modules else 'ok')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "ok"
