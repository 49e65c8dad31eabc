"""Wall time until single-image separation reaches a quality target (the paper's texture demo).

    OMP_NUM_THREADS=1 python benchmarks/time_to_quality.py --images ../shared/data/reference_images \
        --mode fast --iterations 8000 --target 24.15

Both textures (texture12.jpg, texture16.jpg) are resized to 256 x 256 with Lanczos and mixed 1:1;
every ``--log-every`` iterations the result layers (reference mode: the best-tracked ones; fast
mode: the averaged ones) are scored (mean layer PSNR against the half-intensity layers, best
assignment) and the first time the target is reached is reported.
The default target is the authors' code after its default 8000 iterations: 24.15 dB in 2700 s on
1 thread (measured, PERFORMANCE.md and the fast-engine issue).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np


TEXTURES = ("texture12.jpg", "texture16.jpg")


def load_texture(path: Path, size: int) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB").resize((size, size), Image.LANCZOS), np.float32) / 255.0


def texture_demo(folder: Path, size: int):
    """The paper's texture demo: (the 1:1 mixture as a 1 x 3 x size x size tensor, the two
    half-intensity layers as size x size x 3 arrays). Raises FileNotFoundError naming what is missing."""
    from doubledip.engine.io import load_image

    paths = [Path(folder) / name for name in TEXTURES]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise FileNotFoundError(f"the texture demo needs {', '.join(missing)}")
    a, b = (load_texture(p, size) for p in paths)
    return load_image((a + b) / 2), [a / 2, b / 2]


def score_layers(layers: dict, truths) -> float:
    """Mean layer PSNR of the first image's {"layer_0", "layer_1"} (B x 3 x H x W) against the
    half-intensity layers, best assignment."""
    from doubledip.evaluation.metrics import layer_scores

    arrays = [layers[f"layer_{i}"][0].permute(1, 2, 0).float().cpu().numpy() for i in range(2)]
    return layer_scores(arrays, truths, with_ssim=False)["layer_psnr"]


def fast_cpu_optimizer(problem, lr: float):
    """Set ``problem``'s nets up as fast mode runs them on the CPU (float32, channels-last, no
    recomputation) and return the solver's Adam over their parameters."""
    import torch

    from doubledip.engine.adam import Adam
    from doubledip.engine.solver import ADAM_SQRT, fast_autocast_dtype

    problem.autocast_dtype = fast_autocast_dtype(torch.device("cpu"))
    for net in problem.nets.values():
        net.set_memory_format(torch.channels_last)
        net.set_low_memory(False)
    return Adam([p for p in problem.nets.parameters() if p.requires_grad], lr=lr, sqrt=ADAM_SQRT)


class ScoringReporter:
    """Stands in for the solver's progress reporter: scores the result layers (reference mode: the
    best-tracked ones; fast mode: the averaged ones) at every logged step."""

    def __init__(self, problem, truths, log_every):
        self.problem, self.truths, self.log_every = problem, truths, log_every
        self.start = time.perf_counter()
        self.curve = []
        self.history = []

    def log(self, record, advanced, outputs=None):
        point = {"iteration": record["iteration"] + 1, "seconds": time.perf_counter() - self.start,
                 "loss": float(record["loss"]), "mean_layer_psnr": score_layers(self.problem.result_layers(), self.truths)}
        self.curve.append(point)
        print(json.dumps(point), flush=True)

    def close(self):
        pass


def main(argv=None) -> int:
    import torch

    from doubledip.engine.config import SolverConfig
    from doubledip.engine.solver import run_problem
    from doubledip.engine.tasks.separation import DEFAULT_LR, FAST_LR, SeparationProblem

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", required=True, help="folder with texture12.jpg and texture16.jpg")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--mode", default="fast", choices=("reference", "fast"))
    parser.add_argument("--iterations", type=int, default=8000)
    parser.add_argument("--target", type=float, default=24.15)
    parser.add_argument("--log-every", type=int, default=250)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lr", type=float, default=None, help="default: the mode's (reference 5e-4, fast 1e-3)")
    parser.add_argument("-o", "--output", default=None)
    args = parser.parse_args(argv)
    try:
        mixture, truths = texture_demo(Path(args.images), args.size)
    except FileNotFoundError as e:
        print(f"time_to_quality: {e}", file=sys.stderr)
        return 2
    config = SolverConfig(iterations=args.iterations, mode=args.mode, seed=args.seed, log_every=args.log_every,
                          early_stop=False)
    problem = SeparationProblem(mixture, (args.iterations,), [args.seed], fast=args.mode == "fast")
    reporter = ScoringReporter(problem, truths, args.log_every)
    lr = args.lr or (FAST_LR if args.mode == "fast" else DEFAULT_LR)
    run_problem(problem, config, lr, reporter)
    reached = next((p for p in reporter.curve if p["mean_layer_psnr"] >= args.target), None)
    summary = {"mode": args.mode, "lr": lr, "size": args.size, "target": args.target, "threads": torch.get_num_threads(),
               "reached": reached, "final": reporter.curve[-1]}
    print(json.dumps(summary))
    if args.output:
        Path(args.output).write_text(json.dumps({"summary": summary, "curve": reporter.curve}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
