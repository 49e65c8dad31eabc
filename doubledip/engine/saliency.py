"""Saliency maps and the segmentation hints made from them (numpy / scipy / torch only).

A saliency map is an ``H x W`` float32 map in [0, 1], high where an object stands out. Methods:

- ``spectral_residual``: Hou & Zhang (CVPR 2007), the log-amplitude spectrum's residual.
- ``global_contrast``: Cheng et al.'s histogram contrast (HC, CVPR 2011): a colour's contrast
  to every other colour of the image in Lab, weighted by their frequencies.
- ``region_contrast``: Cheng et al.'s region contrast (RC): superpixels' colour contrast to the
  other superpixels, weighted by their size and spatial distance.
- ``context_aware``: Goferman et al. (CVPR 2010): a patch is salient when its most similar
  patches are unlike it and far from it, at several scales.
- ``border_contrast``: a background prior: a pixel's distance, in local colour and texture
  statistics, to the image border's (the background touches the border, the object rarely).
- ``combined``: the mean of ``border_contrast`` and ``global_contrast``.
- ``side_contrast``: the same statistics against each side of the border on its own, a pixel's
  second-smallest distance of the four (an object touching one side is still far from three).
- ``refined`` (the default): ``side_contrast`` refined by :func:`two_class_refinement`: the
  hints it gives are samples of two classes in local colour and texture statistics, and each
  pixel scores by how much nearer it lies to the object's samples than to the background's.

:func:`hints_from_saliency` turns a map into sure-foreground and sure-background hints.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

METHODS = ("refined", "combined", "spectral_residual", "global_contrast", "region_contrast", "context_aware",
           "border_contrast", "side_contrast")
DEFAULT_METHOD = "refined"  # the best by IoU on random composites (benchmarks/experiments/segmentation_hints.md)


# ---- shared helpers --------------------------------------------------------------------------

def _image(image) -> np.ndarray:
    """Any image the package loads -> H x W x 3 float64 in [0, 1]."""
    from doubledip.engine.io import to_hwc

    a = to_hwc(image, "image").astype(np.float64)
    return np.repeat(a, 3, axis=2) if a.shape[2] == 1 else a


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB in [0, 1] (... x 3) -> CIE Lab (D65): L in [0, 100], a and b about [-100, 100]."""
    rgb = np.asarray(rgb, np.float64)
    lin = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    m = np.array([[0.412453, 0.357580, 0.180423],
                  [0.212671, 0.715160, 0.072169],
                  [0.019334, 0.119193, 0.950227]])
    xyz = lin @ m.T / np.array([0.950456, 1.0, 1.088754])  # white point normalised
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16 / 116)
    L = np.where(xyz[..., 1] > 0.008856, 116 * f[..., 1] - 16, 903.3 * xyz[..., 1])
    return np.stack([L, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], axis=-1)


def _resize(a: np.ndarray, h: int, w: int, order: int = 1) -> np.ndarray:
    """Resize the first two axes of ``a`` to h x w (spline ``order``; antialiased when shrinking)."""
    fy, fx = h / a.shape[0], w / a.shape[1]
    if fy < 1 or fx < 1:  # low-pass before decimating
        sig = [max(0.0, (1 / f - 1) / 2) for f in (fy, fx)] + [0.0] * (a.ndim - 2)
        a = ndimage.gaussian_filter(a, sig, mode="reflect")
    zoom = [fy, fx] + [1.0] * (a.ndim - 2)
    out = ndimage.zoom(a, zoom, order=order, mode="nearest", grid_mode=True)
    return out[:h, :w]


def _working(rgb: np.ndarray, side: int) -> np.ndarray:
    """The image resized so its long side is at most ``side`` (never enlarged)."""
    h, w = rgb.shape[:2]
    f = min(1.0, side / max(h, w))
    if f == 1.0:
        return rgb
    return _resize(rgb, max(1, round(h * f)), max(1, round(w * f)))


def _normalise(s: np.ndarray) -> np.ndarray:
    s = np.asarray(s, np.float64)
    lo, hi = np.percentile(s, 1), np.percentile(s, 99.5)
    if not hi > lo:
        return np.zeros(s.shape, np.float32)
    return np.clip((s - lo) / (hi - lo), 0, 1).astype(np.float32)


def _back(s: np.ndarray, h: int, w: int) -> np.ndarray:
    """A working-size map back to h x w, normalised to [0, 1]."""
    if s.shape != (h, w):
        s = _resize(s, h, w)
    return _normalise(s)


