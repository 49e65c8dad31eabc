"""Two-image separation (ALGORITHM.md 6.2): two mixtures of the same two layers, unknown weights."""
from __future__ import annotations

import time
import warnings

import numpy as np
import torch
from torch import nn

from doubledip.engine.config import LAYER5, UNetConfig, SolverConfig
from doubledip.engine.io import load_image
from doubledip.engine.losses import blend_sum, exclusion_sum, mse_sum, psnr
from doubledip.engine.results import PairSeparationResult
from doubledip.engine.unmixing import NotSeparable, estimate_weights, unmix
from doubledip.engine.solver import RunContext, BestTracker, Snapshot, Step, run_problem, split_iterations
from doubledip.engine.tasks.common import (BEST_TRACKED, ImageProblem, bench_inputs, described, hwc, item_history, resolve, same_size,
                                           timed_run)
from doubledip.engine.tasks.registry import BenchProblem, Defaults, Evaluation, Input, Option, TaskSpec, register
from doubledip.evaluation import metrics

DEFAULT_ITERATIONS = (4000,)
FAST_ITERATIONS = (1800,)  # benchmarks/experiments/suite_fast_vs_reference.md
DEFAULT_LR = 1e-3
EXCLUSION_WEIGHT = 0.1
ALPHA_PRIOR_ITERATIONS = 1000  # the pull of both weights toward 0.5 lasts this long
# fast mode's weights start at 0.5 (no alpha nets to hold there): the pull may end sooner; while
# both weights sit near 0.5 the two mixtures look alike and the layers cannot separate
FAST_ALPHA_PRIOR_ITERATIONS = 250
LAYER = UNetConfig(2, 3, LAYER5.channels, LAYER5.skip_channels, 5)
ALPHA = UNetConfig(2, 1, LAYER5.channels, LAYER5.skip_channels, 5)
# separate_pair(method=...): the Double-DIP fit, or the classic answer (the weights by sparse
# ICA of the mixtures' derivatives, the layers in closed form: doubledip.engine.unmixing).
# Unset: the mode's, "dip" in reference mode (the paper's method), "ica" in fast mode
# (benchmarks/experiments/suite_fast_vs_reference.md, "Two-image separation")
METHODS = ("dip", "ica")


class ScalarAlphas(nn.Module):
    """The two mixing weights of each of B problems as free parameters (logits, B x 2)."""

    def __init__(self, batch: int):
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(batch, 2))


