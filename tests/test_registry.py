"""The task registry: a task declared in one new module gets the CLI, batching, benchmarking,
export and evaluation with no edit anywhere else (a toy denoising task, written to a file here)."""
import importlib.util
import json
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

import doubledip as dd
from doubledip.engine.tasks import registry

TOY_MODULE = textwrap.dedent('''
    """A toy task: one DIP fitted to a noisy image (Deep Image Prior denoising)."""
    from dataclasses import dataclass, field
    import time

    import numpy as np
    import torch

    from doubledip.engine.config import SolverConfig, UNetConfig
    from doubledip.engine.io import load_image
    from doubledip.engine.losses import blend_sum, psnr
    from doubledip.engine.results import _ResultBase
    from doubledip.engine.solver import Step, run_problem, split_iterations
    from doubledip.engine.tasks.common import ImageProblem, bench_inputs, hwc, item_history, resolve, timed_run
    from doubledip.engine.tasks.registry import (BenchProblem, Defaults, Evaluation, Input, Option, TaskSpec,
                                                 register)
    from doubledip.evaluation.cases import Case
    from doubledip.evaluation.metrics import psnr as score_psnr

    NET = UNetConfig(3, 3, (8, 16), (0, 4), 3)


    @dataclass
    class DenoiseResult(_ResultBase):
        image: np.ndarray = field(default=None, repr=False)
        _IMAGE_FIELDS = ("image",)


    class DenoiseProblem(ImageProblem):
        def __init__(self, images, iterations, seeds, weight):
            super().__init__(seeds, images.device, tuple(images.shape[-2:]), [NET])
            self.target = self.pad(images)
            self.image = images
            self.weight = weight
            self.build({"net": (NET, ["image"])})
            self.inputs = {"image": self.noise(3)}
            self.stage_iterations = iterations

        def step(self, stage, k, last, log=False, ctx=None):
            (y,) = self.generate("net", [self.inputs["image"]], ctx)
            loss = self.weight * blend_sum(None, y, torch.zeros_like(y), self.target, "mse")
            self.output = self.crop(y.detach()).clamp(0, 1)
            return Step(loss, psnr(self.image, self.output))


    def denoise_many(images, config, weight=1.0):
        dev = config.resolve_device()
        imgs = torch.cat([load_image(im, f"images[{i}]", dev) for i, im in enumerate(images)])
        stages = split_iterations(config.iterations, SPEC.defaults_for(config.mode).stages)
        seeds = [config.seed + i for i in range(len(images))]
        with timed_run(config, sum(stages), "denoise") as (reporter, start):
            problem = DenoiseProblem(imgs, stages, seeds, weight)
            run_problem(problem, config, config.lr or SPEC.defaults_for(config.mode).lr, reporter)
            with torch.no_grad():  # the result: what the fitted weights give
                problem.step(0, 0, True)
            return [DenoiseResult(task="denoise", image=hwc(problem.output[b]), history=item_history(reporter.history, b),
                                  seconds=time.perf_counter() - start, config=config.replace(seed=seeds[b]),
                                  fitted=problem.fitted(problem.inputs, b)) for b in range(len(images))]


    def denoise(image, config=None, *, weight=1.0, iterations=None, seed=None, device=None, progress=None):
        config = resolve(config, {"image": image}, iterations=iterations, seed=seed, device=device, progress=progress)
        return denoise_many([image], config, weight)[0]


    def cases(suite, size):
        rng = np.random.default_rng(0)
        clean = np.full((size, size, 3), 0.5, np.float32)
        noisy = np.clip(clean + 0.1 * rng.standard_normal(clean.shape), 0, 1).astype(np.float32)
        return [Case("denoise", "flat", (noisy,), {}, {"image": clean}, "psnr", "a flat grey image with noise")]


    SPEC = register(TaskSpec(
        name="denoise", cli_name="toy-denoise", summary="a toy: one DIP fitted to a noisy image",
        run=denoise, run_many=denoise_many, result=DenoiseResult,
        inputs=(Input("image", "image", "the noisy image"),),
        options=(Option("weight", "the loss weight", type=float),),
        defaults={"reference": Defaults((50,), 1e-2), "fast": Defaults((20,), 1e-2)},
        export=lambda names, result: {"groups": {}, "recombine": [], "not_included": []},
        bench=lambda size, batch, device, fast=False: BenchProblem(DenoiseProblem(bench_inputs(size, batch, device)[0], (50,),
                                                                      list(range(batch)), 1.0), 0),
        evaluation=Evaluation(cases=cases, score=lambda out, truth: {"psnr": score_psnr(out["image"], truth["image"])},
                              baselines=lambda case: {"input": {"image": case.args[0]}}, primary="psnr",
                              fields=("image",), quick_iterations=3),
    ))
''')


