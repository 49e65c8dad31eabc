"""Single-image layer separation (ALGORITHM.md 6.1): two DIPs whose outputs add up to the image."""
from __future__ import annotations

import time

import torch

from doubledip.engine.config import LAYER5, SolverConfig
from doubledip.engine.inputs import Augmentations, unaugment
from doubledip.engine.io import load_image
from doubledip.engine.losses import blend_sum, exclusion_sum, psnr
from doubledip.engine.results import SeparationResult, warn_short_run
from doubledip.engine.solver import (RunContext, BestTracker, OutputAverage, SettleRule, Snapshot, Step, derive_seed,
                                     run_problem, split_iterations)
from doubledip.engine.tasks.common import (AVERAGED, BEST_TRACKED, ImageProblem, bench_inputs, described, hwc, item_history, resolve, same_size,
                                           timed_run)
from doubledip.evaluation import metrics
from doubledip.engine.tasks.registry import BenchProblem, Defaults, Evaluation, Input, TaskSpec, register

DEFAULT_ITERATIONS = (8000,)
DEFAULT_LR = 5e-4
# fast mode's default iteration cap: about 500 s at 256 x 256 on one thread of the dev machine's
# Xeon; the layer PSNR of seeds 0-4 on the texture demo peaks between 2450 and 3500 iterations, and
# a cap of 2800 lands within 0.2 dB of each successful seed's peak (benchmarks/experiments/stopping_rules.md)
FAST_ITERATIONS = (2800,)
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
# fast mode's stopping rule: every SETTLE_EVERY iterations the mean absolute change of the result
# layers since the last check, over the mixture's mean intensity; the run stops once the mean of
# the last SETTLE_WINDOW checks is below SETTLE_BELOW, from SETTLE_START on. The layers settle
# near their peak while the reconstruction keeps rising (which is why a plateau of the
# reconstruction PSNR never fired: benchmarks/experiments/stopping_rules.md)
SETTLE_EVERY = 50
SETTLE_WINDOW = 3
SETTLE_BELOW = 0.005
SETTLE_START = 1500
# fast mode's restart: at the end of the input-noise ramp (iteration COLLAPSE_AT) a run whose
# flatter layer's spatial standard deviation is under COLLAPSE_RATIO of the other's has collapsed
# (one generator took the whole image, the other went flat; on the texture demo 2 seeds in 5 did,
# and their layers then never got past the trivial answer). It starts again from a seed derived
# from its own, at most MAX_RESTARTS times. A coarse test: one seed of the five that recovered
# on its own was as flat there and is restarted too; with the restarts the five seeds' mean rose
# from 20.7 to 22.5 dB and the worst from 16.6 to 20.3 (benchmarks/experiments/stopping_rules.md)
COLLAPSE_AT = NOISE_RAMP_END
COLLAPSE_RATIO = 0.17
MAX_RESTARTS = 2
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

    SETTLED = (f"settled: the layers changed by less than {SETTLE_BELOW:g} of the image's mean "
               f"per {SETTLE_EVERY} iterations (mean of the last {SETTLE_WINDOW} checks)")
    COLLAPSED = (f"collapsed: at iteration {COLLAPSE_AT} one layer was flat (its spatial deviation under "
                 f"{COLLAPSE_RATIO:g} of the other's)")

    def __init__(self, images: torch.Tensor, iterations: tuple[int, ...], seeds: list[int], fast: bool = False,
                 settle: bool = False, collapse_check: bool = False):
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
        # fast mode's stopping rule (``settle``: on when the run stops early): per image, the
        # averaged layers at the last check, the last SETTLE_WINDOW changes, and whether it has
        # settled; a settled image's average is frozen, so in a batch each image's result is the
        # one a run of its own would return, however long the others go on
        self.settle = settle and fast
        # scale: (B,), the mixture's mean intensity
        self.settle_rule = SettleRule(images.mean(dim=(1, 2, 3)).clamp_min(1e-3), SETTLE_WINDOW, SETTLE_BELOW,
                                      SETTLE_START)
        self.stopped = torch.zeros(self.batch, dtype=torch.bool, device=images.device)
        # fast mode's collapse test (``collapse_check``; the caller restarts the collapsed images)
        self.collapse_check = collapse_check and self.settle
        self.collapsed = torch.zeros(self.batch, dtype=torch.bool, device=images.device)

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
                frozen = self.stopped if self.settle else None
                self.made.update(self.tracker.took if not self.fast else None if frozen is None else ~frozen,
                                 {"layer_0": unaugment(z0, a), "layer_1": unaugment(z1, a)}, a)
                if self.average is not None and frozen is None:  # (a video's frame store takes no mask)
                    self.average.update({"layer_0": l0, "layer_1": l1})
                elif self.average is not None:
                    self.average.update({"layer_0": l0, "layer_1": l1}, frozen)
        terms = {"reconstruction": recon, "exclusion": excl}
        if self.settle:
            if (k + 1) % SETTLE_EVERY == 0:
                self._check_settled(k + 1)
            if self.collapse_check and k + 1 == COLLAPSE_AT:
                self._check_collapsed()
            if log or last:  # (B,): the rule's signal, in the history (terms are read at logged steps only)
                terms["layer_change"] = self.settle_rule.signal
        return Step(loss, quality, terms)

    def _check_settled(self, done: int) -> None:
        """The stopping rule's check after ``done`` iterations (on the device: no host read)."""
        self.stopped = self.stopped | self.settle_rule.check(self.average.outputs, done)

    def _check_collapsed(self) -> None:
        """Per image: is one averaged layer flat beside the other? (On the device.)"""
        spread = torch.stack([v.std(dim=(2, 3)).mean(dim=1) for v in self.average.outputs.values()])  # 2 x B
        self.collapsed = spread.min(dim=0).values < COLLAPSE_RATIO * spread.max(dim=0).values
        # a collapsed image's run is over: its result is the restart's
        self.stopped = self.stopped | self.collapsed

    @property
    def requested_stop_reason(self) -> str:
        return self.COLLAPSED if bool(self.collapsed.all()) else self.SETTLED

    def stop_requested(self, stage: int):
        return self.stopped.all() if self.settle else None

    def stopping_rule(self):
        # fast mode's rule is the layers' settling (stop_requested); the reconstruction's plateau
        # comes after the layers' peak (benchmarks/experiments/stopping_rules.md). Reference mode
        # with early_stop=True keeps the plateau of the reconstruction PSNR
        return None if self.settle else super().stopping_rule()


    def callback_outputs(self) -> dict:
        """The first image's result layers so far, as result fields."""
        best = self.result_layers()
        layers = [best["layer_0"][0], best["layer_1"][0]]
        return {"layers": [hwc(l) for l in layers], "reconstruction": hwc((layers[0] + layers[1]).clamp(0, 1))}


