"""Single-image layer separation (ALGORITHM.md 6.1): two DIPs whose outputs add up to the image."""
from __future__ import annotations

import time

import torch

from doubledip.engine.config import LAYER5, SolverConfig
from doubledip.engine.inputs import all_augmentations, unaugment
from doubledip.engine.io import load_image
from doubledip.engine.losses import blend_loss, exclusion_loss, psnr
from doubledip.engine.results import SeparationResult
from doubledip.engine.solver import BestTracker, Step, run_problem, split_iterations
from doubledip.engine.tasks.common import ImageProblem, hwc, resolve, timed_run

DEFAULT_ITERATIONS = (8000,)
DEFAULT_LR = 5e-4
EXCLUSION_WEIGHT = 0.01
TRACK_EVERY = 8


def noise_sigma(k: int, last: bool) -> float:
    """Input perturbation: (k // 100) / 1000 ramp over the first 1000 iterations, then 1/1000; 0 last."""
    if last:
        return 0.0
    return (k // 100) / 1000 if k < 1000 else 1 / 1000


def augmentation_index(k: int, last: bool) -> int:
    """Odd iterations: identity; even: (k // 2) % 8; the last: identity."""
    if last or k % 2:
        return 0
    return (k // 2) % 8


class SeparationProblem(ImageProblem):
    def __init__(self, image: torch.Tensor, iterations: tuple[int, ...], seed: int):
        super().__init__(seed, image.device, tuple(image.shape[-2:]), [LAYER5])
        self.image = image  # 1 x 3 x H x W (unpadded, for tracking)
        self.targets = all_augmentations(self.pad(image))
        self.nets = self.build({"layer_0": LAYER5, "layer_1": LAYER5})
        self.inputs = [self.noise_augmented(3), self.noise_augmented(3)]
        self.stage_iterations = iterations
        self.tracker = BestTracker(strict=True)

    def step(self, stage: int, k: int, last: bool, log: bool = False) -> Step:
        sigma, a = noise_sigma(k, last), augmentation_index(k, last)
        y0 = self.nets["layer_0"](self.perturbed(self.inputs[0][a], sigma, k, 0))
        y1 = self.nets["layer_1"](self.perturbed(self.inputs[1][a], sigma, k, 1))
        recon = blend_loss(None, y0, y1, self.targets[a], "l1")
        excl = exclusion_loss(y0, y1)
        loss = recon + EXCLUSION_WEIGHT * excl
        quality = None
        if last or k % TRACK_EVERY == 0 or log:
            # scored in the image's own orientation (the reference scores augmented outputs
            # against the unflipped image: a bookkeeping bug this engine does not keep)
            l0 = self.crop(unaugment(y0.detach(), a)).clamp(0, 1)
            l1 = self.crop(unaugment(y1.detach(), a)).clamp(0, 1)
            quality = psnr(self.image, l0 + l1)
            if last or k % TRACK_EVERY == 0:
                self.tracker.update(quality, {"layer_0": l0, "layer_1": l1})
        return Step(loss, quality, {"reconstruction": recon, "exclusion": excl})


def separate(image, config: SolverConfig | None = None, *, iterations: int | None = None,
             seed: int | None = None, device: str | None = None, progress: bool | None = None) -> SeparationResult:
    """Split one image into two layers that add up to it (e.g. a reflection and a transmission).

    Returns ``layers`` (2 x H x W x 3, each at about half intensity) and ``reconstruction``.
    Default: 8000 iterations, lr 5e-4 (the paper's).
    """
    config = resolve(config, iterations=iterations, seed=seed, device=device, progress=progress)
    dev = config.resolve_device()
    img = load_image(image, "image", dev)
    stages = split_iterations(config.iterations, DEFAULT_ITERATIONS)
    with timed_run(config, sum(stages), "separate") as (reporter, start):
        problem = SeparationProblem(img, stages, config.seed)
        run_problem(problem, config, config.lr or DEFAULT_LR, reporter)
        best = problem.tracker.outputs
        layers = [best["layer_0"], best["layer_1"]]
        recon = (layers[0] + layers[1]).clamp(0, 1)
        return SeparationResult(
            task="separate", layers=[hwc(l) for l in layers], reconstruction=hwc(recon),
            history=reporter.history, seconds=time.perf_counter() - start, config=config,
            fitted=problem.fitted({"layer_0": problem.inputs[0][0], "layer_1": problem.inputs[1][0]}))
