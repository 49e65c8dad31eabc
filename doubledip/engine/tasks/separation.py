"""Single-image layer separation (ALGORITHM.md 6.1): two DIPs whose outputs add up to the image."""
from __future__ import annotations

import time

import torch

from doubledip.engine.config import LAYER5, SolverConfig
from doubledip.engine.inputs import Augmentations, unaugment
from doubledip.engine.io import load_image
from doubledip.engine.losses import blend_sum, exclusion_sum, psnr
from doubledip.engine.results import SeparationResult, warn_short_run
from doubledip.engine.solver import (RunContext, BestTracker, OutputAverage, Snapshot, Step, run_problem,
                                     split_iterations)
from doubledip.engine.tasks.common import (AVERAGED, BEST_TRACKED, ImageProblem, bench_inputs, described, hwc, item_history, resolve, same_size,
                                           timed_run)
from doubledip.evaluation import metrics
from doubledip.engine.tasks.registry import BenchProblem, Defaults, Evaluation, Input, TaskSpec, register

DEFAULT_ITERATIONS = (8000,)
DEFAULT_LR = 5e-4
# fast mode: twice the paper's lr reaches the same layer PSNR in about 55% of the iterations on
# the texture demo (4x the lr collapses one layer; benchmarks/experiments/README.md)
FAST_LR = 1e-3
# fast mode, once the input-noise ramp has ended (from iteration NOISE_RAMP_END + 1): the lr times
# this. The layers fit faster; 2x gained no more (benchmarks/experiments/README.md, the fast-method
# screen: a higher lr and less input noise after the ramp, averaged layers)
FAST_LR_AFTER_RAMP = 1.5
NOISE_RAMP_END = 1000
# fast mode returns an exponential moving average of the layers of every tracked step (decay per
# tracked step: an average over about 80 iterations) instead of the best-tracked ones: the
# iterations' jitter averages out (same section of benchmarks/experiments/README.md)
FAST_AVERAGE_DECAY = 0.9
# fast mode's input-noise sigma after the ramp (from iteration NOISE_RAMP_END; the paper's: 1/1000):
# the nets fit a less perturbed input faster; 0 was worse (same section of benchmarks/experiments/README.md)
FAST_SIGMA_AFTER_RAMP = 5e-4
EXCLUSION_WEIGHT = 0.01
TRACK_EVERY = 8
# a result whose layers reproduce the image to less than this (PSNR of their sum, dB) is not yet
# a decomposition: the trivial answer (each layer = image / 2) reproduces it exactly. On the
# texture demo the layers pass that trivial answer's layer PSNR only once their sum is past
# about 20.5 dB (benchmarks/experiments/stopping_rules.md)
SHORT_RUN_RECONSTRUCTION_DB = 20.0


def short_run_message(reconstruction_db: float, iterations: int) -> str | None:
    """The warning for layers that reproduce the image to only ``reconstruction_db``, or None."""
    if reconstruction_db >= SHORT_RUN_RECONSTRUCTION_DB:
        return None
    return (f"the layers reproduce the image to only {reconstruction_db:.1f} dB after {iterations} iterations "
            f"(below {SHORT_RUN_RECONSTRUCTION_DB:.0f} dB): they are not yet a decomposition and may be worse "
            f"than the trivial answer (each layer = image / 2); run more iterations")


