"""Dehazing (ALGORITHM.md 6.4): ``I = t * J + (1 - t) * A`` with DIPs for J and t (and A)."""
from __future__ import annotations

import time
from typing import Optional

import numpy as np
import torch

from doubledip.engine.config import DEHAZE, SolverConfig, UNetConfig
from doubledip.engine.inputs import meshgrid_input
from doubledip.engine.io import load_image
from doubledip.engine.losses import blend_loss, psnr, std_loss
from doubledip.engine.post import estimate_airlight, guided_filter, resize
from doubledip.engine.results import DehazeResult
from doubledip.engine.solver import BestTracker, Step, run_problem, split_iterations
from doubledip.engine.tasks.common import ImageProblem, hwc, resolve, timed_run

PASS_ITERATIONS = 4000
DEFAULT_LR = 1e-3
INPUT_VAR = 1 / 10
SIGMA = 1 / 30  # image and ambient inputs; the transmission net's input is never perturbed
STD_T, STD_A = 0.005, 0.1
AIRLIGHT_PRIOR_ITERATIONS = 1000
TRACK_EVERY = 8
MAX_SIDE = 800
TRANSMISSION = UNetConfig(8, 1, DEHAZE.channels, DEHAZE.skip_channels, 3)


def working_size(h: int, w: int) -> tuple[int, int]:
    """Size the optimisation runs at: while a side is >= 800 px, try f = 1, 2, ...: size / f with
    each side rounded down to a multiple of 32 (the reference's rule)."""
    size, f = (h, w), 1
    while size[0] >= MAX_SIDE or size[1] >= MAX_SIDE:
        size = (int(h / f) - int(h / f) % 32, int(w / f) - int(w / f) % 32)
        f += 1
    return size


class DehazeProblem(ImageProblem):
    def __init__(self, image, airlight0, learn_airlight, iterations, seed):
        super().__init__(seed, image.device, tuple(image.shape[-2:]), [DEHAZE])
        self.image = image  # working-size image, 1 x 3 x h x w
        self.target = self.pad(image)
        self.learn = learn_airlight
        self.airlight0 = airlight0.reshape(1, 3, 1, 1)
        nets = {"image": DEHAZE, "transmission": TRANSMISSION}
        if learn_airlight:
            nets["airlight"] = DEHAZE
        self.nets = self.build(nets)
        self.inputs = {"image": self.noise(8, INPUT_VAR), "transmission": self.noise(8, INPUT_VAR)}
        if learn_airlight:
            self.inputs["airlight"] = meshgrid_input(8, *self.padded, self.device)
        self.stage_iterations = iterations
        self.tracker = BestTracker(strict=True)

    def step(self, stage: int, k: int, last: bool, log: bool = False) -> Step:
        sigma = 0.0 if last else SIGMA
        J = self.nets["image"](self.perturbed(self.inputs["image"], sigma, stage, k, 0))
        t = self.nets["transmission"](self.inputs["transmission"])
        if self.learn:
            A = self.nets["airlight"](self.perturbed(self.inputs["airlight"], sigma, stage, k, 1))
        else:
            A = self.airlight0
        recon = blend_loss(t, J, A.expand_as(J), self.target, "mse")
        loss = recon + STD_T * std_loss(t)
        if self.learn:
            loss = loss + STD_A * std_loss(A)
            if k < AIRLIGHT_PRIOR_ITERATIONS:
                loss = loss + (A - self.airlight0).pow(2).mean()
        quality = None
        if k % TRACK_EVERY == 0 or log:
            Jc, tc = self.crop(J.detach()).clamp(0, 1), self.crop(t.detach()).clamp(0, 1)
            Ac = (self.crop(A.detach()) if self.learn else A.detach()).clamp(0, 1)
            quality = psnr(self.image, tc * Jc + (1 - tc) * Ac)
            if k % TRACK_EVERY == 0:
                self.tracker.update(quality, {"image": Jc, "transmission": tc, "airlight": Ac.expand(1, 3, *Jc.shape[-2:])})
        return Step(loss, quality, {"reconstruction": recon})


def _one_pass(image: torch.Tensor, airlight0: torch.Tensor, learn: bool, iterations: int, config: SolverConfig,
              lr: float, reporter, pass_index: int, first_iteration: int):
    """One dehazing pass on ``image`` (1 x 3 x H x W, full size). Returns (J_final, t, A, problem)."""
    H, W = image.shape[-2:]
    h, w = working_size(H, W)
    small = resize(image, h, w).clamp(0, 1)
    problem = DehazeProblem(small, airlight0, learn, (iterations,), config.seed + 1000003 * pass_index)
    run_problem(problem, config, lr, reporter, extra={"pass": pass_index}, first_iteration=first_iteration)
    best = problem.tracker.outputs
    t = resize(best["transmission"], H, W)
    A = resize(best["airlight"], H, W)
    t = guided_filter(image, t, radius=50, eps=1e-4).clamp(0.1, 1.0)
    J_final = ((image - (1 - t) * A) / t).clamp(0, 1)
    return J_final, t, A, problem


def dehaze(image, config: SolverConfig | None = None, *, airlight=None, learn_airlight: bool = False,
           passes: int = 2, iterations: int | None = None, seed: int | None = None,
           device: str | None = None, progress: bool | None = None) -> DehazeResult:
    """Remove haze: ``I = t * J + (1 - t) * A``.

    airlight: the airlight A as 3 values in [0, 1]; None estimates it with the dark channel prior.
    learn_airlight: learn A (an ambient DIP on a meshgrid input) in the first pass too.
    passes: 2 (the method: the second pass re-dehazes the first's output, learning A) or 1.
    Returns ``image`` (H x W x 3), ``transmission`` (H x W), ``airlight`` (3,; the spatial mean
    when A was learned as a map). Default 4000 iterations per pass, lr 1e-3.
    """
    config = resolve(config, iterations=iterations, seed=seed, device=device, progress=progress)
    if passes not in (1, 2):
        raise ValueError(f"passes must be 1 or 2, got {passes!r}")
    dev = config.resolve_device()
    img = load_image(image, "image", dev)
    if airlight is not None:
        a0 = np.asarray(airlight, dtype=np.float32).reshape(-1)
        if a0.shape != (3,) or not np.isfinite(a0).all() or a0.min() < 0 or a0.max() > 1:
            raise ValueError(f"airlight must be 3 finite values in [0, 1], got {airlight!r}")
        a0 = torch.from_numpy(a0).to(dev)
    else:
        a0 = estimate_airlight(img)
    stages = split_iterations(config.iterations, (PASS_ITERATIONS,) * passes)
    lr = config.lr or DEFAULT_LR
    with timed_run(config, sum(stages), "dehaze") as (reporter, start):
        current, A0 = img, a0
        for p, T in enumerate(stages):
            learn = learn_airlight or p > 0
            J_final, t, A, problem = _one_pass(current, A0, learn, T, config, lr, reporter, p, sum(stages[:p]))
            # the next pass learns A, starting from this pass's airlight (a map: its mean)
            current, A0 = J_final, A.mean(dim=(0, 2, 3))
        return DehazeResult(
            task="dehaze", image=hwc(J_final), transmission=hwc(t),
            airlight=A.mean(dim=(0, 2, 3)).cpu().numpy().astype(np.float32),
            history=reporter.history, seconds=time.perf_counter() - start, config=config,
            fitted=problem.fitted(problem.inputs))
