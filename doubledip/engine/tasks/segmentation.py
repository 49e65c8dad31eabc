"""Foreground/background segmentation (ALGORITHM.md 6.3): two layer DIPs blended by a mask DIP."""
from __future__ import annotations

import time

import numpy as np
import torch

from doubledip.engine.config import SEGMENT, SolverConfig, UNetConfig
from doubledip.engine.io import load_hint, load_image
from doubledip.engine.losses import blend_sum, gray_loss, l1_sum, masked_l1, psnr
from doubledip.engine.post import guided_filter
from doubledip.engine.results import SegmentationResult, warn_short_run
from doubledip.engine.solver import RunContext, Snapshot, Step, run_problem, split_iterations
from doubledip.engine.tasks.common import ImageProblem, bench_inputs, described, hwc, item_history, resolve, same_size, timed_run
from doubledip.engine.tasks.registry import BenchProblem, Defaults, Evaluation, Input, Option, TaskSpec, register
from doubledip.evaluation import metrics

DEFAULT_ITERATIONS = (2000, 4000)
DEFAULT_LR = 1e-3
STOP_PSNR = 30.0  # stage 2 ends once the reconstruction is this good
HINT_ITERATIONS = 1000  # with hints, stage 2 keeps the hint terms while k <= this
MASK_NET = UNetConfig(2, 1, SEGMENT.channels, SEGMENT.skip_channels, 3)
HINTS = ("auto", "none")  # with no fg/bg hint given: saliency hints, or the authors' hint-free variant
# segment(method=...): "dip", the Double-DIP fit; "saliency", the classic answer, for automatic
# hints only: the saliency map above its Otsu threshold (the rough object the hints are cut
# from) through fast mode's guided filter, no fit. Unset: "saliency" in fast mode with automatic
# hints (at or above the fit on every draw measured, in about 1 s instead of 20-45:
# benchmarks/experiments/segmentation_hints.md), "dip" otherwise
METHODS = ("dip", "saliency")
# fast mode (benchmarks/experiments/segmentation_hints.md): 200 + 400 iterations, stage 2 ending
# once the mask has settled: checked every SETTLE_EVERY iterations, settled when fewer than
# SETTLE_FRACTION of its pixels changed side of 0.5 since the last check
FAST_ITERATIONS = (200, 400)
SETTLE_EVERY = 50
SETTLE_FRACTION = 0.002
# fast mode's guided filter radius, a fraction of the short side (the reference's 50 px spans a
# small image: on grey textures it blurs the mask away)
FAST_GUIDE_RADIUS = 1 / 8