def separate_many(images: list, config: SolverConfig) -> list[SeparationResult]:
    """:func:`separate` for several images of one size in one batched run (fast mode: collapsed
    images run again, together, from derived seeds)."""
    dev = config.resolve_device()
    imgs = [load_image(im, f"images[{i}]" if len(images) > 1 else "image", dev) for i, im in enumerate(images)]
    same_size(imgs, [f"images[{i}]" for i in range(len(imgs))])
    stages = split_iterations(config.iterations, SPEC.defaults_for(config.mode).stages)
    seeds = [config.seed + i for i in range(len(imgs))]
    fast = config.mode == "fast"
    lr = config.lr or SPEC.defaults_for(config.mode).lr
    # per image: (problem, its index there, first history record, attempts made)
    final: dict[int, tuple] = {}
    parts = []  # per attempt: (first history record, last + 1, the images it ran)
    todo, attempt = list(range(len(imgs))), 0
    with timed_run(config, sum(stages), "separate") as (reporter, start):
        while todo:
            check = fast and config.stops_early and attempt < MAX_RESTARTS and sum(stages) > COLLAPSE_AT
            problem = SeparationProblem(torch.cat([imgs[i] for i in todo]), stages,
                                        [restart_seed(seeds[i], attempt) for i in todo], fast=fast,
                                        settle=config.stops_early, collapse_check=check)
            if attempt:  # the bar grows by the new attempt; the run's stop is the new attempt's
                reporter.extend(sum(stages))
                reporter.stopped("iterations", None)
            first_record = len(reporter.history)
            run_problem(problem, config, lr, reporter, extra={"attempt": attempt} if attempt else None,
                        first_iteration=reporter.done)
            parts.append((first_record, len(reporter.history), list(todo)))
            collapsed = problem.collapsed.tolist()
            for b, i in enumerate(todo):
                if not collapsed[b]:
                    final[i] = (problem, b, attempt)
            todo, attempt = [i for b, i in enumerate(todo) if collapsed[b]], attempt + 1
        seconds = time.perf_counter() - start
        results = []
        for i in range(len(imgs)):
            problem, b, restarts = final[i]
            best = problem.result_layers()
            layers = [best["layer_0"][b], best["layer_1"][b]]
            history = [rec for lo, hi, ran in parts if i in ran
                       for rec in item_history(reporter.history[lo:hi], ran.index(i))]
            results.append(SeparationResult(
                task="separate", layers=[hwc(l) for l in layers], reconstruction=hwc((layers[0] + layers[1]).clamp(0, 1)),
                history=history, seconds=seconds, config=config.replace(seed=seeds[i]), restarts=restarts,
                fitted=problem.fitted({"layer_0": problem.inputs[0][0], "layer_1": problem.inputs[1][0]}, b,
                                      problem.made)))
        described(results, dev, reporter, image=list(zip(images, imgs)))
        run = reporter.done if reporter.stopped_at is None else reporter.stopped_at + 1
        for i, r in enumerate(results):
            message = short_run_message(float(psnr(imgs[i], torch.from_numpy(r.reconstruction).to(dev).permute(2, 0, 1)[None])), run)
            if message is not None:
                warn_short_run(r, message)
        return results


