"""Post-processing against brute-force implementations written out with loops."""
import numpy as np
import pytest
import torch

from doubledip.engine.post import box_mean, dark_channel, estimate_airlight, guided_filter, median_of_runs, resize


def _symmetric_box(x: np.ndarray, r: int) -> np.ndarray:
    p = np.pad(x, r, mode="symmetric")  # OpenCV BORDER_REFLECT: the edge pixel repeated
    return np.array([[p[i:i + 2 * r + 1, j:j + 2 * r + 1].mean() for j in range(x.shape[1])]
                     for i in range(x.shape[0])])


@pytest.mark.parametrize("r", [1, 3, 8])
def test_box_mean_matches_windows(r):
    x = np.random.default_rng(0).random((7, 9))
    np.testing.assert_allclose(box_mean(torch.from_numpy(x), r).numpy(), _symmetric_box(x, r), atol=1e-12)


def _guided_filter_by_hand(I: np.ndarray, p: np.ndarray, r: int, eps: float) -> np.ndarray:
    """He et al. 2010, Algorithm 1 with the colour guide (eq. 14-16), per pixel with numpy."""
    H, W, _ = I.shape
    mean_I = np.stack([_symmetric_box(I[:, :, c], r) for c in range(3)], -1)
    mean_p = _symmetric_box(p, r)
    a = np.zeros((H, W, 3))
    b = np.zeros((H, W))
    corr = {(i, j): _symmetric_box(I[:, :, i] * I[:, :, j], r) for i in range(3) for j in range(3)}
    Ip = [_symmetric_box(I[:, :, c] * p, r) for c in range(3)]
    for y in range(H):
        for x in range(W):
            S = np.array([[corr[i, j][y, x] - mean_I[y, x, i] * mean_I[y, x, j] for j in range(3)] for i in range(3)])
            cov = np.array([Ip[c][y, x] - mean_I[y, x, c] * mean_p[y, x] for c in range(3)])
            a[y, x] = np.linalg.solve(S + eps * np.eye(3), cov)
            b[y, x] = mean_p[y, x] - a[y, x] @ mean_I[y, x]
    mean_a = np.stack([_symmetric_box(a[:, :, c], r) for c in range(3)], -1)
    return (mean_a * I).sum(-1) + _symmetric_box(b, r)


def test_guided_filter_matches_the_papers_algorithm():
    rng = np.random.default_rng(3)
    I = rng.random((9, 11, 3))
    p = rng.random((9, 11))
    got = guided_filter(torch.from_numpy(I).permute(2, 0, 1)[None].float(), torch.from_numpy(p)[None, None].float(),
                        radius=2, eps=1e-2)
    np.testing.assert_allclose(got[0, 0].numpy(), _guided_filter_by_hand(I, p, 2, 1e-2), atol=2e-5)


def test_guided_filter_keeps_edges_of_its_guide_and_takes_large_radius():
    I = torch.zeros(1, 3, 20, 20)
    I[..., 10:] = 1
    p = I[:, :1].clone()
    out = guided_filter(I, p + 0.01 * torch.randn_like(p), radius=50, eps=1e-4)  # radius > image
    assert out.shape == (1, 1, 20, 20)
    assert float((out - p).abs().max()) < 0.05
    with pytest.raises(ValueError, match="sizes differ"):
        guided_filter(I, p[..., :10], 5)


def test_dark_channel_matches_a_loop():
    img = np.random.default_rng(4).random((1, 3, 12, 10)).astype(np.float32)
    w = 5
    padded = np.pad(img[0].transpose(1, 2, 0), ((2, 2), (2, 2), (0, 0)), mode="edge")
    want = np.array([[padded[i:i + w, j:j + w].min() for j in range(10)] for i in range(12)])
    np.testing.assert_array_equal(dark_channel(torch.from_numpy(img), w)[0, 0].numpy(), want)


def test_airlight_is_the_max_over_the_haziest_pixels():
    img = torch.full((1, 3, 40, 40), 0.2)
    img[..., 5:25, 5:25] = torch.tensor([0.9, 0.8, 0.7]).reshape(1, 3, 1, 1)  # a bright, hazy patch
    img[0, 0, 0, 0] = 1.0  # a single bright pixel has a dark neighbourhood: not haze
    torch.testing.assert_close(estimate_airlight(img), torch.tensor([0.9, 0.8, 0.7]))
    with pytest.raises(ValueError):
        estimate_airlight(torch.rand(1, 1, 8, 8))


def test_median_of_runs_and_resize():
    runs = [torch.tensor([1.0, 5.0, 0.0]), torch.tensor([2.0, 4.0, 9.0]), torch.tensor([3.0, 6.0, 1.0])]
    assert median_of_runs(runs).tolist() == [2.0, 5.0, 1.0]
    x = torch.rand(1, 3, 30, 40)
    assert resize(x, 15, 20).shape == (1, 3, 15, 20)
    assert resize(x, 30, 40) is x
