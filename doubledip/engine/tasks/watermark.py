"""Watermark removal: one image with a hint (ALGORITHM.md 6.5), several images without (6.6)."""
from __future__ import annotations

import time

import torch

from doubledip.engine.config import LAYER5, MULTI_WATERMARK, WATERMARK_MASK, SolverConfig, UNetConfig
from doubledip.engine.inputs import Augmentations
from doubledip.engine.io import describe_input, load_hint, load_image
from doubledip.engine.losses import blend_sum, masked_l1, psnr
from doubledip.engine.post import median_of_runs
from doubledip.engine.results import MultiWatermarkResult, WatermarkResult, describe_run
from doubledip.engine.solver import RunContext, Snapshot, Step, derive_seed, run_problem, split_iterations
from doubledip.engine.tasks.common import ImageProblem, bench_inputs, described, hwc, item_history, resolve, same_size, timed_run
from doubledip.engine.tasks.registry import BenchProblem, Defaults, Evaluation, Input, Option, TaskSpec, register
from doubledip.evaluation import metrics

DEFAULT_LR = 1e-3
DEFAULT_REPEATS = 3
HINT_ITERATIONS = (4000, 7000)
# fast mode: a fifth of the steps per repeat, the repeats kept (their median gains more than
# longer runs do: benchmarks/experiments/suite_fast_vs_reference.md)
FAST_HINT_ITERATIONS = (800, 1400)
# fast mode, hinted: inside the region the biharmonic inpainting votes with the repeats (their
# per-pixel median) and the vote is averaged with it (blend_with_inpainting). One fit can fail
# (8 dB beside siblings at 32), the inpainting has no seed; over the screen's 10 sets the result
# was 20.9 dB mean against 20.3 (inpainting) and 19.0 (the median), worst -2.2 dB against the
# inpainting (where all three fits were worse than it)
# (benchmarks/experiments/suite_fast_vs_reference.md, "The inpainting votes with the repeats")
FAST_METHOD = "dip+inpainting"
METHODS = ("dip", "inpainting")  # remove_watermark(method=...): the fit, or the classic inpainting alone
JOINT = "clean_watermark"  # stage 2's group of both nets (begin_stage)
MULTI_ITERATIONS = (4000,)
# fast mode, several images: one run of 2800 iterations, about a quarter of reference mode's
# 3 x 4000. Unlike the hinted task, one longer run beats the median of shorter ones here (seed 0:
# 2800 x 1 18.4 dB, 1400 x 2 15.2, 800 x 3 16.5, 1600 x 1 17.6; reference 20.0:
# benchmarks/experiments/suite_fast_vs_reference.md)
FAST_MULTI_ITERATIONS = (2800,)
FAST_MULTI_REPEATS = 1
CLEAN = UNetConfig(2, 3, LAYER5.channels, LAYER5.skip_channels, 5)
MULTI_WATERMARK_NET = UNetConfig(2, 3, MULTI_WATERMARK.channels, MULTI_WATERMARK.skip_channels, 3)
VISIBLE = 0.1  # multi-image: pixels whose median(m * w) is below this keep the input


