"""Dehazing (ALGORITHM.md 6.4): ``I = t * J + (1 - t) * A`` with DIPs for J and t (and A)."""
from __future__ import annotations

import time

import numpy as np
import torch

from doubledip.engine.config import DEHAZE, SolverConfig, UNetConfig
from doubledip.engine.inputs import meshgrid_input
from doubledip.engine.io import load_image
from doubledip.engine.losses import blend_sum, mse_sum, psnr, std_loss
from doubledip.engine.post import dcp_dehaze, dcp_transmission, estimate_airlight, guided_filter, resize
from doubledip.engine.results import DehazeResult
from doubledip.engine.solver import RunContext, BestTracker, Snapshot, Step, run_problem, split_iterations
from doubledip.engine.tasks.common import (BEST_TRACKED, ImageProblem, bench_inputs, described, hwc, item_history, resolve,
                                           same_size, timed_run)
from doubledip.engine.tasks.registry import BenchProblem, Defaults, Evaluation, Input, Option, TaskSpec, register
from doubledip.evaluation import metrics

PASS_ITERATIONS = 4000
# fast mode's one pass: about 2 minutes at 256 x 256 on one thread of the dev machine's Xeon
# (benchmarks/experiments/dehaze_vs_dcp.md)
FAST_PASS_ITERATIONS = 700
DEFAULT_LR = 1e-3
INPUT_VAR = 1 / 10
SIGMA = 1 / 30  # image and ambient inputs; the transmission net's input is never perturbed
STD_T, STD_A = 0.005, 0.1
AIRLIGHT_PRIOR_ITERATIONS = 1000
TRACK_EVERY = 8
# fast mode: the transmission is pulled toward the dark channel prior's (see dehaze's docstring)
DCP_PRIOR_WEIGHT = 10.0
MAX_SIDE = 800
METHODS = ("dip", "dcp")  # dehaze(method=...): the fit, or the classic dark channel prior
# fast mode returns the fit only where it explains the hazy image better than the dark channel
# prior's result does, judged without ground truth: the mean absolute residual of the haze model
# once J is clipped to [0, 1] (a transmission too low for a pixel asks for J outside [0, 1]), the
# fit's below (1 - FALLBACK_MARGIN) times the classic's; otherwise the classic result, and the
# result says so (benchmarks/experiments/dehaze_vs_dcp.md)
FALLBACK_MARGIN = 0.05
TRANSMISSION = UNetConfig(8, 1, DEHAZE.channels, DEHAZE.skip_channels, 3)


def working_size(h: int, w: int) -> tuple[int, int]:
    """Size the optimisation runs at: while a side is >= 800 px, try f = 1, 2, ...: size / f with
    each side rounded down to a multiple of 32 (the reference's rule)."""
    size, f = (h, w), 1
    while size[0] >= MAX_SIDE or size[1] >= MAX_SIDE:
        size = (_scaled(h, f), _scaled(w, f))
        f += 1
    return size


def _scaled(side: int, f: int) -> int:
    """side / f rounded down to a multiple of 32; a side that would round to nothing (an elongated
    image's short side) keeps side / f, and never less than 8 px (the smallest image accepted)."""
    scaled = int(side / f)
    if scaled >= 32:
        return scaled - scaled % 32
    return max(scaled, min(side, 8))