@pytest.fixture
def toy(tmp_path):
    """The toy task's module, imported from its own file (nothing else is edited)."""
    path = tmp_path / "toy_denoise.py"
    path.write_text(TOY_MODULE)
    spec = importlib.util.spec_from_file_location("toy_denoise", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["toy_denoise"] = module
    spec.loader.exec_module(module)
    yield module
    registry.unregister("denoise")
    sys.modules.pop("toy_denoise", None)


def _png(path, seed=0, size=(24, 20)):
    rng = np.random.default_rng(seed)
    Image.fromarray((rng.random((*size, 3)) * 255).astype(np.uint8)).save(path)
    return path


def test_a_toy_task_module_is_served_by_the_api_cli_batch_bench_export_and_evaluation(toy, tmp_path):
    from doubledip.cli import main

    assert registry.get("denoise") is toy.SPEC and registry.get("toy-denoise") is toy.SPEC
    assert dd.denoise is toy.denoise
    img = np.random.default_rng(1).random((24, 20, 3)).astype(np.float32)

    # CLI: its subcommand, its option, one folder per image when several are given
    a, b = _png(tmp_path / "a.png"), _png(tmp_path / "b.png", 1)
    assert main(["toy-denoise", str(a), "-o", str(tmp_path / "one"), "--iterations", "2", "--weight", "2",
                 "--quiet"]) == 0
    meta = json.loads((tmp_path / "one" / "result.json").read_text())
    assert meta["task"] == "denoise" and meta["config"]["iterations"] == 2
    assert main(["toy-denoise", str(a), str(b), "-o", str(tmp_path / "two"), "--iterations", "2", "--quiet"]) == 0
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == ["a", "b"]

    # batching: image i as a run of its own with seed + i
    cfg = dd.SolverConfig(iterations=3, seed=4)
    batched = dd.batch("denoise", [img, img[::-1].copy()], cfg, weight=1.0)
    alone = dd.denoise(img[::-1].copy(), cfg.replace(seed=5))
    np.testing.assert_allclose(batched[1].image, alone.image, atol=1e-5)
    with pytest.raises(TypeError, match="unexpected options"):
        dd.batch("denoise", [img], cfg, hints=[img])

    # export: the fitted net reproduces the result (the toy's result is its final weights' output)
    d = alone.export(tmp_path / "export", "torchscript")
    np.testing.assert_allclose(dd.load_exported(d)["image"], alone.image, atol=1e-4)

    # evaluation: its cases, its score and its baseline
    (row,) = dd.evaluate(suite="quick", tasks=["denoise"], size=16, device="cpu")
    assert row["task"] == "denoise" and row["iterations"] == 3 and set(row["baselines"]) == {"input"}
    assert row["metrics"]["psnr"] > 0


def test_the_toy_task_is_benchmarked(toy):
    from doubledip.bench import bench

    row = bench("denoise", 32, "cpu", 1, 1)
    assert row["task"] == "denoise" and row["seconds_per_iteration"] > 0
    assert row["images_per_hour"] == pytest.approx(3600 / (50 * row["seconds_per_iteration"]), rel=1e-6)


def test_the_package_tasks_are_registered_with_complete_specs():
    names = registry.names()
    assert {"separate", "separate_pair", "segment", "dehaze", "remove_watermark", "remove_watermark_multi"} <= set(names)
    for spec in registry.tasks():
        assert callable(spec.run) and spec.inputs[0].required
        assert spec.defaults_for("reference").iterations_per_image >= 1
        assert spec.export is not None and spec.evaluation is not None, spec.name
        assert getattr(dd, spec.name) is spec.run


def test_a_clashing_task_name_is_refused(toy):
    import dataclasses

    with pytest.raises(ValueError, match="clashes"):
        registry.register(dataclasses.replace(toy.SPEC, name="other", cli_name="separate"))
    with pytest.raises(ValueError, match="unknown task 'nope'"):
        registry.get("nope")