def restart_seed(seed: int, attempt: int) -> int:
    """The seed of an image's ``attempt``-th run: its own first, then ones derived from it."""
    return seed if attempt == 0 else derive_seed(seed, 0x5EED, attempt) % (2 ** 31)


def separate(image, config: SolverConfig | None = None, *, iterations: int | None = None,
             seed: int | None = None, device: str | None = None, progress: bool | None = None) -> SeparationResult:
    """Split one image into two layers that add up to it (e.g. a reflection and a transmission).

    Returns ``layers`` (2 x H x W x 3, each at about half intensity) and ``reconstruction``.
    Default: 8000 iterations, lr 5e-4 (the paper's). Fast mode: lr 1e-3, from iteration 1000 on
    1.5e-3 and half the paper's input noise, the layers averaged over the last iterations instead
    of the best-tracked ones, at most 2800 iterations, ending once the layers have settled
    (``SETTLE_*``), and a restart from a derived seed when a layer has collapsed at iteration
    1000 (``COLLAPSE_*``; ``result.restarts``). ``result.stop_reason`` says why the run ended;
    ``result.warnings`` holds a :class:`doubledip.ShortRunWarning`'s message when the layers do
    not reproduce the image yet.
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
              "fast": Defaults(FAST_ITERATIONS, FAST_LR)},
    export=export_recombination, bench=bench_problem,
    evaluation=Evaluation(cases=evaluation_cases, score=metrics.score_separate, baselines=baselines, primary="separation",
                          fields=("layers", "reconstruction"), quick_iterations=600),
))