def noise_sigma(k: int, last: bool, after_ramp: float = 1 / 1000) -> float:
    """Input perturbation: (k // 100) / 1000 ramp over the first 1000 iterations, then
    ``after_ramp`` (the paper's: 1/1000); 0 last."""
    if last:
        return 0.0
    return (k // 100) / 1000 if k < NOISE_RAMP_END else after_ramp


def augmentation_index(k: int, last: bool) -> int:
    """Odd iterations: identity; even: (k // 2) % 8; the last: identity."""
    if last or k % 2:
        return 0
    return (k // 2) % 8


class SeparationProblem(ImageProblem):
    """images: B x 3 x H x W, one independent problem per image. ``fast``: fast mode's method (after
    the input-noise ramp a raised lr and half the input noise; averaged layers as the result)."""

    tracks_best = True

    def __init__(self, images: torch.Tensor, iterations: tuple[int, ...], seeds: list[int], fast: bool = False):
        super().__init__(seeds, images.device, tuple(images.shape[-2:]), [LAYER5])
        self.image = images  # unpadded, for tracking
        self.targets = Augmentations(self.pad(images))
        self.build({"layers": (LAYER5, ["layer_0", "layer_1"])})
        self.inputs = [self.noise_augmented(3), self.noise_augmented(3)]
        self.stage_iterations = iterations
        self.tracker = BestTracker(strict=True)
        # what made the result's layers (weights, perturbed inputs, augmentation): for export
        self.made = Snapshot(self.nets, self.batch)
        self.fast = fast
        self.average = OutputAverage(FAST_AVERAGE_DECAY) if fast else None

    def lr_scale(self, stage: int, k: int) -> float:
        # from the iteration after the ramp's end (the schedule screened in benchmarks/experiments/README.md)
        return FAST_LR_AFTER_RAMP if self.fast and k > NOISE_RAMP_END else 1.0

    def result_layers(self) -> dict:
        """{"layer_0", "layer_1"}: B x 3 x H x W each, the run's result so far (fast mode: the
        averaged layers; reference mode: the best-tracked ones)."""
        return (self.average if self.fast else self.tracker).outputs

    def step(self, stage: int, k: int, last: bool, log: bool = False, ctx: RunContext | None = None) -> Step:
        sigma = noise_sigma(k, last, FAST_SIGMA_AFTER_RAMP) if self.fast else noise_sigma(k, last)
        a = augmentation_index(k, last)
        z0, z1 = self.perturbed(self.inputs[0][a], sigma, k, 0), self.perturbed(self.inputs[1][a], sigma, k, 1)
        y0, y1 = self.generate("layers", [z0, z1], ctx)
        recon = blend_sum(None, y0, y1, self.targets[a], "l1")
        excl = exclusion_sum(y0, y1)
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
                # what made the layers, for export: this step's weights (before the solver's
                # update) and inputs, in the image's orientation (export applies the augmentation);
                # where a new best was taken, or, in fast mode, always: the newest term of the
                # average (no weights output the average: benchmarks/experiments/fast_weight_average.py)
                self.made.update(None if self.fast else self.tracker.took,
                                 {"layer_0": unaugment(z0, a), "layer_1": unaugment(z1, a)}, a)
                if self.average is not None:
                    self.average.update({"layer_0": l0, "layer_1": l1})
        return Step(loss, quality, {"reconstruction": recon, "exclusion": excl})


    def callback_outputs(self) -> dict:
        """The first image's result layers so far, as result fields."""
        best = self.result_layers()
        layers = [best["layer_0"][0], best["layer_1"][0]]
        return {"layers": [hwc(l) for l in layers], "reconstruction": hwc((layers[0] + layers[1]).clamp(0, 1))}


def separate_many(images: list, config: SolverConfig) -> list[SeparationResult]:
    """:func:`separate` for several images of one size in one batched run."""
    dev = config.resolve_device()
    imgs = [load_image(im, f"images[{i}]" if len(images) > 1 else "image", dev) for i, im in enumerate(images)]
    same_size(imgs, [f"images[{i}]" for i in range(len(imgs))])
    stages = split_iterations(config.iterations, SPEC.defaults_for(config.mode).stages)
    seeds = [config.seed + i for i in range(len(imgs))]
    with timed_run(config, sum(stages), "separate") as (reporter, start):
        problem = SeparationProblem(torch.cat(imgs), stages, seeds, fast=config.mode == "fast")
        run_problem(problem, config, config.lr or SPEC.defaults_for(config.mode).lr, reporter)
        best = problem.result_layers()
        seconds = time.perf_counter() - start
        results = []
        for b in range(len(imgs)):
            layers = [best["layer_0"][b], best["layer_1"][b]]
            results.append(SeparationResult(
                task="separate", layers=[hwc(l) for l in layers], reconstruction=hwc((layers[0] + layers[1]).clamp(0, 1)),
                history=item_history(reporter.history, b), seconds=seconds, config=config.replace(seed=seeds[b]),
                fitted=problem.fitted({"layer_0": problem.inputs[0][0], "layer_1": problem.inputs[1][0]}, b,
                                      problem.made)))
        described(results, dev, reporter, image=list(zip(images, imgs)))
        run = reporter.done if reporter.stopped_at is None else reporter.stopped_at + 1
        for b, r in enumerate(results):
            message = short_run_message(float(psnr(imgs[b], (best["layer_0"][b:b + 1] + best["layer_1"][b:b + 1]).clamp(0, 1))), run)
            if message is not None:
                warn_short_run(r, message)
        return results


def separate(image, config: SolverConfig | None = None, *, iterations: int | None = None,
             seed: int | None = None, device: str | None = None, progress: bool | None = None) -> SeparationResult:
    """Split one image into two layers that add up to it (e.g. a reflection and a transmission).

    Returns ``layers`` (2 x H x W x 3, each at about half intensity) and ``reconstruction``.
    Default: 8000 iterations, lr 5e-4 (the paper's); fast mode: lr 1e-3, from iteration 1000 on
    1.5e-3 and half the paper's input noise, and the layers averaged over the last iterations
    instead of the best-tracked ones.
    """
    config = resolve(config, {"image": image}, iterations=iterations, seed=seed, device=device, progress=progress)
    return separate_many([image], config)[0]


# ---- the task's spec -----------------------------------------------------------------------

def export_recombination(names: list[str], result) -> dict:
    """The layers add up to the reconstruction."""
    return {
        "groups": {"layers": ["layer_0", "layer_1"]},
        "recombine": [{"name": "reconstruction", "formula": "clip(layer_0 + layer_1, 0, 1)",
                       "op": "sum", "terms": ["layer_0", "layer_1"], "clip": [0.0, 1.0]}],
        "not_included": [AVERAGED if getattr(getattr(result, "config", None), "mode", None) == "fast" else BEST_TRACKED]}


def bench_problem(size: int, batch: int, device, fast: bool = False) -> BenchProblem:
    images, _ = bench_inputs(size, batch, device)
    return BenchProblem(SeparationProblem(images, DEFAULT_ITERATIONS, list(range(batch)), fast=fast), 0)


def evaluation_cases(suite: str, size: int) -> list:
    from doubledip.evaluation.cases import separate_case

    if suite == "quick":
        return [separate_case(size)]
    return [separate_case(size), separate_case(size, "gravel", "coins"), separate_case(size, "astronaut", "coffee")]


def baselines(case) -> dict:
    """Each layer = mixture / 2."""
    half = case.args[0] / 2
    return {"mixture/2": {"layers": [half, half]}}


SPEC = register(TaskSpec(
    name="separate", cli_name="separate", summary="split one image into two additive layers",
    run=separate, run_many=separate_many, result=SeparationResult,
    inputs=(Input("image", "image", "the mixture: one image, or several of one size (batched)"),),
    defaults={"reference": Defaults(DEFAULT_ITERATIONS, DEFAULT_LR),
              "fast": Defaults(DEFAULT_ITERATIONS, FAST_LR)},
    export=export_recombination, bench=bench_problem,
    evaluation=Evaluation(cases=evaluation_cases, score=metrics.score_separate, baselines=baselines, primary="separation",
                          fields=("layers", "reconstruction"), quick_iterations=600),
))

