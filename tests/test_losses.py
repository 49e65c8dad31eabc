"""Each loss term against values worked out independently (numpy loops) on small inputs."""
import numpy as np
import pytest
import torch

from doubledip.engine.losses import gray_loss, masked_l1, psnr, std_loss
from doubledip.kernels import blend_loss_ref, exclusion_loss_ref


def _exclusion_by_hand(a: np.ndarray, b: np.ndarray, levels: int = 3) -> float:
    """ALGORITHM.md section 4 written out with loops, for 1 x 3 x H x W arrays."""
    def psi(g):
        return 2.0 / (1.0 + np.exp(-g)) - 1.0

    sum_x = sum_y = 0.0
    for level in range(levels):
        if level:
            a = a[:, :, : a.shape[2] // 2 * 2, : a.shape[3] // 2 * 2]
            b = b[:, :, : b.shape[2] // 2 * 2, : b.shape[3] // 2 * 2]
            a = (a[:, :, 0::2, 0::2] + a[:, :, 1::2, 0::2] + a[:, :, 0::2, 1::2] + a[:, :, 1::2, 1::2]) / 4
            b = (b[:, :, 0::2, 0::2] + b[:, :, 1::2, 0::2] + b[:, :, 0::2, 1::2] + b[:, :, 1::2, 1::2]) / 4
        for j in range(3):
            for i in range(3):
                gxa = psi(a[0, j, 1:, :] - a[0, j, :-1, :])
                gxb = psi(b[0, i, 1:, :] - b[0, i, :-1, :])
                gya = psi(a[0, j, :, 1:] - a[0, j, :, :-1])
                gyb = psi(b[0, i, :, 1:] - b[0, i, :, :-1])
                sum_x += np.mean(gxa ** 2 * gxb ** 2) ** 0.25
                sum_y += np.mean(gya ** 2 * gyb ** 2) ** 0.25
    return (sum_x / (levels * 9) + sum_y / (levels * 9)) / 2


@pytest.mark.parametrize("shape", [(1, 3, 8, 8), (1, 3, 13, 10)])
def test_exclusion_loss_matches_hand_computation(shape):
    rng = np.random.default_rng(1)
    a, b = rng.random(shape), rng.random(shape)
    got = exclusion_loss_ref(torch.from_numpy(a), torch.from_numpy(b))
    assert float(got) == pytest.approx(_exclusion_by_hand(a, b), rel=1e-10)


def test_exclusion_loss_known_values():
    # b constant: no gradient, no exclusion
    a = torch.rand(1, 3, 16, 16, dtype=torch.float64)
    assert float(exclusion_loss_ref(a, torch.full_like(a, 0.3))) == 0.0
    # a linear ramp along W in every channel with step s, b the same: only y-terms, each
    # mean(psi(s)^4)^(1/4) = psi(s) at level 0, psi(2s) at level 1, psi(4s) at level 2
    s = 0.1
    ramp = (torch.arange(16, dtype=torch.float64) * s).expand(1, 3, 16, 16).clone()
    psi = lambda g: 2 / (1 + np.exp(-g)) - 1
    expected = (9 * (psi(s) + psi(2 * s) + psi(4 * s)) / 27) / 2
    assert float(exclusion_loss_ref(ramp, ramp)) == pytest.approx(expected, rel=1e-12)


def test_exclusion_loss_batch_is_mean_of_items():
    a, b = torch.rand(3, 3, 12, 12, dtype=torch.float64), torch.rand(3, 3, 12, 12, dtype=torch.float64)
    items = [exclusion_loss_ref(a[i:i + 1], b[i:i + 1]) for i in range(3)]
    assert float(exclusion_loss_ref(a, b)) == pytest.approx(float(sum(items) / 3), rel=1e-12)


def test_blend_loss_reference_values():
    a = torch.tensor([[[[1.0, 0.0]]]])
    b = torch.tensor([[[[0.0, 1.0]]]])
    t = torch.tensor([[[[0.5, 0.5]]]])
    assert float(blend_loss_ref(None, a, b, t, "l1")) == pytest.approx(0.5)  # |1-.5|, |1-.5|
    m = torch.tensor([[[[0.25, 0.25]]]])
    # blend = (0.25, 0.75) -> |.25-.5| = .25 both; mse .0625
    assert float(blend_loss_ref(m, a, b, t, "l1")) == pytest.approx(0.25)
    assert float(blend_loss_ref(torch.tensor(0.25), a, b, t, "mse")) == pytest.approx(0.0625)
    with pytest.raises(ValueError, match="loss must be one of"):
        blend_loss_ref(None, a, b, t, "huber")


def test_masked_l1_is_l1_over_the_mask_area():
    a = torch.zeros(1, 1, 2, 2)
    b = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    m = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]])
    # |m*a - m*b| mean = (1 + 4) / 4; mean |m| = 2 / 4 -> 2.5 = mean of b over the mask
    assert float(masked_l1(a, b, m)) == pytest.approx(2.5)


def test_std_loss_by_hand():
    rng = np.random.default_rng(2)
    x = rng.random((1, 3, 9, 11))
    g = x.mean(axis=1)[0]
    gaps = [(g[i + 2, j + 2] - g[i:i + 5, j:j + 5].mean()) ** 2 for i in range(5) for j in range(7)]
    assert float(std_loss(torch.from_numpy(x))) == pytest.approx(np.mean(gaps), rel=1e-10)
    assert float(std_loss(torch.full((1, 1, 8, 8), 0.7))) == pytest.approx(0.0, abs=1e-12)


def test_gray_loss_and_psnr():
    m = torch.tensor([[0.0, 1.0, 0.25, 0.75]])  # |m - .5| = .5, .5, .25, .25 -> mean .375
    assert float(gray_loss(m)) == pytest.approx(1 / 0.375)
    a = torch.zeros(2, 4)
    est = torch.stack([torch.full((4,), 0.1), torch.full((4,), 0.01)])
    torch.testing.assert_close(psnr(a, est), torch.tensor([20.0, 40.0]))


def test_summed_terms_are_sums_of_each_problems_loss():
    """N independent problems: every term is the sum of the terms of each problem alone."""
    from doubledip.engine.losses import blend_sum, exclusion_sum, l1_sum, mse_sum

    torch.manual_seed(0)
    a, b, t = (torch.rand(3, 3, 16, 12, dtype=torch.float64) for _ in range(3))
    m = torch.rand(3, 1, 16, 12, dtype=torch.float64)
    terms = [
        lambda i: masked_l1(a[i], b[i], m[i]), lambda i: std_loss(a[i]), lambda i: gray_loss(m[i]),
        lambda i: l1_sum(a[i], 0.5), lambda i: mse_sum(a[i], t[i]),
        lambda i: blend_sum(m[i], a[i], b[i], t[i], "l1"), lambda i: exclusion_sum(a[i], b[i]),
    ]
    for term in terms:
        whole = term(slice(None))
        parts = sum(term(slice(i, i + 1)) for i in range(3))
        assert float(whole) == pytest.approx(float(parts), rel=1e-10)