class PairProblem(ImageProblem):
    """image1, image2: B x 3 x H x W, one independent problem per pair."""

    tracks_best = True

    def __init__(self, image1: torch.Tensor, image2: torch.Tensor, iterations: tuple[int, ...], seeds: list[int],
                 scalar_alphas: bool = False):
        super().__init__(seeds, image1.device, tuple(image1.shape[-2:]), [LAYER])
        self.images = (image1, image2)
        self.targets = (self.pad(image1), self.pad(image2))
        self.scalar_alphas = scalar_alphas
        self.prior_iterations = FAST_ALPHA_PRIOR_ITERATIONS if scalar_alphas else ALPHA_PRIOR_ITERATIONS
        if scalar_alphas:
            # fast mode: one learned number per mixing weight, alpha = 0.05 + 0.9 * sigmoid(logit),
            # starting at 0.5 (where the reference's prior term pulls it), instead of two U-Nets
            self.build({"layers": (LAYER, ["layer_0", "layer_1"])})
            self.nets["alpha_logits"] = ScalarAlphas(self.batch).to(self.device)
            self.inputs = {name: self.noise(2) for name in ("layer_0", "layer_1")}
        else:
            self.build({"layers": (LAYER, ["layer_0", "layer_1"]), "alphas": (ALPHA, ["alpha_0", "alpha_1"])})
            self.inputs = {name: self.noise(2) for name in ("layer_0", "layer_1", "alpha_0", "alpha_1")}
        self.stage_iterations = iterations
        self.tracker = BestTracker(strict=True)
        self.made = Snapshot(self.nets, self.batch)  # what made the best-tracked outputs: for export

    def alphas(self, ctx: RunContext | None = None) -> list[torch.Tensor]:
        """``0.9 * A(z)[centre pixel] + 0.05`` per mixture, each B x 1 x 1 x 1. (The reference runs
        a whole U-Net at full resolution for this one number; reference mode keeps that.)"""
        if self.scalar_alphas:
            alphas = 0.05 + 0.9 * torch.sigmoid(self.nets["alpha_logits"].logits)  # B x 2
            return [alphas[:, i].view(-1, 1, 1, 1) for i in range(2)]
        h, w = self.padded
        outs = self.generate("alphas", [self.inputs["alpha_0"], self.inputs["alpha_1"]], ctx)
        return [o[:, :, h // 2:h // 2 + 1, w // 2:w // 2 + 1] * 0.9 + 0.05 for o in outs]

    def step(self, stage: int, k: int, last: bool, log: bool = False, ctx: RunContext | None = None) -> Step:
        # no input perturbation in this task
        y0, y1 = self.generate("layers", [self.inputs["layer_0"], self.inputs["layer_1"]], ctx)
        a0, a1 = self.alphas(ctx)
        recon = blend_sum(a0, y0, y1, self.targets[0], "mse") + blend_sum(a1, y0, y1, self.targets[1], "mse")
        excl = exclusion_sum(y0, y1)
        loss = recon + EXCLUSION_WEIGHT * excl
        if k < self.prior_iterations:
            loss = loss + 0.5 * mse_sum(a0, 0.5) + 0.5 * mse_sum(a1, 0.5)
        # tracked every iteration by the PSNR of the first mixture's reconstruction
        l0, l1 = self.crop(y0.detach()).clamp(0, 1), self.crop(y1.detach()).clamp(0, 1)
        c0, c1 = a0.detach().clamp(0, 1), a1.detach().clamp(0, 1)
        quality = psnr(self.images[0], c0 * l0 + (1 - c0) * l1)
        self.tracker.update(quality, {"layer_0": l0, "layer_1": l1, "alphas": torch.cat([c0, c1], 1).flatten(1)})
        # where a new best was taken, this step's weights (before the solver's update); the
        # inputs are the fixed ones (never perturbed here)
        self.made.update(self.tracker.took)
        return Step(loss, quality, {"reconstruction": recon, "exclusion": excl})


    def callback_outputs(self) -> dict:
        """The first pair's best layers and weights so far, as result fields."""
        best = self.tracker.outputs
        return {"layers": [hwc(best["layer_0"][0]), hwc(best["layer_1"][0])],
                "alphas": best["alphas"][0].cpu().numpy().astype(np.float32)}


def _load_pairs(pairs: list, device) -> tuple[list, list]:
    """The pairs' two mixtures as 1 x 3 x H x W tensors, checked: (firsts, seconds)."""
    many = len(pairs) > 1
    firsts, seconds_ = [], []
    for i, pair in enumerate(pairs):
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise TypeError(f"separate_pair expects pairs of images, got {type(pair).__name__} at index {i}")
        first = load_image(pair[0], f"pairs[{i}][0]" if many else "image1", device)
        second = load_image(pair[1], f"pairs[{i}][1]" if many else "image2", device)
        if first.shape != second.shape:
            raise ValueError(f"image1 and image2 must have one size, got {tuple(first.shape[-2:])} "
                             f"and {tuple(second.shape[-2:])} (H x W)")
        firsts.append(first)
        seconds_.append(second)
    same_size(firsts, [f"pairs[{i}]" for i in range(len(firsts))])
    return firsts, seconds_


def _unmixed(first: torch.Tensor, second: torch.Tensor, config: SolverConfig) -> PairSeparationResult:
    """The classic answer for one pair (1 x 3 x H x W each): no fit, no history, no nets.
    Raises :class:`NotSeparable` where the mixtures do not determine the weights."""
    start = time.perf_counter()
    a, b = estimate_weights(first, second)
    layers = unmix(first, second, a, b)
    return PairSeparationResult(task="separate_pair", layers=[hwc(layer[0].clamp(0, 1)) for layer in layers],
                                alphas=np.array([a, b], np.float32), seconds=time.perf_counter() - start,
                                config=config, method="ica")


def separate_pair_many(pairs: list, config: SolverConfig, method: str | None = None) -> list[PairSeparationResult]:
    """:func:`separate_pair` for several pairs of one size (the fits in one batched run)."""
    if method is not None and method not in METHODS:
        raise ValueError(f"method must be one of {METHODS} (or None: the mode's), got {method!r}")
    dev = config.resolve_device()
    firsts, seconds_ = _load_pairs(pairs, dev)
    seeds = [config.seed + i for i in range(len(pairs))]
    chosen = method or ("ica" if config.mode == "fast" else "dip")
    results: list = [None] * len(pairs)
    if chosen == "ica":
        for b, (first, second) in enumerate(zip(firsts, seconds_)):
            try:
                results[b] = _unmixed(first, second, config.replace(seed=seeds[b]))
            except NotSeparable as exc:
                where = f"pairs[{b}]" if len(pairs) > 1 else "image1 and image2"
                if method == "ica":
                    raise NotSeparable(f"separate_pair(method='ica'): {where}: {exc}") from None
                warnings.warn(f"separate_pair: {where}: {exc}; fast mode fits the layers instead "
                              "(result.method 'dip')", stacklevel=3)
        described([r for r in results if r is not None], dev,
                  image1=[(p[0], t) for p, t, r in zip(pairs, firsts, results) if r is not None],
                  image2=[(p[1], t) for p, t, r in zip(pairs, seconds_, results) if r is not None])
    left = [b for b, r in enumerate(results) if r is None]
    if left:
        fits = _fit([pairs[b] for b in left], [firsts[b] for b in left], [seconds_[b] for b in left],
                    [seeds[b] for b in left], config, dev)
        for b, r in zip(left, fits):
            results[b] = r
    return results


def _fit(pairs: list, firsts: list, seconds_: list, seeds: list, config: SolverConfig, dev) -> list:
    """The Double-DIP fit of the pairs (loaded: ``firsts``, ``seconds_``) in one batched run."""
    defaults = SPEC.defaults_for(config.mode)
    stages = split_iterations(config.iterations, defaults.stages)
    with timed_run(config, sum(stages), "separate-pair") as (reporter, start):
        problem = PairProblem(torch.cat(firsts), torch.cat(seconds_), stages, seeds,
                              scalar_alphas=config.mode == "fast")
        run_problem(problem, config, config.lr or defaults.lr, reporter)
        best = problem.tracker.outputs
        seconds = time.perf_counter() - start
        return described([PairSeparationResult(
            task="separate_pair", layers=[hwc(best["layer_0"][b]), hwc(best["layer_1"][b])],
            alphas=best["alphas"][b].cpu().numpy().astype(np.float32),
            history=item_history(reporter.history, b), seconds=seconds, config=config.replace(seed=seeds[b]),
            fitted=_fitted(problem, b)) for b in range(len(pairs))], dev, reporter,
            image1=[(p[0], t) for p, t in zip(pairs, firsts)], image2=[(p[1], t) for p, t in zip(pairs, seconds_)])


def _fitted(problem: PairProblem, b: int) -> dict:
    fitted = problem.fitted(problem.inputs, b, problem.made)
    if problem.scalar_alphas:  # no alpha generators: the weights are constants, the result's own
        alphas = problem.tracker.outputs["alphas"][b].cpu()
        fitted["constants"] = {"alpha_0": float(alphas[0]), "alpha_1": float(alphas[1])}
    return fitted


def separate_pair(image1, image2, config: SolverConfig | None = None, *, method: str | None = None,
                  iterations: int | None = None, seed: int | None = None, device: str | None = None,
                  progress: bool | None = None) -> PairSeparationResult:
    """Recover two layers from two mixtures ``I_k = alpha_k * L0 + (1 - alpha_k) * L1``.

    Returns ``layers`` (2 x H x W x 3) and ``alphas`` (2,); ``result.method`` says how.

    method: ``"dip"``: the Double-DIP fit, 4000 iterations at lr 1e-3 (in fast mode each weight
        is one learned number instead of a U-Net's output, pulled toward 0.5 for 250 iterations
        instead of 1000, and 1800 iterations). ``"ica"``: the classic answer, no fit: the weights
        by sparse ICA of the mixtures' derivatives, the layers in closed form, a fraction of a
        second (:mod:`doubledip.engine.unmixing`; ``alphas[0] >= alphas[1]``); raises
        :class:`~doubledip.engine.unmixing.NotSeparable` (a ValueError) where the mixtures do
        not determine the weights. None (default): the mode's, ``"dip"`` in reference mode,
        ``"ica"`` in fast mode, which fits instead (with a warning) where ICA cannot tell.
    """
    config = resolve(config, {"image1": image1, "image2": image2}, iterations=iterations, seed=seed,
                     device=device, progress=progress)
    return separate_pair_many([(image1, image2)], config, method)[0]


# ---- the task's spec -----------------------------------------------------------------------

def export_recombination(names: list[str], result) -> dict:
    """Each mixture is its weight's blend of the layers; fast mode learns each weight as one
    number (no alpha generators), written as a constant."""
    constants = dict((getattr(result, "fitted", None) or {}).get("constants", {}))
    groups = {"layers": ["layer_0", "layer_1"]}
    if "alpha_0" in names:
        groups["alphas"] = ["alpha_0", "alpha_1"]
    return {
        "groups": groups, "constants": constants,
        "recombine": [{"name": f"mixture_{k}", "formula": f"alpha_{k} * layer_0 + (1 - alpha_{k}) * layer_1",
                       "op": "blend", "weight": f"alpha_{k}", "a": "layer_0", "b": "layer_1"}
                      for k in (0, 1)],
        "not_included": [BEST_TRACKED]}


def bench_problem(size: int, batch: int, device, fast: bool = False) -> BenchProblem:
    images, _ = bench_inputs(size, batch, device)
    return BenchProblem(PairProblem(images, images.flip(-1), DEFAULT_ITERATIONS, list(range(batch)),
                                    scalar_alphas=fast), 0)


def evaluation_cases(suite: str, size: int) -> list:
    from doubledip.evaluation.cases import separate_pair_case

    if suite == "quick":
        return [separate_pair_case(size)]
    return [separate_pair_case(size), separate_pair_case(size, "astronaut", "coffee", alphas=(0.65, 0.3))]


def baselines(case) -> dict:
    """Each layer = one input (weights 1 and 0); the classic unmixing (sparse ICA, closed form)."""
    i1, i2 = case.args
    out = {"inputs": {"layers": [i1, i2], "alphas": np.array([1.0, 0.0], np.float32)}}
    start = time.perf_counter()
    try:
        r = _unmixed(load_image(i1, "image1", torch.device("cpu")), load_image(i2, "image2", torch.device("cpu")),
                     SolverConfig(device="cpu"))
    except NotSeparable:  # no classic answer for this case: the suite shows the inputs only
        return out
    out["sparse ICA"] = {"layers": r.layers, "alphas": r.alphas, "seconds": time.perf_counter() - start}
    return out


SPEC = register(TaskSpec(
    name="separate_pair", cli_name="separate-pair",
    summary="two layers from two mixtures with different weights",
    run=separate_pair, run_many=separate_pair_many, result=PairSeparationResult,
    inputs=(Input("image1", "image", "the first mixture"), Input("image2", "image", "the second mixture")),
    options=(Option("method", "dip: the Double-DIP fit; ica: the classic answer, the weights by sparse ICA and "
                              "the layers in closed form, no fit (default: dip in reference mode, ica in fast "
                              "mode)", type=str, choices=METHODS),),
    defaults={"reference": Defaults(DEFAULT_ITERATIONS, DEFAULT_LR), "fast": Defaults(FAST_ITERATIONS, DEFAULT_LR)},
    export=export_recombination, bench=bench_problem,
    evaluation=Evaluation(cases=evaluation_cases, score=metrics.score_separate_pair, baselines=baselines,
                          primary="separation", fields=("layers", "alphas"), quick_iterations=500),
))