class DehazeProblem(ImageProblem):
    """image: B x 3 x h x w (working size); airlight0: B x 3; one problem per image."""

    tracks_best = True

    def __init__(self, image, airlight0, learn_airlight, iterations, seeds, transmission_prior=None):
        super().__init__(seeds, image.device, tuple(image.shape[-2:]), [DEHAZE])
        # B x 1 x h x w or None: a transmission map the net's t is pulled toward (fast mode)
        self.t_prior = None if transmission_prior is None else self.pad(transmission_prior)
        self.image = image
        self.target = self.pad(image)
        self.learn = learn_airlight
        self.airlight0 = airlight0.reshape(-1, 3, 1, 1)
        groups = {"image": (DEHAZE, ["image", "airlight"] if learn_airlight else ["image"]),
                  "transmission": (TRANSMISSION, ["transmission"])}
        self.build(groups)
        self.inputs = {"image": self.noise(8, INPUT_VAR), "transmission": self.noise(8, INPUT_VAR)}
        if learn_airlight:
            self.inputs["airlight"] = meshgrid_input(8, *self.padded, self.device).expand(self.batch, -1, -1, -1)
        self.stage_iterations = iterations
        self.tracker = BestTracker(strict=True)
        self.made = Snapshot(self.nets, self.batch)  # what made the best-tracked outputs: for export

    def step(self, stage: int, k: int, last: bool, log: bool = False, ctx: RunContext | None = None) -> Step:
        sigma = 0.0 if last else SIGMA
        z_image = self.perturbed(self.inputs["image"], sigma, stage, k, 0)
        if self.learn:  # the image and airlight nets share an architecture: one grouped launch
            z_airlight = self.perturbed(self.inputs["airlight"], sigma, stage, k, 1)
            J, A = self.generate("image", [z_image, z_airlight], ctx)
        else:
            (J,), A = self.generate("image", [z_image], ctx), self.airlight0
        (t,) = self.generate("transmission", [self.inputs["transmission"]], ctx)  # never perturbed
        recon = blend_sum(t, J, A.expand_as(J), self.target, "mse")
        loss = recon + STD_T * std_loss(t)
        if self.t_prior is not None:
            loss = loss + DCP_PRIOR_WEIGHT * mse_sum(t, self.t_prior)
        if self.learn:
            loss = loss + STD_A * std_loss(A)
            if k < AIRLIGHT_PRIOR_ITERATIONS:
                loss = loss + mse_sum(A, self.airlight0)
        quality = None
        if k % TRACK_EVERY == 0 or log:
            Jc, tc = self.crop(J.detach()).clamp(0, 1), self.crop(t.detach()).clamp(0, 1)
            Ac = (self.crop(A.detach()) if self.learn else A.detach()).clamp(0, 1).expand_as(Jc)
            quality = psnr(self.image, tc * Jc + (1 - tc) * Ac)
            if k % TRACK_EVERY == 0:
                self.tracker.update(quality, {"image": Jc, "transmission": tc, "airlight": Ac})
                # where a new best was taken: this step's weights (before the solver's update) and
                # perturbed inputs (the transmission net's is the fixed one), for export
                self.made.update(self.tracker.took, {"image": z_image, **({"airlight": z_airlight} if self.learn else {})})
        return Step(loss, quality, {"reconstruction": recon})


def _one_pass(images: torch.Tensor, airlight0: torch.Tensor, learn: bool, iterations: int, config: SolverConfig,
              seeds: list[int], lr: float, reporter, pass_index: int, first_iteration: int):
    """One dehazing pass on ``images`` (B x 3 x H x W, full size). Returns (J_final, t, A, problem),
    each B x C x H x W."""
    H, W = images.shape[-2:]
    h, w = working_size(H, W)
    small = resize(images, h, w).clamp(0, 1)
    prior = None
    if config.mode == "fast":
        prior = torch.cat([dcp_transmission(small[b:b + 1], airlight0[b]) for b in range(len(small))])
    problem = DehazeProblem(small, airlight0, learn, (iterations,), [s + 1000003 * pass_index for s in seeds],
                            transmission_prior=prior)
    run_problem(problem, config, lr, reporter, extra={"pass": pass_index}, first_iteration=first_iteration)
    best = problem.tracker.outputs
    t = resize(best["transmission"], H, W)
    A = resize(best["airlight"], H, W)
    if config.mode != "fast":
        # refine t with a guided filter (guide: this pass's full-size input), clip to [0.1, 1]
        t = torch.cat([guided_filter(images[b:b + 1], t[b:b + 1], radius=50, eps=1e-4) for b in range(len(images))])
    # fast mode keeps the net's own smooth t: the image-guided filter copies the image's texture
    # into t (measured on the suite's hazed cases: 0.2-2.9 dB lower PSNR with it)
    t = t.clamp(0.1, 1.0)
    J_final = ((images - (1 - t) * A) / t).clamp(0, 1)
    return J_final, t, A, problem


def chosen_method(method, config: SolverConfig, keep_fit: bool, learn_airlight: bool = False) -> str:
    """The method a run takes (:data:`METHODS`): ``method``, or where None the mode's: the fit in
    reference mode, the dark channel prior in fast mode (the fit where ``keep_fit`` or
    ``learn_airlight``, options of the fit, ask for it).
    Fast mode's fit gained at most 0.13 dB over the prior on 15 hazed cases and lost 0.07-0.22 dB
    on held-out ones where its selection rule kept it (benchmarks/experiments/dehaze_vs_dcp.md)."""
    if method is not None and method not in METHODS:
        raise ValueError(f"dehaze: method must be one of {METHODS} (or None: the mode's), got {method!r}")
    for name, given in (("keep_fit", keep_fit), ("learn_airlight", learn_airlight)):
        if method == "dcp" and given:
            raise ValueError(f"dehaze: {name}=True is an option of the fit, but method='dcp' runs no fit; "
                             f"use method='dip' (or None) with {name}")
    if method is not None:
        return method
    return "dcp" if config.mode == "fast" and not (keep_fit or learn_airlight) else "dip"


