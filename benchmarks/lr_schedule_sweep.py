"""Learning-rate schedules for fast-mode separation on the texture demo, screened by branching.

    OMP_NUM_THREADS=1 python benchmarks/lr_schedule_sweep.py --images ../shared/data/reference_images \
        --seed 1 --iterations 5000 --trunk "0:1,5000:1" --branch-at 2500 \
        --tails "0:1,5000:1" "cos|0:1,2500:1,5000:0.05" -o sweep.json

The run (fast mode: bf16 generators, channels-last, no early stop) follows the ``--trunk`` schedule
up to ``--branch-at``; its state there (nets, Adam, best tracker) is copied and each ``--tail``
schedule continues from the copy to ``--iterations``. Iterations are deterministic given the seed,
so a tail's curve is that of one whole run under "trunk before the branch, tail after it".

A schedule is a factor of ``--lr`` (1e-3, fast mode's) given at iterations ``k:f``, interpolated
linearly between points (``cos|`` before the points: half-cosine segments), constant beyond the
last point. Every ``--log-every`` iterations the best-tracked layers are scored as in
time_to_quality.py (mean layer PSNR against the half-intensity layers).
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from time_to_quality import fast_cpu_optimizer, score_layers, texture_demo  # noqa: E402


def parse_schedule(spec: str):
    cosine = spec.startswith("cos|")
    points = [tuple(float(x) for x in p.split(":")) for p in spec.split("|")[-1].split(",")]
    points.sort()

    def scale(k: int) -> float:
        if k <= points[0][0]:
            return points[0][1]
        for (k0, f0), (k1, f1) in zip(points, points[1:]):
            if k0 <= k <= k1:
                t = (k - k0) / (k1 - k0) if k1 > k0 else 1.0
                if cosine:
                    t = (1 - math.cos(math.pi * t)) / 2
                return f0 + (f1 - f0) * t
        return points[-1][1]

    return scale


def main(argv=None) -> int:
    from doubledip.engine.tasks.separation import FAST_LR, SeparationProblem

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", required=True)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--iterations", type=int, default=5000)
    parser.add_argument("--lr", type=float, default=FAST_LR)
    parser.add_argument("--trunk", default="0:1")
    parser.add_argument("--branch-at", type=int, default=None, help="default: no branching (the trunk runs to the end)")
    parser.add_argument("--tails", nargs="*", default=[])
    parser.add_argument("--log-every", type=int, default=250)
    parser.add_argument("--target", type=float, default=24.15)
    parser.add_argument("-o", "--output", default=None)
    args = parser.parse_args(argv)
    mixture, truths = texture_demo(Path(args.images), args.size)
    T = args.iterations
    problem = SeparationProblem(mixture, (T,), [args.seed])
    state = (problem, fast_cpu_optimizer(problem, args.lr))

    def run(state, schedule, start, stop, label, curve):
        problem, opt = state
        t0 = time.perf_counter()
        for k in range(start, stop):
            last = k == T - 1
            log = (k + 1) % args.log_every == 0 or last
            opt.zero_grad()
            out = problem.step(0, k, last, log)
            out.loss.backward()
            opt.lr = args.lr * schedule(k)
            opt.step()
            if log:
                point = {"label": label, "iteration": k + 1, "seconds": time.perf_counter() - t0,
                         "lr": opt.lr, "recon_psnr": float(problem.tracker.psnr[0]),
                         "mean_layer_psnr": score_layers(problem.tracker.outputs, truths)}
                curve.append(point)
                print(json.dumps(point), flush=True)

    runs = {}
    trunk_curve: list = []
    branch = args.branch_at if args.branch_at is not None else T
    run(state, parse_schedule(args.trunk), 0, branch, "trunk", trunk_curve)
    runs["trunk " + args.trunk] = trunk_curve
    for tail in args.tails:
        branch_state = copy.deepcopy(state)
        curve = list(trunk_curve)
        run(branch_state, parse_schedule(tail), branch, T, tail, curve)
        runs[tail] = curve
    summary = {}
    for name, curve in runs.items():
        reached = next((p["iteration"] for p in curve if p["mean_layer_psnr"] >= args.target), None)
        at = {p["iteration"]: round(p["mean_layer_psnr"], 2) for p in curve if p["iteration"] in (4000, 4500, 5000, T)}
        summary[name] = {"reached_at": reached, "psnr_at": at, "final": curve[-1]["mean_layer_psnr"]}
        print(json.dumps({"run": name, **summary[name]}), flush=True)
    if args.output:
        Path(args.output).write_text(json.dumps({"args": vars(args), "summary": summary, "runs": runs}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
