"""Airlight estimators for the dark channel prior, on hazed images with known airlight
(issue 16: what stands between fast dehazing and the prior + 0.5 dB).

    OMP_NUM_THREADS=1 python benchmarks/experiments/airlight_estimators.py [--size 256]

Eight images that scikit-image ships, each hazed as ``I = t J + (1 - t) A`` through four
smooth depth maps (the suite's top-to-bottom transmission, its transpose and flip, a radial
one) and three pale airlights: 96 cases. Per estimator, the dark channel prior
(``doubledip.engine.post.dcp_dehaze``) run with that estimator's airlight; PSNR of J against
the clear image, and its difference from the package's estimate (He et al.'s: the per-channel
maximum over the top 0.01% of the dark channel). ``true`` is the prior given the true airlight:
the most a better estimate could give this transmission.
"""
from __future__ import annotations

import argparse
import itertools

import numpy as np
import torch

IMAGES = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "retina", "coins", "camera")
AIRLIGHTS = ((0.82, 0.85, 0.9), (0.9, 0.9, 0.88), (0.75, 0.78, 0.8))


def depth_maps(size: int):
    from doubledip.evaluation.cases import depth_transmission

    top = depth_transmission(size)
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1)
    radial = (0.9 - 0.6 * np.sqrt((yy - 0.5) ** 2 + (xx - 0.5) ** 2) / 0.71).astype(np.float32)
    return {"top": top, "left": np.ascontiguousarray(top.T), "radial": radial,
            "bottom": np.ascontiguousarray(top[::-1])}


def _dark_top(x: torch.Tensor, fraction: float) -> torch.Tensor:
    """The pixels (3 x n) of ``x`` (1 x 3 x H x W) at the top ``fraction`` of its dark channel."""
    from doubledip.engine.post import dark_channel

    dark = dark_channel(x, 15).flatten()
    return x.flatten(2)[0][:, torch.topk(dark, max(1, int(dark.numel() * fraction)), sorted=False).indices]


def brightest_of_top(x: torch.Tensor) -> torch.Tensor:
    """He et al. as published: of the top 0.1% dark-channel pixels, the brightest one."""
    p = _dark_top(x, 1e-3)
    return p[:, p.sum(0).argmax()]


def quadtree(x: torch.Tensor, min_side: int = 16) -> torch.Tensor:
    """Kim et al. (2013): descend into the quadrant of highest mean minus std, then the pixel
    nearest white."""
    block = x[0]
    while min(block.shape[1:]) > min_side:
        h, w = block.shape[1] // 2, block.shape[2] // 2
        quads = [block[:, :h, :w], block[:, :h, w:], block[:, h:, :w], block[:, h:, w:]]
        block = quads[int(np.argmax([float(q.mean() - q.std()) for q in quads]))]
    p = block.flatten(1)
    return p[:, ((1 - p) ** 2).sum(0).argmin()]


ESTIMATORS = {
    "package (max over top 0.01%)": lambda x: _dark_top(x, 1e-4).amax(1),
    "brightest of top 0.1%": brightest_of_top,
    "mean of top 0.1%": lambda x: _dark_top(x, 1e-3).mean(1),
    "median of top 0.1%": lambda x: _dark_top(x, 1e-3).median(1).values,
    "mean of top 1%": lambda x: _dark_top(x, 1e-2).mean(1),
    "quadtree": quadtree,
}


def main(argv=None) -> int:
    from doubledip.engine.post import dcp_dehaze
    from doubledip.evaluation.cases import load_sample
    from doubledip.evaluation.metrics import psnr

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=256)
    args = p.parse_args(argv)
    scores = {name: [] for name in [*ESTIMATORS, "true"]}
    for image, (_, t), airlight in itertools.product(IMAGES, depth_maps(args.size).items(), AIRLIGHTS):
        clear, a = load_sample(image, args.size), np.asarray(airlight, np.float32)
        hazy = t[..., None] * clear + (1 - t[..., None]) * a
        x = torch.from_numpy(np.ascontiguousarray(hazy.transpose(2, 0, 1), dtype=np.float32))[None]
        for name, estimate in [*ESTIMATORS.items(), ("true", lambda x: torch.from_numpy(a))]:
            dehazed, _, _ = dcp_dehaze(x, airlight=estimate(x))
            scores[name].append(psnr(dehazed[0].permute(1, 2, 0).numpy(), clear))
    base = np.array(scores["package (max over top 0.01%)"])
    per = len(scores["true"]) // len(IMAGES)
    print("| airlight | mean dB | minus the package's: mean, worst | share of cases not below | per image (mean gain) |")
    print("|---|---|---|---|---|")
    for name, v in scores.items():
        v = np.asarray(v)
        d = v - base
        per_image = ", ".join(f"{im} {d[i * per:(i + 1) * per].mean():+.2f}" for i, im in enumerate(IMAGES))
        print(f"| {name} | {v.mean():.2f} | {d.mean():+.2f}, {d.min():+.2f} | {(d >= 0).mean():.2f} | {per_image} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