# ``selection`` of fast mode's default call, which runs no fit
DEFAULT_CLASSIC = ("dcp: fast mode's default (method=None; the fit gained no more than a few tenths of a dB "
                   "over the prior, and lost as much on held-out cases); method='dip' fits")


def dehaze_many(images: list, config: SolverConfig, airlight=None, learn_airlight: bool = False,
                passes: int | None = None, method: str | None = None, keep_fit: bool = False) -> list[DehazeResult]:
    """:func:`dehaze` for several images of one size in one batched run (``airlight``: None, 3
    values for all, or one triple per image)."""
    asked = method
    method = chosen_method(method, config, keep_fit, learn_airlight)
    defaults = SPEC.defaults_for(config.mode)
    if passes is None:
        passes = defaults.passes
    if passes not in (1, 2):
        raise ValueError(f"passes must be 1 or 2, got {passes!r}")
    dev = config.resolve_device()
    many = len(images) > 1
    imgs = [load_image(im, f"images[{i}]" if many else "image", dev) for i, im in enumerate(images)]
    same_size(imgs, [f"images[{i}]" for i in range(len(imgs))])
    batch = torch.cat(imgs)
    if airlight is not None:
        a0 = np.asarray(airlight, dtype=np.float32)
        if a0.shape == (3,):
            a0 = np.tile(a0, (len(imgs), 1))
        if a0.shape != (len(imgs), 3) or not np.isfinite(a0).all() or a0.min() < 0 or a0.max() > 1:
            raise ValueError(f"airlight must be 3 finite values in [0, 1] (or one triple per image), got {airlight!r}")
        a0 = torch.from_numpy(a0).to(dev)
    else:
        a0 = None if method == "dcp" else torch.stack([estimate_airlight(im) for im in imgs])
    if method == "dcp":
        results = [_classic(im, None if a0 is None else a0[b], config.replace(seed=config.seed + b))
                   for b, im in enumerate(imgs)]
        if asked is None:
            for r in results:
                r.selection = DEFAULT_CLASSIC
        return described(results, dev, image=list(zip(images, imgs)))
    stages = split_iterations(config.iterations, defaults.stages * passes)
    seeds = [config.seed + i for i in range(len(imgs))]
    lr = config.lr or defaults.lr
    with timed_run(config, sum(stages), "dehaze") as (reporter, start):
        current, A0 = batch, a0
        for p, T in enumerate(stages):
            learn = learn_airlight or p > 0
            J_final, t, A, problem = _one_pass(current, A0, learn, T, config, seeds, lr, reporter, p, sum(stages[:p]))
            # the next pass learns A, starting from this pass's airlight (a map: its mean)
            current, A0 = J_final, A.mean(dim=(2, 3))
        airlights = A.mean(dim=(2, 3)).cpu().numpy().astype(np.float32)
        results = [DehazeResult(
            task="dehaze", image=hwc(J_final[b]), transmission=hwc(t[b]), airlight=airlights[b],
            history=item_history(reporter.history, b), seconds=time.perf_counter() - start,
            config=config.replace(seed=seeds[b]), fitted=problem.fitted(problem.inputs, b, problem.made))
            for b in range(len(imgs))]
        if config.mode == "fast" and not keep_fit:
            for b, r in enumerate(results):
                _keep_the_better(r, imgs[b], a0[b])
        return described(results, dev, reporter, image=list(zip(images, imgs)))


def haze_residual(image: torch.Tensor, t: torch.Tensor, airlight: torch.Tensor) -> float:
    """How badly (t, A) explain a hazy image: the mean absolute residual of ``I = t J + (1 - t) A``
    with ``J = (I - (1 - t) A) / t`` clipped to [0, 1]; zero where J needs no clipping.
    image: T x 3 x H x W (T frames: their mean); t: T x 1 x H x W (clamped to [0.1, 1]); airlight: (3,)."""
    t = t.clamp(0.1, 1.0)
    a = airlight.reshape(1, 3, 1, 1).to(image)
    clear = ((image - (1 - t) * a) / t).clamp(0, 1)
    return float((image - (t * clear + (1 - t) * a)).abs().mean())


