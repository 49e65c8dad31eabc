"""Two-image separation (ALGORITHM.md 6.2): two mixtures of the same two layers, unknown weights."""
from __future__ import annotations

import time

import numpy as np
import torch

from doubledip.engine.config import LAYER5, UNetConfig, SolverConfig
from doubledip.engine.io import load_image
from doubledip.engine.losses import blend_loss, exclusion_loss, psnr
from doubledip.engine.results import PairSeparationResult
from doubledip.engine.solver import BestTracker, Step, run_problem, split_iterations
from doubledip.engine.tasks.common import ImageProblem, hwc, resolve, timed_run

DEFAULT_ITERATIONS = (4000,)
DEFAULT_LR = 1e-3
EXCLUSION_WEIGHT = 0.1
ALPHA_PRIOR_ITERATIONS = 1000  # the pull of both weights toward 0.5 lasts this long
LAYER = UNetConfig(2, 3, LAYER5.channels, LAYER5.skip_channels, 5)
ALPHA = UNetConfig(2, 1, LAYER5.channels, LAYER5.skip_channels, 5)


class PairProblem(ImageProblem):
    def __init__(self, image1: torch.Tensor, image2: torch.Tensor, iterations: tuple[int, ...], seed: int):
        super().__init__(seed, image1.device, tuple(image1.shape[-2:]), [LAYER])
        self.images = (image1, image2)
        self.targets = (self.pad(image1), self.pad(image2))
        self.nets = self.build({"layer_0": LAYER, "layer_1": LAYER, "alpha_0": ALPHA, "alpha_1": ALPHA})
        self.inputs = {name: self.noise(2) for name in ("layer_0", "layer_1", "alpha_0", "alpha_1")}
        self.stage_iterations = iterations
        self.tracker = BestTracker(strict=True)

    def alpha(self, name: str) -> torch.Tensor:
        """``0.9 * A(z)[centre pixel] + 0.05`` as a 1 x 1 x 1 x 1 tensor. (The reference runs a whole
        U-Net at full resolution for this one number; reference mode keeps that.)"""
        h, w = self.padded
        out = self.nets[name](self.inputs[name])
        return out[:, :, h // 2:h // 2 + 1, w // 2:w // 2 + 1] * 0.9 + 0.05

    def step(self, stage: int, k: int, last: bool, log: bool = False) -> Step:
        y0 = self.nets["layer_0"](self.inputs["layer_0"])  # no perturbation in this task
        y1 = self.nets["layer_1"](self.inputs["layer_1"])
        a0, a1 = self.alpha("alpha_0"), self.alpha("alpha_1")
        recon = blend_loss(a0, y0, y1, self.targets[0], "mse") + blend_loss(a1, y0, y1, self.targets[1], "mse")
        excl = exclusion_loss(y0, y1)
        loss = recon + EXCLUSION_WEIGHT * excl
        if k < ALPHA_PRIOR_ITERATIONS:
            loss = loss + 0.5 * (a0 - 0.5).pow(2).mean() + 0.5 * (a1 - 0.5).pow(2).mean()
        # tracked every iteration by the PSNR of the first mixture's reconstruction
        l0, l1 = self.crop(y0.detach()).clamp(0, 1), self.crop(y1.detach()).clamp(0, 1)
        c0, c1 = a0.detach().clamp(0, 1), a1.detach().clamp(0, 1)
        quality = psnr(self.images[0], c0 * l0 + (1 - c0) * l1)
        self.tracker.update(quality, {"layer_0": l0, "layer_1": l1, "alphas": torch.cat([c0.flatten(), c1.flatten()])})
        return Step(loss, quality, {"reconstruction": recon, "exclusion": excl})


def separate_pair(image1, image2, config: SolverConfig | None = None, *, iterations: int | None = None,
                  seed: int | None = None, device: str | None = None,
                  progress: bool | None = None) -> PairSeparationResult:
    """Recover two layers from two mixtures ``I_k = alpha_k * L0 + (1 - alpha_k) * L1``.

    Returns ``layers`` (2 x H x W x 3) and ``alphas`` (2,). Default 4000 iterations, lr 1e-3.
    """
    config = resolve(config, iterations=iterations, seed=seed, device=device, progress=progress)
    dev = config.resolve_device()
    img1 = load_image(image1, "image1", dev)
    img2 = load_image(image2, "image2", dev)
    if img1.shape != img2.shape:
        raise ValueError(f"image1 and image2 must have one size, got {tuple(img1.shape[-2:])} "
                         f"and {tuple(img2.shape[-2:])} (H x W)")
    stages = split_iterations(config.iterations, DEFAULT_ITERATIONS)
    with timed_run(config, sum(stages), "separate-pair") as (reporter, start):
        problem = PairProblem(img1, img2, stages, config.seed)
        run_problem(problem, config, config.lr or DEFAULT_LR, reporter)
        best = problem.tracker.outputs
        return PairSeparationResult(
            task="separate_pair", layers=[hwc(best["layer_0"]), hwc(best["layer_1"])],
            alphas=best["alphas"].cpu().numpy().astype(np.float32),
            history=reporter.history, seconds=time.perf_counter() - start, config=config,
            fitted=problem.fitted(problem.inputs))