# ---- the methods -----------------------------------------------------------------------------

def spectral_residual(image, side: int = 64) -> np.ndarray:
    """Hou & Zhang's spectral residual: ``|IFFT(exp(R + iP))|^2``, R the log amplitude minus its
    3 x 3 mean, P the phase, on the grey image at ``side`` px, blurred (sigma 2.5 px there)."""
    rgb = _image(image)
    h, w = rgb.shape[:2]
    g = _working(rgb, side).mean(axis=2)
    F = np.fft.fft2(g)
    log_amp = np.log(np.abs(F) + 1e-9)
    residual = log_amp - ndimage.uniform_filter(log_amp, 3, mode="wrap")
    s = np.abs(np.fft.ifft2(np.exp(residual + 1j * np.angle(F)))) ** 2
    return _back(ndimage.gaussian_filter(s, 2.5 * max(g.shape) / side), h, w)


def _quantised(rgb: np.ndarray, levels: int = 12, coverage: float = 0.95):
    """HC's colour quantisation: ``levels`` per channel; the most frequent colours covering
    ``coverage`` of the pixels are kept and every other colour joins its nearest kept one (in
    Lab). Returns (per-pixel colour index H x W, colours' Lab K x 3, frequencies K)."""
    q = np.minimum((rgb * levels).astype(np.int64), levels - 1)
    code = (q[..., 0] * levels + q[..., 1]) * levels + q[..., 2]
    codes, inverse, counts = np.unique(code.ravel(), return_inverse=True, return_counts=True)
    order = np.argsort(-counts)
    keep = order[: max(1, int(np.searchsorted(np.cumsum(counts[order]) / counts.sum(), coverage)) + 1)]
    centres = np.stack([codes // (levels * levels), (codes // levels) % levels, codes % levels], 1)
    lab = rgb_to_lab((centres + 0.5) / levels)
    d = ((lab[:, None] - lab[keep][None]) ** 2).sum(-1)
    to_kept = np.argmin(d, axis=1)  # kept colours map to themselves (distance 0)
    idx = to_kept[inverse].reshape(code.shape)
    freq = np.bincount(idx.ravel(), minlength=len(keep)).astype(np.float64)
    return idx, lab[keep], freq / freq.sum()


def global_contrast(image, side: int = 128) -> np.ndarray:
    """Cheng et al.'s histogram contrast: ``S(c) = sum_j f_j ||c - c_j||`` over the quantised
    colours (Lab), smoothed over each colour's nearest quarter of the colours."""
    rgb = _image(image)
    h, w = rgb.shape[:2]
    idx, lab, freq = _quantised(_working(rgb, side))
    d = np.sqrt(((lab[:, None] - lab[None]) ** 2).sum(-1))  # K x K
    s = d @ freq
    # colour-space smoothing: each colour's saliency as a distance-weighted mean over its m
    # nearest colours, weights (T - d) with T their summed distance (Cheng et al., eq. 4)
    m = max(1, len(lab) // 4)
    near = np.argsort(d, axis=1)[:, :m]
    dn = np.take_along_axis(d, near, 1)
    wgt = dn.sum(1, keepdims=True) - dn
    wgt = np.where(wgt.sum(1, keepdims=True) > 0, wgt, 1.0)
    s = (wgt * s[near]).sum(1) / wgt.sum(1)
    return _back(s[idx], h, w)


def superpixels(lab: np.ndarray, count: int = 200, compactness: float = 10.0, steps: int = 10) -> np.ndarray:
    """SLIC superpixels (Achanta et al. 2012) of an H x W x 3 Lab image: k-means on (Lab, x, y)
    with every centre searching a window of twice the grid step. Returns H x W int labels
    0..K-1 (K <= about ``count``; each label one connected region)."""
    import torch

    h, w = lab.shape[:2]
    step = max(2, int(round(np.sqrt(h * w / count))))
    ys, xs = np.meshgrid(np.arange(step // 2, h, step), np.arange(step // 2, w, step), indexing="ij")
    pix = torch.from_numpy(lab.reshape(-1, 3)).double()
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    pos = torch.stack([yy.ravel(), xx.ravel()], 1)
    cy, cx = torch.from_numpy(ys.ravel()).long(), torch.from_numpy(xs.ravel()).long()
    c_lab = pix[cy * w + cx].clone()
    c_pos = torch.stack([cy, cx], 1).double()
    scale = (compactness / step) ** 2
    labels = torch.zeros(h * w, dtype=torch.long)
    for _ in range(steps):
        # distance to every centre, infinite outside its 2 step x 2 step window
        dpos = ((pos[:, None] - c_pos[None]) ** 2)
        near = (dpos[..., 0] <= step ** 2) & (dpos[..., 1] <= step ** 2)
        d = ((pix[:, None] - c_lab[None]) ** 2).sum(-1) + scale * dpos.sum(-1)
        d = torch.where(near, d, torch.full_like(d, float("inf")))
        labels = d.argmin(1)
        k = c_lab.shape[0]
        n = torch.bincount(labels, minlength=k).double().clamp(min=1)[:, None]
        c_lab = torch.zeros_like(c_lab).index_add_(0, labels, pix) / n
        c_pos = torch.zeros_like(c_pos).index_add_(0, labels, pos) / n
    lab_map = labels.reshape(h, w).numpy()
    # each label's pieces: connected components; small ones join a neighbour (a 3 x 3 mode)
    out = np.zeros((h, w), np.int64)
    nxt = 0
    for k in np.unique(lab_map):
        comp, n = ndimage.label(lab_map == k)
        out[comp > 0] = comp[comp > 0] + nxt - 1
        nxt += n
    sizes = np.bincount(out.ravel())
    small = sizes[out] < max(1, step * step // 4)
    if small.any():
        # small pieces take the label of the nearest pixel outside them
        _, (iy, ix) = ndimage.distance_transform_edt(small, return_indices=True)
        out = out[iy, ix]
    _, out = np.unique(out, return_inverse=True)
    return out.reshape(h, w)


def region_contrast(image, side: int = 96, count: int = 150, sigma_s: float = 0.4) -> np.ndarray:
    """Cheng et al.'s region contrast: ``S(r_k) = sum_i exp(-D_s(k, i) / sigma_s^2) n_i D_r(k, i)``
    over SLIC superpixels, ``D_r`` the distance of their colour histograms (quantised colours,
    Lab distances), ``D_s`` the squared distance of their centroids (coordinates in [0, 1]),
    ``n_i`` their pixel counts."""
    rgb = _working(_image(image), side)
    h0, w0 = _image(image).shape[:2]
    h, w = rgb.shape[:2]
    idx, lab_c, _ = _quantised(rgb)
    regions = superpixels(rgb_to_lab(rgb), count)
    R, K = regions.max() + 1, len(lab_c)
    hist = np.zeros((R, K))
    np.add.at(hist, (regions.ravel(), idx.ravel()), 1.0)
    n = hist.sum(1)
    hist /= n[:, None]
    dc = np.sqrt(((lab_c[:, None] - lab_c[None]) ** 2).sum(-1))
    # D_r(k, i) = sum_a sum_b f_k(a) f_i(b) D(a, b)
    dr = hist @ dc @ hist.T
    yy, xx = np.mgrid[0:h, 0:w]
    cy = np.bincount(regions.ravel(), yy.ravel()) / n / max(h, w)
    cx = np.bincount(regions.ravel(), xx.ravel()) / n / max(h, w)
    ds = (cy[:, None] - cy[None]) ** 2 + (cx[:, None] - cx[None]) ** 2
    s = (np.exp(-ds / sigma_s ** 2) * n[None] * dr).sum(1)
    return _back(s[regions], h0, w0)


def context_aware(image, side: int = 64, patch: int = 7, k: int = 64, c: float = 3.0,
                  scales=(1.0, 0.8, 0.5)) -> np.ndarray:
    """Goferman et al.'s context-aware saliency: at each scale, patch i's dissimilarity to j is
    ``d_colour / (1 + c d_position)`` (Lab patches; positions in units of the long side), its
    saliency ``1 - exp(-mean of its k smallest dissimilarities)``; the scales averaged, then each
    pixel weighted by its closeness to the most salient pixels (the attended area)."""
    import torch

    rgb = _image(image)
    h0, w0 = rgb.shape[:2]
    lab = rgb_to_lab(_working(rgb, side))
    H, W = lab.shape[:2]
    total = np.zeros((H, W))
    r = patch // 2
    for f in scales:
        hs, ws = max(patch, round(H * f)), max(patch, round(W * f))
        a = torch.from_numpy(_resize(lab, hs, ws)).permute(2, 0, 1)[None]
        a = torch.nn.functional.pad(a, (r, r, r, r), mode="reflect")
        patches = torch.nn.functional.unfold(a, patch)[0].T.float()  # (hs ws) x (3 patch^2)
        dcol = torch.cdist(patches, patches) / np.sqrt(patches.shape[1])
        yy, xx = torch.meshgrid(torch.arange(hs, dtype=torch.float64), torch.arange(ws, dtype=torch.float64),
                                indexing="ij")
        pos = (torch.stack([yy.ravel(), xx.ravel()], 1) / max(hs, ws)).float()
        d = dcol / (1 + c * torch.cdist(pos, pos))
        kk = min(k, d.shape[1] - 1)
        near = torch.topk(d, kk + 1, dim=1, largest=False).values[:, 1:]  # without itself
        s = 1 - torch.exp(-near.mean(1) / 10.0)  # Lab units: /10 keeps exp in range
        total += _resize(s.reshape(hs, ws).double().numpy(), H, W)
    total /= len(scales)
    # attended areas: pixels above 0.8 of the peak; others weighted by 1 - their distance to them
    peak = total >= 0.8 * total.max()
    dist = ndimage.distance_transform_edt(~peak) / max(H, W)
    total = total * (1 - np.clip(dist, 0, 1))
    return _back(total, h0, w0)


def texture_features(rgb: np.ndarray, sigma: float) -> np.ndarray:
    """Per pixel, local statistics over a Gaussian window of ``sigma`` px: Lab mean, the L
    channel's standard deviation, and the mean absolute x and y gradients of L. H x W x 6, each
    feature scaled to unit standard deviation over the image."""
    lab = rgb_to_lab(rgb)
    L = lab[..., 0]
    mean = np.stack([ndimage.gaussian_filter(lab[..., i], sigma) for i in range(3)], -1)
    var = ndimage.gaussian_filter(L ** 2, sigma) - mean[..., 0] ** 2
    gy, gx = np.gradient(L)
    feats = np.concatenate([mean, np.sqrt(np.maximum(var, 0))[..., None],
                            ndimage.gaussian_filter(np.abs(gx), sigma)[..., None],
                            ndimage.gaussian_filter(np.abs(gy), sigma)[..., None]], -1)
    sd = feats.reshape(-1, feats.shape[-1]).std(0)
    return feats / np.where(sd > 1e-9, sd, 1.0)


def _features(image, side: int, window: float = 1 / 32) -> tuple[np.ndarray, tuple[int, int]]:
    """The :func:`texture_features` (window sigma ``window`` of the long side) of ``image`` at its
    working size (long side at most ``side``): h x w x 6 float32, and the image's own (H, W)."""
    rgb = _image(image)
    small = _working(rgb, side)
    f = texture_features(small, max(1.0, max(small.shape[:2]) * window)).astype(np.float32)
    return f, rgb.shape[:2]


def _border_strips(f: np.ndarray, border: float) -> list[np.ndarray]:
    """The outer ``border`` share (of the short side) of each side of ``f`` (h x w x C): top,
    bottom, left, right, each as N x C."""
    h, w, c = f.shape
    b = max(1, int(round(border * min(h, w))))
    return [x.reshape(-1, c) for x in (f[:b], f[-b:], f[:, :b], f[:, -b:])]


def _evenly(x: np.ndarray, n: int) -> np.ndarray:
    """At most ``n`` rows of ``x``, evenly spaced (all of them when there are no more)."""
    if len(x) <= n:
        return x
    return x[np.linspace(0, len(x) - 1, n).astype(np.int64)]


def border_contrast(image, side: int = 128, border: float = 0.06, k: int = 20,
                    max_samples: int = 1024) -> np.ndarray:
    """A background prior: each pixel's mean distance to its ``k`` nearest border pixels in
    :func:`texture_features` (window sigma: 1/32 of the long side), the border being the outer
    ``border`` of each side (at most ``max_samples`` pixels of it, evenly spaced). A side whose
    mean features lie more than twice the median gap from the other sides' (an object touching
    it) is left out of the background's samples."""
    import torch

    f, (h0, w0) = _features(image, side)
    h, w, c = f.shape
    sides = _border_strips(f, border)
    means = np.stack([x.mean(0) for x in sides])
    gap = np.array([np.linalg.norm(means[i] - np.median(np.delete(means, i, 0), 0)) for i in range(4)])
    keep = [x for x, g in zip(sides, gap) if not g > 2 * np.median(gap) + 1e-9] or sides
    samples = _evenly(np.concatenate(keep), max_samples)
    s = _nearest_mean(torch.from_numpy(f.reshape(-1, c)), torch.from_numpy(np.ascontiguousarray(samples)), k)
    return _back(s.reshape(h, w).numpy(), h0, w0)


def side_contrast(image, side: int = 128, border: float = 0.06, k: int = 20, per_side: int = 512) -> np.ndarray:
    """Border contrast against each side of the border on its own: each pixel's mean distance to
    its ``k`` nearest samples of each side (the outer ``border`` of it, at most ``per_side``
    pixels, evenly spaced) in :func:`texture_features`, the second smallest of the four.

    An object touching one side is still far from the other three, where the pooled border of
    :func:`border_contrast` holds its pixels as background; a background region seen on two
    sides stays near both (after Yang et al.'s per-side background queries, CVPR 2013)."""
    import torch

    f, (h0, w0) = _features(image, side)
    h, w, c = f.shape
    pix = torch.from_numpy(f.reshape(-1, c))
    dists = [_nearest_mean(pix, torch.from_numpy(np.ascontiguousarray(_evenly(strip, per_side))), k)
             for strip in _border_strips(f, border)]
    second = torch.sort(torch.stack(dists), dim=0).values[1]
    return _back(second.reshape(h, w).numpy(), h0, w0)


def combined(image) -> np.ndarray:
    """The mean of :func:`border_contrast` (texture and colour against the border) and
    :func:`global_contrast` (colour rarity, smoothed), renormalised: the two cues fail on different
    images (measured: benchmarks/experiments/segmentation_hints.md)."""
    hc = global_contrast(image)
    # HC scores pixels one by one: smoothed over 1/64 of the long side, its speckle goes
    hc = ndimage.gaussian_filter(hc, max(hc.shape) / 64)
    return _normalise(border_contrast(image) + _normalise(hc))


def _nearest_mean(points, samples, k: int):
    """The mean distance of each of ``points`` (N x C tensor) to its ``k`` nearest ``samples``
    (M x C): a tensor of N."""
    import torch

    kk = min(k, samples.shape[0])
    # in chunks of rows: a (points x samples) distance matrix at once would be large
    return torch.cat([torch.topk(torch.cdist(chunk, samples), kk, dim=1, largest=False).values.mean(1)
                      for chunk in points.split(4096)])


# the refinement's statistics window (sigma, a share of the long side): half the border maps'
# 1/32; a pixel is scored by its own neighbourhood, so thin parts (a horse's legs) keep their
# class (benchmarks/experiments/segmentation_hints.md, "A finer window for the refinement")
REFINE_WINDOW = 1 / 64


def two_class_refinement(image, s: np.ndarray, rounds: int = 2, k: int = 20, side: int = 128,
                         max_samples: int = 1024, window: float = REFINE_WINDOW) -> np.ndarray:
    """Refine a saliency map ``s`` (H x W) by the image's own two classes, ``rounds`` times: the
    hints :func:`hints_from_saliency` gives are samples of the object and of the background in
    :func:`texture_features`; a pixel's new score is ``d_bg / (d_bg + d_fg)``, its mean distance
    to its ``k`` nearest background samples over the sum of both (0.5: as near to either).

    A map from the border alone scores the object's pixels against the border's; the object's
    own samples let every pixel be scored against both, which recovers object parts that look
    unlike the border yet not far from it (measured: segmentation_hints.md). ``window``: the
    statistics' window sigma, a share of the long side. H x W in [0, 1].
    """
    import torch

    f, (h0, w0) = _features(image, side, window)
    h, w = f.shape[:2]
    pix = torch.from_numpy(f.reshape(-1, f.shape[-1]))
    s = _map(s, "saliency")
    if s.shape != (h0, w0):
        raise ValueError(f"saliency map must have the image's size {(h0, w0)}, got shape {s.shape}")
    if s.shape != (h, w):
        s = _resize(s, h, w)

    def samples(hint):  # at most max_samples of the hint's pixels, evenly spaced in raster order
        return pix[torch.from_numpy(_evenly(np.flatnonzero(hint.ravel() > 0.5), max_samples))]

    for _ in range(rounds):
        fg, bg = hints_from_saliency(s)
        d_fg, d_bg = _nearest_mean(pix, samples(fg), k), _nearest_mean(pix, samples(bg), k)
        s = _normalise((d_bg / (d_bg + d_fg + 1e-9)).reshape(h, w).numpy())
    return _back(s, h0, w0)


def refined(image) -> np.ndarray:
    """:func:`side_contrast` refined twice by :func:`two_class_refinement`."""
    return two_class_refinement(image, side_contrast(image))


def saliency(image, method: str = DEFAULT_METHOD) -> np.ndarray:
    """The ``method``'s saliency map of ``image`` (any image the package loads: path, array,
    tensor; H x W [x C]): H x W float32 in [0, 1]."""
    if not isinstance(method, str):
        raise TypeError(f"saliency method must be a str, got {type(method).__name__}")
    if method not in METHODS:
        raise ValueError(f"saliency method must be one of {METHODS}, got {method!r}")
    return globals()[method](image)


def otsu_threshold(x: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of the values of ``x``: the histogram cut maximising the between-class
    variance ``w0 w1 (m0 - m1)^2``; values above it are the upper class."""
    x = np.asarray(x, np.float64).ravel()
    lo, hi = float(x.min()), float(x.max())
    if not hi > lo:
        return lo
    counts, edges = np.histogram(x, bins, (lo, hi))
    mids = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(counts)[:-1].astype(np.float64)
    w1 = counts.sum() - w0
    s0 = np.cumsum(counts * mids)[:-1]
    m0 = s0 / np.maximum(w0, 1)
    m1 = (np.sum(counts * mids) - s0) / np.maximum(w1, 1)
    return float(edges[1:-1][np.argmax(w0 * w1 * (m0 - m1) ** 2)])


def threshold_mask(s: np.ndarray) -> np.ndarray:
    """A saliency map (H x W) thresholded alone: 1 above its Otsu threshold (float32)."""
    s = _map(s, "saliency")
    return (s > otsu_threshold(s)).astype(np.float32)


def _map(s, name: str) -> np.ndarray:
    if not isinstance(s, np.ndarray):
        raise TypeError(f"{name} must be an H x W numpy array, got {type(s).__name__}")
    if s.ndim != 2 or min(s.shape) < 1:
        raise ValueError(f"{name} must be an H x W map, got shape {s.shape}")
    s = s.astype(np.float64)
    if not np.isfinite(s).all():
        raise ValueError(f"{name} must be finite, got NaN or infinite values")
    return s


def hints_from_saliency(s: np.ndarray, margin: float = 1 / 16) -> tuple[np.ndarray, np.ndarray]:
    """Sure-foreground and sure-background hints from a saliency map, as the paper's hints are:
    small confident regions, the boundary left to the fit.

    s: H x W. The map above its Otsu threshold is the rough object. fg: its most salient
    connected region (largest summed saliency) eroded by ``margin`` of the short side (less
    where that would erase it); bg: the complement of the rough object's salient regions (each
    with at least a tenth of the main one's summed saliency) dilated by as much. Returns (fg, bg): H x W float32 in {0, 1}, disjoint, neither empty. A flat map gives
    a centre prior (the middle third is fg, the outer sixth bg).
    """
    s = _map(s, "saliency")
    h, w = s.shape
    r = max(1.0, margin * min(h, w))
    if not s.max() - s.min() > 1e-6:
        yy, xx = np.mgrid[0:h, 0:w]
        dy, dx = np.abs(yy - (h - 1) / 2) / h, np.abs(xx - (w - 1) / 2) / w
        fg, bg = (dy < 1 / 6) & (dx < 1 / 6), (dy > 1 / 3) | (dx > 1 / 3)
    else:
        rough = s > otsu_threshold(s)
        comp, n = ndimage.label(rough)
        mass = ndimage.sum(s, comp, index=np.arange(1, n + 1))
        main = comp == 1 + int(np.argmax(mass))
        # specks (regions under a tenth of the main one's summed saliency) are noise: not kept
        # out of the background
        rough = np.isin(comp, 1 + np.flatnonzero(mass >= 0.1 * mass.max()))
        # erosion / dilation by r: the Euclidean distance to the region's outside / inside
        inside = ndimage.distance_transform_edt(main)
        fg = inside > r
        if not fg.any():  # a thin region: its most interior pixels
            fg = inside >= max(1.0, inside.max() / 2)
        bg = ndimage.distance_transform_edt(~rough) > r
        if not bg.any():  # the rough object fills the image: its least salient twentieth
            bg = s <= np.percentile(s, 5)
    bg &= ~fg
    if not fg.any():
        fg = np.zeros((h, w), bool)
        fg.flat[np.argmax(s)] = True
        bg &= ~fg
    if not bg.any():
        order = np.argsort(s, axis=None)
        bg.flat[next(i for i in order if not fg.flat[i])] = True
    return fg.astype(np.float32), bg.astype(np.float32)