def dcp_frames(images: torch.Tensor, airlight: torch.Tensor):
    """The dark channel prior run on each of T frames with one airlight ((3,)): (J: T x 3 x H x W,
    t: T x 1 x H x W, A: (3,))."""
    per_frame = [dcp_dehaze(images[i:i + 1], airlight=airlight) for i in range(images.shape[0])]
    return torch.cat([c for c, _, _ in per_frame]), torch.cat([t for _, t, _ in per_frame]), per_frame[0][2]


def fit_or_classic(images: torch.Tensor, t_fit: torch.Tensor, a_fit: torch.Tensor, airlight: torch.Tensor):
    """Fast mode's choice between the fit and the dark channel prior for frames that belong
    together (an image: T = 1; a clip: all its frames, one choice, so that the method does not
    switch from frame to frame): the fit only where it explains them better by
    :data:`FALLBACK_MARGIN` (:func:`haze_residual`, over all the frames).

    images: T x 3 x H x W; t_fit: T x 1 x H x W; a_fit, airlight (the prior's, given or
    estimated): (3,). Returns (keep_fit, why, classic); classic: the prior's (J: T x 3 x H x W,
    t: T x 1 x H x W, A: (3,)) with ``airlight``."""
    clear, t_dcp, a_dcp = dcp_frames(images, airlight)
    fit = haze_residual(images, t_fit, a_fit)
    classic = haze_residual(images, t_dcp, a_dcp)
    residuals = f"haze-model residual {fit:.3g} against {classic:.3g}"
    if fit < (1 - FALLBACK_MARGIN) * classic:
        return True, f"dip: the fit explains the image better than the dark channel prior ({residuals})", None
    return False, (f"dcp: the fit did not explain the image better than the dark channel prior ({residuals}), "
                   "so this is the classic result"), (clear, t_dcp, a_dcp)


def _keep_the_better(result: DehazeResult, image: torch.Tensor, airlight: torch.Tensor) -> None:
    """Fast mode: replace ``result``'s outputs by the dark channel prior's unless the fit explains
    ``image`` (1 x 3 x H x W) better (:func:`fit_or_classic`)."""
    to = lambda x: torch.from_numpy(np.asarray(x)).to(image)  # noqa: E731
    keep, result.selection, classic = fit_or_classic(image, to(result.transmission)[None, None],
                                                     to(result.airlight), airlight)
    if keep:
        return
    clear, t_dcp, a_dcp = classic
    result.image, result.transmission = hwc(clear), hwc(t_dcp)
    result.airlight, result.method = a_dcp.cpu().numpy().astype(np.float32), "dcp"
    result.fitted = None  # the nets do not make these outputs: nothing to export


def _classic(image: torch.Tensor, airlight, config: SolverConfig) -> DehazeResult:
    """The dark channel prior's result for one 1 x 3 x H x W image (no fit: no history, no nets)."""
    start = time.perf_counter()
    clear, t, A = dcp_dehaze(image, airlight=airlight)
    return DehazeResult(task="dehaze", image=hwc(clear), transmission=hwc(t),
                        airlight=A.cpu().numpy().astype(np.float32), seconds=time.perf_counter() - start,
                        config=config, method="dcp")


def dehaze(image, config: SolverConfig | None = None, *, airlight=None, learn_airlight: bool = False,
           passes: int | None = None, method: str | None = None, keep_fit: bool = False, iterations: int | None = None,
           seed: int | None = None, device: str | None = None, progress: bool | None = None) -> DehazeResult:
    """Remove haze: ``I = t * J + (1 - t) * A``.

    method: ``"dip"`` (the Double-DIP fit, below) or ``"dcp"``: the classic dark channel prior
        (He, Sun, Tang 2009) with a guided filter, in a fraction of a second and no fit (the
        result's ``history`` is empty and it has no fitted nets to export). None: the mode's,
        ``"dip"`` in reference mode and ``"dcp"`` in fast mode (``selection`` says so).

    keep_fit: fast mode with ``method="dip"`` returns the dark channel prior's result instead of
        the fit's when the fit does not explain the image better (:func:`haze_residual`, judged
        without ground truth); ``method`` then says "dcp" and ``selection`` why. True: always
        the fit (with ``method=None`` it asks for the fit in fast mode too, as
        ``learn_airlight`` does; either with ``method="dcp"`` is an error).

    airlight: the airlight A as 3 values in [0, 1]; None estimates it with the dark channel prior.
    learn_airlight: learn A (an ambient DIP on a meshgrid input) in the first pass too.
    passes: 2 (the method: the second pass re-dehazes the first's output, learning A) or 1;
        None: 2 in reference mode, 1 in fast mode.
    Fast mode also pulls the transmission net's output toward the dark channel prior's map
    (He et al. 2009, guided-filter refined), which resolves the ambiguity the reference leaves
    open (t = 1, J = I also reproduces the image).
    Returns ``image`` (H x W x 3), ``transmission`` (H x W), ``airlight`` (3,; the spatial mean
    when A was learned as a map). Default 4000 iterations per pass, lr 1e-3; fast mode's fit
    (``method="dip"``): one pass of 700, then the better of the fit and the classic result
    (``keep_fit``).
    """
    config = resolve(config, {"image": image, "airlight": airlight}, iterations=iterations, seed=seed,
                     device=device, progress=progress)
    return dehaze_many([image], config, airlight, learn_airlight, passes, method, keep_fit)[0]