def augmentation_index(k: int, last: bool) -> int:
    """k % 4 in {1, 2, 3}: identity; else (k // 2) % 8; the last: identity."""
    if last or k % 4:
        return 0
    return (k // 2) % 8


def ramp_sigma(k: int, last: bool, every: int) -> float:
    return 0.0 if last else (k // every) / 1000


class HintedWatermarkProblem(ImageProblem):
    """image: B x 3 x H x W, hint: B x 1 x H x W; one problem per image."""

    def __init__(self, image, hint, iterations, seeds):
        super().__init__(seeds, image.device, tuple(image.shape[-2:]), [CLEAN, WATERMARK_MASK])
        self.image, self.hint = image, hint
        self.targets = Augmentations(self.pad(image))
        self.hints = Augmentations(self.pad(hint))
        # clean and watermark share an architecture: stage 1 fits the clean net alone, stage 2
        # runs both as one group (begin_stage)
        self.build({"clean": (CLEAN, ["clean"]), "watermark": (CLEAN, ["watermark"]),
                    "mask": (WATERMARK_MASK, ["mask"])})
        self.inputs = {name: self.noise_augmented(2) for name in ("clean", "watermark", "mask")}
        self.stage_iterations = iterations
        self.outputs = None
        self.made: Snapshot | None = None  # what made the outputs (set at the last step): for export

    def begin_stage(self, stage: int) -> bool:
        # stage 2 runs the clean and the watermark nets every step: one group from here on
        if stage == 1 and "clean" in self.nets:
            self.merge_groups("clean", "watermark", JOINT)
            return True
        return False

    def step(self, stage: int, k: int, last: bool, log: bool = False, ctx: RunContext | None = None) -> Step:
        a = augmentation_index(k, last)
        sigma = ramp_sigma(k, last, 300 if stage == 0 else 700)
        target, h = self.targets[a], self.hints[a]
        clean_in = self.perturbed(self.inputs["clean"][a], sigma, stage, k, 0)
        if stage == 0:
            (clean,) = self.generate("clean", [clean_in], ctx)
        else:
            watermark_in = self.perturbed(self.inputs["watermark"][a], sigma, stage, k, 1)
            clean, w = self.generate(JOINT, [clean_in, watermark_in], ctx)
        loss = masked_l1(clean, target, 1 - h)
        quality = None
        if stage == 1:
            (m,) = self.generate("mask", [self.inputs["mask"][a]], ctx)  # the mask input is never perturbed
            # 0.5 * L1(h*m*w + (1-m)*clean, I): the blend with a = h*w
            loss = loss + 0.5 * blend_sum(m, h * w, clean, target, "l1")
            if last or log:
                quality = psnr(target, m.detach() * h * w.detach() + (1 - m.detach()) * clean.detach())
            if last:  # a == 0 at the last iteration: the outputs are in the image's orientation
                self.outputs = {"clean": self.crop(clean.detach()), "watermark": self.crop(w.detach()),
                                "mask": self.crop(m.detach())}
                # what made them, for export: this step's weights (before the solver's update);
                # the inputs are the fixed ones (sigma 0 and no augmentation at the last step)
                self.made = Snapshot(self.nets, self.batch)
                self.made.update()
        return Step(loss, quality)


class MultiWatermarkProblem(ImageProblem):
    """N images (each 1 x 3 x H x W) sharing one watermark: one problem."""

    def __init__(self, images: list[torch.Tensor], iterations, seed):
        super().__init__([seed], images[0].device, tuple(images[0].shape[-2:]), [CLEAN, MULTI_WATERMARK])
        self.images = images
        self.targets = [Augmentations(self.pad(im)) for im in images]
        self.clean_names = [f"clean_{i}" for i in range(len(images))]
        # the N clean nets run as one grouped launch
        self.build({"cleans": (CLEAN, self.clean_names), "mask": (MULTI_WATERMARK, ["mask"]),
                    "watermark": (MULTI_WATERMARK_NET, ["watermark"])})
        self.inputs = {name: self.noise_augmented(2) for name in self.clean_names + ["mask", "watermark"]}
        self.stage_iterations = iterations
        self.outputs = None
        self.made: Snapshot | None = None  # what made the outputs (set at the last step): for export

    def step(self, stage: int, k: int, last: bool, log: bool = False, ctx: RunContext | None = None) -> Step:
        a = augmentation_index(k, last)
        sigma = ramp_sigma(k, last, 400)  # the clean nets' inputs only
        (w,) = self.generate("watermark", [self.inputs["watermark"][a]], ctx)
        (m,) = self.generate("mask", [self.inputs["mask"][a]], ctx)
        cleans = self.generate("cleans", [self.perturbed(self.inputs[n][a], sigma, stage, k, i)
                                          for i, n in enumerate(self.clean_names)], ctx)
        targets = [t[a] for t in self.targets]  # each augmented copy made once per step
        loss = sum(blend_sum(m, w, c, targets[i], "l1") for i, c in enumerate(cleans))
        quality = None
        if last or log:
            quality = psnr(targets[0], m.detach() * w.detach() + (1 - m.detach()) * cleans[0].detach())
        if last:
            self.outputs = {"watermark": self.crop(w.detach()), "mask": self.crop(m.detach()),
                            "cleans": [self.crop(c.detach()) for c in cleans]}
            # what made them (the last step's weights, before the solver's update; fixed inputs)
            self.made = Snapshot(self.nets, self.batch)
            self.made.update()
        return Step(loss, quality)


def inpainted(image: torch.Tensor, hint: torch.Tensor) -> torch.Tensor:
    """``image`` with the region ``hint > 0.5`` filled by biharmonic inpainting (:func:`inpaint_hint`).
    image: B x 3 x H x W; hint: B x 1 x H x W -> B x 3 x H x W."""
    from doubledip.evaluation.baselines import inpaint_hint

    return torch.stack([torch.from_numpy(inpaint_hint(hwc(image[b]), hint[b, 0].cpu().numpy())).permute(2, 0, 1)
                        for b in range(image.shape[0])]).to(image)


def blend_with_inpainting(image: torch.Tensor, hint: torch.Tensor, cleans: list[torch.Tensor]) -> torch.Tensor:
    """The repeats' median outside the region (hint <= 0.5); inside it the inpainting votes as one
    more repeat (the per-pixel median of the repeats and the inpainting, the middle two averaged
    for an even count) and the vote is averaged with the inpainting. A single fit can fail (8 dB
    where its siblings reach 32); the vote drops it and the average bounds what a failed
    majority costs. image: B x 3 x H x W; cleans: the repeats' (each B x 3 x H x W);
    hint: B x 1 x H x W -> B x 3 x H x W."""
    filled = inpainted(image, hint)
    # the median by sorting, the middle two averaged for an even count (torch.median takes the
    # lower one; torch.quantile refuses inputs over 2**24 elements, a 2048 px image here)
    ranked = torch.stack([*cleans, filled]).sort(dim=0).values
    n = ranked.shape[0]
    vote = (ranked[(n - 1) // 2] + ranked[n // 2]) / 2
    return torch.where(hint > 0.5, (vote + filled) / 2, median_of_runs(cleans))


def _classic(image: torch.Tensor, hint: torch.Tensor, config: SolverConfig, seeds: list) -> list[WatermarkResult]:
    """The region inpainted, no fit (no history, no nets): ``watermark`` is the input inside the
    region (what the inpainting replaced), ``mask`` the region. image: B x 3 x H x W."""
    start = time.perf_counter()
    region = (hint > 0.5).to(image)
    clean = (1 - hint) * image + hint * inpainted(image, hint)
    return [WatermarkResult(task="remove_watermark", image=hwc(clean[b]), watermark=hwc(region[b] * image[b]),
                            mask=hwc(region[b]), seconds=time.perf_counter() - start,
                            config=config.replace(seed=seeds[b]), method="inpainting")
            for b in range(image.shape[0])]


def remove_watermark_many(images: list, config: SolverConfig, hints: list, method: str = "dip",
                          keep_fit: bool = False) -> list[WatermarkResult]:
    """:func:`remove_watermark` for several (image, hint) of one size in one batched run."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if len(hints) != len(images):
        raise ValueError(f"remove_watermark: expected one hint per image ({len(images)}), got {len(hints)}")
    dev = config.resolve_device()
    many = len(images) > 1
    imgs = [load_image(im, f"images[{i}]" if many else "image", dev) for i, im in enumerate(images)]
    same_size(imgs, [f"images[{i}]" for i in range(len(imgs))])
    size = tuple(imgs[0].shape[-2:])
    hint = torch.cat([load_hint(h, f"hints[{i}]" if many else "hint", size, dev) for i, h in enumerate(hints)])
    image = torch.cat(imgs)
    seeds = [config.seed + i for i in range(len(imgs))]
    if method == "inpainting":
        return described(_classic(image, hint, config, seeds), dev,
                         image=list(zip(images, imgs)), hint=list(zip(hints, imgs)))
    defaults = SPEC.defaults_for(config.mode)
    stages = split_iterations(config.iterations, defaults.stages)
    repeats = config.repeats or defaults.repeats
    runs = []
    with timed_run(config, sum(stages) * repeats, "remove-watermark") as (reporter, start):
        for r in range(repeats):
            problem = HintedWatermarkProblem(image, hint, stages, [derive_seed(s, 10, r) for s in seeds])
            run_problem(problem, config, config.lr or defaults.lr, reporter, extra={"repeat": r})
            runs.append(problem.outputs)
        method = FAST_METHOD if config.mode == "fast" and not keep_fit else "dip"
        if method == FAST_METHOD:  # the fits and the inpainting combined inside the region
            clean = blend_with_inpainting(image, hint, [o["clean"] for o in runs])
        else:
            clean = median_of_runs([o["clean"] for o in runs])
        final = (1 - hint) * image + hint * clean
        watermark = median_of_runs([o["watermark"] for o in runs])
        mask = median_of_runs([o["mask"] for o in runs])
        return described([WatermarkResult(
            task="remove_watermark", image=hwc(final[b]), watermark=hwc(watermark[b]), mask=hwc(mask[b]), method=method,
            history=item_history(reporter.history, b), seconds=time.perf_counter() - start,
            config=config.replace(seed=seeds[b]),
            fitted=problem.fitted({n: v[0] for n, v in problem.inputs.items()}, b, problem.made)) for b in range(len(imgs))],
            dev, reporter, image=list(zip(images, imgs)), hint=list(zip(hints, imgs)))


def remove_watermark(image, hint, config: SolverConfig | None = None, *, method: str = "dip",
                     keep_fit: bool = False, iterations: int | None = None, seed: int | None = None, device: str | None = None,
                     progress: bool | None = None) -> WatermarkResult:
    """Remove a watermark whose region ``hint`` marks (1 over the watermark, 0 elsewhere).

    Returns ``image`` (clean H x W x 3: the input outside the hint), ``watermark`` and ``mask``.
    Default 4000 + 7000 iterations, lr 1e-3, 3 repeats combined by a per-pixel median; fast mode
    800 + 1400 (3 repeats), the region then combined with its biharmonic inpainting: the mean of
    (the median of the repeats and the inpainting) and the inpainting (``result.method ==
    "dip+inpainting"``; ``keep_fit=True``: the repeats' median alone).
    ``method="inpainting"``: the classic answer alone, the region filled by biharmonic inpainting
    in a fraction of a second, no fit (``watermark``: the input inside the region; ``mask``: the
    region).
    """
    config = resolve(config, {"image": image, "hint": hint}, iterations=iterations, seed=seed, device=device,
                     progress=progress)
    return remove_watermark_many([image], config, [hint], method, keep_fit)[0]


def remove_watermark_multi(images, config: SolverConfig | None = None, *, iterations: int | None = None,
                           seed: int | None = None, device: str | None = None,
                           progress: bool | None = None) -> MultiWatermarkResult:
    """Remove one watermark shared by several images of one size (no hint needed).

    Returns ``images`` (clean, H x W x 3 each), ``watermark`` (median of mask x watermark, values
    below 0.1 zeroed) and ``mask``. Default 4000 iterations, lr 1e-3, 3 repeats with a median;
    fast mode one run of 2800.
    """
    config = resolve(config, {"images": images}, iterations=iterations, seed=seed, device=device, progress=progress)
    if isinstance(images, (str, bytes)) or not hasattr(images, "__len__"):
        raise TypeError(f"images must be a list of images, got {type(images).__name__}")
    if len(images) < 2:
        raise ValueError(f"remove_watermark_multi needs at least 2 images sharing a watermark, got {len(images)}")
    dev = config.resolve_device()
    imgs = [load_image(im, f"images[{i}]", dev) for i, im in enumerate(images)]
    same_size(imgs, [f"images[{i}]" for i in range(len(imgs))])
    defaults = MULTI_SPEC.defaults_for(config.mode)
    stages = split_iterations(config.iterations, defaults.stages)
    repeats = config.repeats or defaults.repeats
    runs = []
    with timed_run(config, sum(stages) * repeats, "remove-watermark-multi") as (reporter, start):
        for r in range(repeats):
            problem = MultiWatermarkProblem(imgs, stages, derive_seed(config.seed, 11, r))
            run_problem(problem, config, config.lr or defaults.lr, reporter, extra={"repeat": r})
            runs.append(problem.outputs)
        visible = median_of_runs([o["mask"] * o["watermark"] for o in runs])
        keep = (visible < VISIBLE).float()
        cleans = [median_of_runs([o["cleans"][i] for o in runs]) for i in range(len(imgs))]
        finals = [keep * im + (1 - keep) * c for im, c in zip(imgs, cleans)]
        result = MultiWatermarkResult(
            task="remove_watermark_multi", images=[hwc(f) for f in finals],
            watermark=hwc(visible * (1 - keep)), mask=hwc(median_of_runs([o["mask"] for o in runs])),
            history=reporter.history, seconds=time.perf_counter() - start, config=config,
            fitted=problem.fitted({n: v[0] for n, v in problem.inputs.items()}, 0, problem.made))
        inputs = {f"images[{i}]": describe_input(im, tuple(t.shape[-2:])) for i, (im, t) in enumerate(zip(images, imgs))}
        return describe_run(result, dev, inputs, reporter)


# ---- the tasks' specs ----------------------------------------------------------------------

REPEATS = Option("repeats", "independent runs, median-combined (default 3; fast mode's several-image task: 1)",
                 type=int, in_config=True)
_LAST_RUN = ("repeats: the task fits several independent runs and takes per-pixel medians; "
             "these are the generators of the last run only")


def export_recombination(names: list[str], result) -> dict:
    """The image is the mask's blend of the (hinted) watermark and the clean image."""
    return {
        "groups": {},
        "recombine": [{"name": "image", "formula": "mask * hint * watermark + (1 - mask) * clean, "
                       "hint being the watermark-region map given to the task (not exported)",
                       "op": None}],
        "not_included": [_LAST_RUN, "the final image: (1 - hint) * input + hint * clean; in fast mode "
                         "(result.method 'dip+inpainting') clean is, where hint > 0.5, the mean of the region's "
                         "biharmonic inpainting and the median of the repeats' clean images and that inpainting"]}


def export_multi_recombination(names: list[str], result) -> dict:
    """Each image is the mask's blend of the shared watermark and its clean image."""
    cleans = sorted((n for n in names if n.startswith("clean_")), key=lambda n: int(n.split("_")[1]))
    return {
        "groups": {"cleans": cleans},
        "recombine": [{"name": f"image_{n.split('_')[1]}", "formula": f"mask * watermark + (1 - mask) * {n}",
                       "op": "blend", "weight": "mask", "a": "watermark", "b": n} for n in cleans],
        "not_included": [
            _LAST_RUN,
            "the final images and watermark: pixels where the median of mask * watermark is "
            "below 0.1 keep the input; the watermark field is mask * watermark elsewhere"]}


def bench_problem(size: int, batch: int, device, fast: bool = False) -> BenchProblem:
    images, mask = bench_inputs(size, batch, device)
    return BenchProblem(HintedWatermarkProblem(images, mask, HINT_ITERATIONS, list(range(batch))), 1)


def evaluation_cases(suite: str, size: int) -> list:
    from doubledip.evaluation.cases import remove_watermark_case

    if suite == "quick":
        return [remove_watermark_case(size)]
    return [remove_watermark_case(size), remove_watermark_case(size, "astronaut")]


def multi_evaluation_cases(suite: str, size: int) -> list:
    from doubledip.evaluation.cases import remove_watermark_multi_case

    return [remove_watermark_multi_case(size)]


def baselines(case) -> dict:
    """The watermarked input itself, and the classic answer: the hinted region inpainted from its
    border (biharmonic; with its seconds)."""
    from doubledip.evaluation.baselines import inpaint_hint

    start = time.perf_counter()
    filled = inpaint_hint(*case.args)
    return {"input": {"image": case.args[0]},
            "biharmonic inpainting": {"image": filled, "seconds": time.perf_counter() - start}}


def multi_baselines(case) -> dict:
    """The watermarked inputs themselves."""
    return {"input": {"images": list(case.args[0])}}


SPEC = register(TaskSpec(
    name="remove_watermark", cli_name="remove-watermark", summary="remove a watermark inside a hinted region",
    run=remove_watermark, run_many=remove_watermark_many, result=WatermarkResult,
    inputs=(Input("image", "image", "the watermarked image"),
            Input("hint", "map", "map that is 1 over the watermark's region", batch_option="hints")),
    options=(REPEATS,
             Option("method", "dip: the Double-DIP fit (default); inpainting: the classic answer, the region "
                    "filled by biharmonic inpainting, a fraction of a second, no fit", type=str, choices=METHODS),
             Option("keep_fit", "fast mode: fill the region with the fit alone (default: the fit combined "
                             "with the region's biharmonic inpainting)", flag=True)),
    defaults={"reference": Defaults(HINT_ITERATIONS, DEFAULT_LR, repeats=DEFAULT_REPEATS),
              "fast": Defaults(FAST_HINT_ITERATIONS, DEFAULT_LR, repeats=DEFAULT_REPEATS)},
    export=export_recombination, bench=bench_problem,
    evaluation=Evaluation(cases=evaluation_cases, score=metrics.score_remove_watermark, baselines=baselines,
                          primary="psnr_region", fields=("image", "watermark", "mask"), quick_iterations=400),
))

MULTI_SPEC = register(TaskSpec(
    name="remove_watermark_multi", cli_name="remove-watermark-multi",
    summary="remove one watermark shared by several images",
    run=remove_watermark_multi, result=MultiWatermarkResult,
    not_batched="remove_watermark_multi already fits several images jointly; "
                "call dd.remove_watermark_multi(images) per set instead",
    inputs=(Input("images", "images", "two or more images of one size sharing a watermark"),),
    options=(REPEATS,),
    defaults={"reference": Defaults(MULTI_ITERATIONS, DEFAULT_LR, repeats=DEFAULT_REPEATS),
              "fast": Defaults(FAST_MULTI_ITERATIONS, DEFAULT_LR, repeats=FAST_MULTI_REPEATS)},
    export=export_multi_recombination,
    evaluation=Evaluation(cases=multi_evaluation_cases, score=metrics.score_remove_watermark_multi,
                          baselines=multi_baselines, primary="psnr_region", fields=("images", "watermark", "mask"),
                          quick_iterations=300),
))