def noise_sigma(stage: int, k: int, last: bool) -> float:
    if stage == 1 and last:
        return 0.0
    return (k // 100) / 1000 if k < 1000 else 1 / 1000


def gray_weight(k: int, hinted: bool) -> float:
    """Weight of Gray(m) in stage 2: 0.001 * (min(k, 1000) // 100) with hints, 0.01 * (k // 100) without."""
    return 0.001 * (min(k, 1000) // 100) if hinted else 0.01 * (k // 100)


class SegmentationProblem(ImageProblem):
    """image: B x 3 x H x W; fg, bg: B x 1 x H x W hints or None; one problem per image."""

    def __init__(self, image, fg, bg, iterations, seeds, fast: bool = False):
        super().__init__(seeds, image.device, tuple(image.shape[-2:]), [SEGMENT])
        self.fast = fast  # fast mode: stage 2 also ends once the mask has settled
        self.settle_mask = None  # the binary mask at the last settle check (fast mode)
        self.image = image
        self.target = self.pad(image)
        self.hinted = fg is not None
        if self.hinted:
            self.fg, self.bg = self.pad(fg), self.pad(bg)
            self.mask_target = (self.fg - self.bg + 1) / 2
        self.build({"layers": (SEGMENT, ["foreground", "background"]), "mask": (MASK_NET, ["mask"])})
        # the reference's quirk, kept: both layer nets share one noise input (perturbed separately)
        shared = self.noise(2)
        self.inputs = {"foreground": shared, "background": shared, "mask": self.noise(2)}
        self.stage_iterations = iterations
        self.current = None
        self.stage_ends: list[tuple[torch.Tensor, dict]] = []
        self.made: Snapshot | None = None  # what made ``current`` (weights, inputs): for export
        self.stage_made: list[Snapshot] = []
        self.stopped = None  # (B,) bool on the device, stage 2 only

    def step(self, stage: int, k: int, last: bool, log: bool = False, ctx: RunContext | None = None) -> Step:
        sigma = noise_sigma(stage, k, last)
        used = {"foreground": self.perturbed(self.inputs["foreground"], sigma, stage, k, 0),
                "background": self.perturbed(self.inputs["background"], sigma, stage, k, 1)}
        left, right = self.generate("layers", [used["foreground"], used["background"]], ctx)
        used["mask"] = self.perturbed(self.inputs["mask"], sigma, stage, k, 2)
        (m,) = self.generate("mask", [used["mask"]], ctx)
        terms = {}
        if stage == 0:
            if self.hinted:
                loss = (masked_l1(left, self.target, self.fg) + masked_l1(right, self.target, self.bg)
                        + l1_sum(m, self.mask_target))
            else:
                loss = l1_sum(m, 0.5)
        else:
            recon = blend_sum(m, left, right, self.target, "l1")
            loss = 0.5 * recon
            if self.hinted and k <= HINT_ITERATIONS:
                loss = loss + masked_l1(left, self.target, self.fg) + masked_l1(right, self.target, self.bg)
            loss = loss + gray_weight(k, self.hinted) * gray_loss(m)
            terms["reconstruction"] = recon
        if stage == 0 and not (last or log):
            # stage 1's result is its last iteration's: nothing to measure before that
            return Step(loss, None, terms)
        outs = {"foreground": self.crop(left.detach()), "background": self.crop(right.detach()),
                "soft_mask": self.crop(m.detach())}
        quality = psnr(self.image, outs["soft_mask"] * outs["foreground"]
                       + (1 - outs["soft_mask"]) * outs["background"])
        if stage == 1:
            # result = outputs of the first iteration whose PSNR passes STOP_PSNR (or the last);
            # latched on the device per image, so the loop need not read the PSNR every step
            if self.stopped is None:
                self.stopped = torch.zeros_like(quality, dtype=torch.bool)
                self.current = (quality, outs)
                self.made = Snapshot(self.nets, self.batch)
                self.made.update(None, used)
            else:
                keep = self.stopped
                self.current = (torch.where(keep, self.current[0], quality),
                                {n: torch.where(keep.view(-1, 1, 1, 1), self.current[1][n], v) for n, v in outs.items()})
                # what made the outputs, latched likewise: this step's weights (before the
                # solver's update) and perturbed inputs, for the images not yet latched
                self.made.update(~keep, used)
            self.stopped = self.stopped | (quality > STOP_PSNR)
            if self.fast and (k + 1) % SETTLE_EVERY == 0:
                # settled: under SETTLE_FRACTION of the pixels changed side since the last check
                binary = outs["soft_mask"] > 0.5
                if self.settle_mask is not None:
                    flipped = (binary != self.settle_mask).float().mean(dim=(1, 2, 3))
                    self.stopped = self.stopped | (flipped < SETTLE_FRACTION)
                self.settle_mask = binary
        else:
            self.current = (quality, outs)
            if last:  # stage 1's end, its result candidate: what made it, for export
                self.made = Snapshot(self.nets, self.batch)
                self.made.update(None, used)
        return Step(loss, quality, terms)

    requested_stop_reason = "settled: the mask stopped changing"

    def stop_requested(self, stage: int):
        return self.stopped.all() if stage == 1 and self.stopped is not None else None

    def end_stage(self, stage: int) -> None:
        self.stage_ends.append(self.current)
        self.stage_made.append(self.made)

    def result(self) -> dict:
        """Per image, the better stage end by PSNR (ties: the later one, as the reference)."""
        (p1, o1), (p2, o2) = self.stage_ends
        later = (p2 >= p1).view(-1, 1, 1, 1)
        return {n: torch.where(later, o2[n], o1[n]) for n in o1}

    def result_made(self) -> Snapshot:
        """What made :meth:`result`, per image: the chosen stage end's weights and inputs."""
        (p1, _), (p2, _) = self.stage_ends
        return Snapshot.choose(p2 >= p1, self.stage_made[1], self.stage_made[0])


def check_hints_option(hints, given: bool) -> None:
    """``hints`` must be one of :data:`HINTS`; "none" with fg/bg hints given is a contradiction."""
    if not isinstance(hints, str):
        raise TypeError(f"segment: hints must be a str, one of {HINTS}, got {type(hints).__name__}")
    if hints not in HINTS:
        raise ValueError(f"segment: hints must be one of {HINTS}, got {hints!r}")
    if given and hints == "none":
        raise ValueError("segment: hints='none' runs without hints, but fg_hint and bg_hint were given; "
                         "drop them, or drop hints='none'")


def auto_hints(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sure-foreground and sure-background hints of a 1 x 3 x H x W image from its saliency map
    (:mod:`doubledip.engine.saliency`), and the map above its Otsu threshold (the rough object
    they are cut from): three 1 x 1 x H x W {0, 1} maps on the image's device."""
    from doubledip.engine import saliency

    s = saliency.saliency(hwc(image))
    maps = (*saliency.hints_from_saliency(s), saliency.threshold_mask(s))
    return tuple(torch.from_numpy(h)[None, None].to(image.device) for h in maps)


def fast_guide_radius(size: tuple[int, int]) -> int:
    """Fast mode's guided filter radius: FAST_GUIDE_RADIUS of the short side, at least 1 px."""
    return max(1, round(FAST_GUIDE_RADIUS * min(size)))


def guide_radius(config: SolverConfig, size: tuple[int, int]) -> int:
    """The guided filter's radius: 50 px (the reference), in fast mode :func:`fast_guide_radius`."""
    return fast_guide_radius(size) if config.mode == "fast" else 50


def chosen_method(method, config: SolverConfig, given: bool, hints: str) -> str:
    """The method a run takes (:data:`METHODS`): ``method``, or where None the mode's. "saliency"
    needs automatic hints: with hints given (``given``) or ``hints="none"`` it is an error."""
    if method is not None and method not in METHODS:
        raise ValueError(f"segment: method must be one of {METHODS} (or None: the mode's), got {method!r}")
    automatic = not given and hints == "auto"
    if method == "saliency" and not automatic:
        got = "fg_hint and bg_hint were given" if given else "hints='none' was asked for"
        raise ValueError(f"segment: method='saliency' makes the mask from the automatic hints' saliency map, "
                         f"but {got}; use method='dip' (the fit)")
    return method or ("saliency" if automatic and config.mode == "fast" else "dip")


# the classic answer's guided filter refines the rough object's edges; where the filtered mask
# and the rough object overlap by less than this IoU, the filter has washed the object out (a
# grey texture for guide: measured 0.57 -> 0.00 and 0.70 -> 0.04 IoU on two composites of 131;
# segmentation_hints.md), and the rough object is the answer
FILTER_AGREEMENT = 0.5


def refined_rough_object(image: torch.Tensor, rough: torch.Tensor) -> torch.Tensor:
    """The rough object (1 x 1 x H x W in {0, 1}) through fast mode's guided filter with the
    image (1 x 3 x H x W) as guide, clamped to [0, 1]; the rough object itself where the
    filter's mask (> 0.5) overlaps it by less than :data:`FILTER_AGREEMENT` (IoU)."""
    soft = guided_filter(image, rough, radius=fast_guide_radius(tuple(image.shape[-2:])), eps=1e-4).clamp(0, 1)
    filtered, kept = soft > 0.5, rough > 0.5
    union = (filtered | kept).sum()
    overlap = float((filtered & kept).sum() / union) if union else 1.0
    return soft if overlap >= FILTER_AGREEMENT else rough.float()


def classic_answer(image: torch.Tensor) -> dict[str, torch.Tensor]:
    """The classic answer for one 1 x 3 x H x W image: its saliency map above the Otsu threshold
    through fast mode's guided filter (:func:`refined_rough_object`), no fit. Returns 1 x 1 x H x W
    maps: "mask" ({0, 1}), "soft_mask", and the hints a fit would use, "fg" and "bg"."""
    fg, bg, rough = auto_hints(image)
    soft = refined_rough_object(image, rough)
    return {"mask": (soft > 0.5).float(), "soft_mask": soft, "fg": fg, "bg": bg}


def classic_progress(items: list, config: SolverConfig, unit: str = "image"):
    """(index, item) over ``items``, with a progress bar counting them when ``config.progress``
    and there are several (the classic answer takes about 1 s an item)."""
    bar = None
    if config.progress and len(items) > 1:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(items), desc="segment (saliency, no fit)", unit=unit, leave=True)
    try:
        for i, item in enumerate(items):
            yield i, item
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()


def _classic(image: torch.Tensor, config: SolverConfig) -> SegmentationResult:
    """:func:`classic_answer` as a result: no history, no nets; ``hints`` are the ones a fit would
    use (pass them back with method="dip"); the layers are the image cut by the mask."""
    start = time.perf_counter()
    out = classic_answer(image)
    mask = out["mask"]
    return SegmentationResult(task="segment", mask=hwc(mask[0]), soft_mask=hwc(out["soft_mask"][0]),
                              foreground=hwc((image * mask)[0]), background=hwc((image * (1 - mask))[0]),
                              seconds=time.perf_counter() - start, config=config,
                              hints={"fg": hwc(out["fg"][0]), "bg": hwc(out["bg"][0])}, method="saliency")


def segment_many(images: list, config: SolverConfig, fg_hints=None, bg_hints=None,
                 hints: str = "auto", method: str | None = None) -> list[SegmentationResult]:
    """:func:`segment` for several images of one size in one batched run (hints: one per image,
    or None; ``hints``: what runs for images without them; ``method``: see :func:`segment`)."""
    check_hints_option(hints, fg_hints is not None or bg_hints is not None)
    if (fg_hints is None) != (bg_hints is None):
        raise ValueError("segment: give both fg_hint and bg_hint, or neither; got "
                         f"fg_hint={'set' if fg_hints is not None else None}, "
                         f"bg_hint={'set' if bg_hints is not None else None}")
    chosen = chosen_method(method, config, fg_hints is not None, hints)
    many = len(images) > 1
    if fg_hints is not None and not (len(fg_hints) == len(bg_hints) == len(images)):
        raise ValueError(f"segment: expected one fg and one bg hint per image ({len(images)}), "
                         f"got {len(fg_hints)} and {len(bg_hints)}")
    dev = config.resolve_device()
    imgs = [load_image(im, f"images[{i}]" if many else "image", dev) for i, im in enumerate(images)]
    same_size(imgs, [f"images[{i}]" for i in range(len(imgs))])
    size = tuple(imgs[0].shape[-2:])
    fg = bg = None
    if fg_hints is not None:
        fg = torch.cat([load_hint(h, f"fg_hint[{i}]" if many else "fg_hint", size, dev) for i, h in enumerate(fg_hints)])
        bg = torch.cat([load_hint(h, f"bg_hint[{i}]" if many else "bg_hint", size, dev) for i, h in enumerate(bg_hints)])
    elif chosen == "saliency":
        results = [_classic(img, config.replace(seed=config.seed + b)) for b, img in classic_progress(imgs, config)]
        return _checked(described(results, dev, image=list(zip(images, imgs))))
    elif hints == "auto":
        fg, bg, _ = (torch.cat(maps) for maps in zip(*(auto_hints(img) for img in imgs)))
    defaults = SPEC.defaults_for(config.mode)
    stages = split_iterations(config.iterations, defaults.stages)
    seeds = [config.seed + i for i in range(len(imgs))]
    with timed_run(config, sum(stages), "segment") as (reporter, start):
        problem = SegmentationProblem(torch.cat(imgs), fg, bg, stages, seeds, fast=config.mode == "fast")
        run_problem(problem, config, config.lr or defaults.lr, reporter)
        best = problem.result()
        made = problem.result_made()
        results = []
        for b, img in enumerate(imgs):
            refined = guided_filter(img, best["soft_mask"][b:b + 1], radius=guide_radius(config, size), eps=1e-4)
            results.append(SegmentationResult(
                task="segment", mask=hwc((refined > 0.5).float()), soft_mask=hwc(best["soft_mask"][b]),
                foreground=hwc(best["foreground"][b]), background=hwc(best["background"][b]),
                history=item_history(reporter.history, b), seconds=time.perf_counter() - start,
                config=config.replace(seed=seeds[b]), fitted=problem.fitted(problem.inputs, b, made),
                hints=None if fg is None else {"fg": hwc(fg[b]), "bg": hwc(bg[b])}))
        described(results, dev, reporter, image=list(zip(images, imgs)),
                  fg_hint=None if fg_hints is None else list(zip(fg_hints, imgs)),
                  bg_hint=None if bg_hints is None else list(zip(bg_hints, imgs)))
        return _checked(results)


def _checked(results: list[SegmentationResult]) -> list[SegmentationResult]:
    """``results``, each warned of (:func:`warn_short_run`) where its mask is the trivial answer."""
    for r in results:
        message = trivial_mask_message(r.mask)
        if message is not None:
            warn_short_run(r, message)
    return results


# a mask covering less than this fraction of the image, or more than 1 minus it, is the trivial
# answer (everything background, or foreground), not a segmentation
TRIVIAL_MASK_FRACTION = 0.005


def trivial_mask_message(mask) -> str | None:
    """The warning for a binary mask (H x W [x T]) that is (nearly) all one value, or None."""
    covered = float(np.asarray(mask).mean())
    if TRIVIAL_MASK_FRACTION <= covered <= 1 - TRIVIAL_MASK_FRACTION:
        return None
    side = "empty" if covered < TRIVIAL_MASK_FRACTION else "full"
    return (f"the mask is {side} ({covered:.1%} of the image is foreground): the trivial answer, not a "
            f"segmentation; give hints, or more iterations")


def segment(image, config: SolverConfig | None = None, *, fg_hint=None, bg_hint=None, hints: str = "auto",
            method: str | None = None, iterations: int | None = None, seed: int | None = None,
            device: str | None = None, progress: bool | None = None) -> SegmentationResult:
    """Foreground/background segmentation, with hints: binary H x W maps marking sure foreground
    and sure background (keywords ``fg_hint`` and ``bg_hint``).

    hints: what runs when none are given. ``"auto"`` (default): hints from the image's saliency
        map (:func:`doubledip.engine.saliency.hints_from_saliency`: the most salient region,
        eroded, and the complement of the salient regions, dilated); ``"none"``: the authors'
        hint-free variant (weaker). ``r.hints`` holds the maps used ({"fg", "bg"}, H x W; None
        for "none"): edit them and pass them back as ``fg_hint`` / ``bg_hint``.
    method: ``"dip"``: the Double-DIP fit; ``"saliency"``: the classic answer, with automatic
        hints only: the saliency map above its Otsu threshold through a guided filter (radius
        1/8 of the short side), no fit (about 1 s at 128 x 128; ``foreground``/``background``
        are the image cut by the mask). None (default): "saliency" in fast mode with automatic
        hints (at or above the fit on every draw measured), "dip" otherwise. ``result.method`` says which ran.

    Returns ``mask`` (H x W in {0, 1}), ``soft_mask``, ``foreground``, ``background``.
    Default 2000 + 4000 iterations, lr 1e-3; the mask is refined by a guided filter (radius
    50). Fast mode: 200 + 400, stage 2 ending once the mask has settled, radius 1/8 of the
    short side (the fit; with automatic hints fast mode's default is the classic answer, above).
    """
    config = resolve(config, {"image": image, "fg_hint": fg_hint, "bg_hint": bg_hint}, iterations=iterations,
                     seed=seed, device=device, progress=progress)
    fg = None if fg_hint is None else [fg_hint]
    bg = None if bg_hint is None else [bg_hint]
    return segment_many([image], config, fg, bg, hints, method)[0]  # checks that both hints or neither came


# ---- the task's spec -----------------------------------------------------------------------

def export_recombination(names: list[str], result) -> dict:
    """The image is the mask's blend of the foreground and background layers."""
    return {
        "groups": {},
        "recombine": [{"name": "image", "formula": "mask * foreground + (1 - mask) * background",
                       "op": "blend", "weight": "mask", "a": "foreground", "b": "background"}],
        "not_included": [
            "the binary mask: the soft mask refined by a guided filter (radius 50, eps 1e-4; fast mode: "
            "radius 1/8 of the short side) with the input image as guide, then thresholded at 0.5",
            "the other stage end and the nets as the run ended: the result is the better of the two "
            "stage ends by PSNR (or the first iteration past 30 dB), and the files hold that "
            "iteration's generators (its weights, before the solver's update, and the inputs it ran "
            "on), which give its soft mask, foreground and background"]}


def bench_problem(size: int, batch: int, device, fast: bool = False) -> BenchProblem:
    images, mask = bench_inputs(size, batch, device)
    return BenchProblem(SegmentationProblem(images, mask, 1 - mask, DEFAULT_ITERATIONS, list(range(batch)), fast=fast), 1)


def evaluation_cases(suite: str, size: int) -> list:
    """quick: the horse composite with hints and without (automatic hints). full: also the
    astronaut on gravel with hints, the horse with ``hints="none"``, and the textured composites
    (``evaluation.cases.SEGMENT_COMPOSITES``) with automatic hints and with ``hints="none"``."""
    from doubledip.evaluation.cases import segment_case, segment_composites

    cases = [segment_case(size, hints=True), segment_case(size, hints=False)]
    if suite == "full":
        cases.append(segment_case(size, hints=True, foreground="astronaut", background="gravel"))
        cases.append(segment_case(size, hints="none"))
        cases += segment_composites(size, hints="auto") + segment_composites(size, hints="none")
    return cases


def baselines(case) -> dict:
    """With hints, the foreground hint as the mask. Without: an Otsu threshold of the grey image
    (the polarity that scores better against the truth), and the saliency map that automatic
    hints come from, thresholded alone (Otsu; with its seconds). The hint-free variant is a
    row of its own (the ``hints="none"`` cases)."""
    if "fg_hint" in case.kwargs:
        return {"fg hint": {"mask": case.kwargs["fg_hint"]}}
    from doubledip.evaluation.baselines import otsu_mask, saliency_threshold_mask

    image, truth = case.args[0], case.truth["mask"]
    otsu = otsu_mask(image)
    if metrics.iou(1 - otsu, truth) > metrics.iou(otsu, truth):
        otsu = 1 - otsu
    start = time.perf_counter()
    salient = saliency_threshold_mask(image)
    return {"otsu": {"mask": otsu},
            "saliency threshold": {"mask": salient, "seconds": time.perf_counter() - start}}


SPEC = register(TaskSpec(
    name="segment", cli_name="segment", summary="foreground/background segmentation",
    run=segment, run_many=segment_many, result=SegmentationResult,
    inputs=(Input("image", "image", "the image to segment"),
            Input("fg_hint", "map", "map marking sure foreground (needs bg_hint)", required=False,
                  batch_option="fg_hints"),
            Input("bg_hint", "map", "map marking sure background (needs fg_hint)", required=False,
                  batch_option="bg_hints")),
    options=(Option("hints", "with no --fg-hint/--bg-hint: auto (default) computes hints from a saliency map "
                    "(written as fg_hint.png, bg_hint.png); none runs the authors' hint-free variant",
                    type=str, choices=HINTS),
             Option("method", "dip: the Double-DIP fit; saliency: the classic answer with automatic hints, the "
                    "saliency map's threshold through a guided filter, no fit (default: saliency in fast mode "
                    "with automatic hints, else dip)", type=str, choices=METHODS)),
    defaults={"reference": Defaults(DEFAULT_ITERATIONS, DEFAULT_LR), "fast": Defaults(FAST_ITERATIONS, DEFAULT_LR)},
    export=export_recombination, bench=bench_problem,
    evaluation=Evaluation(cases=evaluation_cases, score=metrics.score_segment, baselines=baselines,
                          primary="iou", fields=("mask", "soft_mask"), quick_iterations=400),
))