# ---- the task's spec -----------------------------------------------------------------------

def export_recombination(names: list[str], result) -> dict:
    """The hazy image is the transmission's blend of the clear image and the airlight."""
    constants, airlight = {}, "airlight"
    if "airlight" not in names:
        constants["airlight"] = [float(v) for v in np.asarray(result.airlight).reshape(-1)]
        airlight = "airlight (a constant, in constants)"
    return {
        "groups": {},
        "constants": constants,
        "recombine": [{"name": "hazy", "formula": f"transmission * image + (1 - transmission) * {airlight}",
                       "op": "blend", "weight": "transmission", "a": "image", "b": "airlight"}],
        "not_included": [
            "passes: with two passes (the default) the second re-dehazes the first's output; "
            "these are the generators of the last pass only",
            "the working size: images with a side >= 800 px are fitted at a smaller size "
            "(size here; result_size is the caller's), resized back by the task",
            "the final image: the transmission is resized, refined by a guided filter "
            "(radius 50, eps 1e-4), clamped to [0.1, 1], and J = (I - (1 - t) * A) / t "
            "is computed from the input image I",
            BEST_TRACKED]}


def bench_problem(size: int, batch: int, device, fast: bool = False) -> BenchProblem:
    images, _ = bench_inputs(size, batch, device)
    airlight = torch.full((batch, 3), 0.8, device=device)
    # fast mode's prior term (the dark channel prior's transmission; a constant map costs the same)
    prior = torch.full((batch, 1, size, size), 0.5, device=device) if fast else None
    return BenchProblem(DehazeProblem(images, airlight, False, (PASS_ITERATIONS,), list(range(batch)),
                                      transmission_prior=prior), 0)


def evaluation_cases(suite: str, size: int) -> list:
    from doubledip.evaluation.cases import dehaze_case

    if suite == "quick":
        return [dehaze_case(size)]
    return [dehaze_case(size), dehaze_case(size, "coffee"), dehaze_case(size, "chelsea", airlight=(0.9, 0.9, 0.88))]


def baselines(case) -> dict:
    """The hazy input itself, then the dark channel prior (with its wall time)."""
    from doubledip.evaluation.baselines import dark_channel_prior

    hazy = case.args[0]
    start = time.perf_counter()
    dcp = dark_channel_prior(hazy)
    return {"hazy input": {"image": hazy}, "dark channel prior": dict(dcp, seconds=time.perf_counter() - start)}


SPEC = register(TaskSpec(
    name="dehaze", cli_name="dehaze", summary="remove haze: image, transmission map, airlight",
    run=dehaze, run_many=dehaze_many, result=DehazeResult,
    inputs=(Input("image", "image", "the hazy image: one, or several of one size (batched)"),),
    options=(Option("airlight", "known airlight in [0, 1] (default: dark channel prior estimate)",
                    type=float, nargs=3, metavar=("R", "G", "B")),
             Option("learn_airlight", "learn the airlight in the first pass too", flag=True),
             Option("passes", "default: 2 (reference mode), 1 (fast mode)", type=int, choices=(1, 2)),
             Option("method", "dip: the Double-DIP fit (reference mode's default); dcp: the classic dark channel "
                    "prior, a fraction of a second, no fit (fast mode's default)", type=str, choices=METHODS),
             Option("keep_fit", "fast mode: fit, and return the fit even when it does not explain the image "
                    "better than the dark channel prior (default: the classic result then)", flag=True)),
    defaults={"reference": Defaults((PASS_ITERATIONS,), DEFAULT_LR, passes=2),
              "fast": Defaults((FAST_PASS_ITERATIONS,), DEFAULT_LR, passes=1)},
    export=export_recombination, bench=bench_problem,
    evaluation=Evaluation(cases=evaluation_cases, score=metrics.score_dehaze, baselines=baselines,
                          primary="psnr", fields=("image", "transmission", "airlight"), quick_iterations=600),
))

