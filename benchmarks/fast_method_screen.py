"""Screen fast-mode method changes for separation on the texture demo: generator shape, lr
schedule, and averaging the outputs over iterations.

    OMP_NUM_THREADS=1 python benchmarks/fast_method_screen.py --images ../shared/data/reference_images \
        --seed 0 --iterations 4000 --kernel-size 3 --ema 0.9 0.97 0.99 -o screen.json

One run of fast-mode separation (float32 on the CPU, channels-last) with the layer generators'
``--kernel-size`` / ``--channels`` in place of the paper's, the lr ``--schedule`` (factors of
``--lr``, syntax of lr_schedule_sweep.py). At every tracked step (every 8 iterations) the current
layers, in the image's orientation, also feed exponential moving averages with the ``--ema``
decays (per tracked step: 0.97 averages over about 270 iterations), and each average's spread
(a moving average, same decay, of the layers' mean squared deviation from it) is logged. Every ``--log-every``
iterations the best-tracked layers (what the engine returns) and each average are scored as in
time_to_quality.py: mean layer PSNR against the half-intensity layers, best assignment.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from lr_schedule_sweep import parse_schedule  # noqa: E402
from time_to_quality import fast_cpu_optimizer, score_layers, texture_demo  # noqa: E402


def main(argv=None) -> int:
    from doubledip.engine import config as config_module
    from doubledip.engine.solver import OutputAverage
    from doubledip.engine.tasks import separation

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", required=True)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--iterations", type=int, default=4000)
    parser.add_argument("--lr", type=float, default=separation.FAST_LR)
    parser.add_argument("--schedule", default="0:1")
    parser.add_argument("--kernel-size", type=int, default=config_module.LAYER5.kernel_size)
    parser.add_argument("--channels", type=int, nargs="*", default=None, help="per level (default: the paper's)")
    parser.add_argument("--ema", type=float, nargs="*", default=[])
    parser.add_argument("--augment-until", type=int, default=None,
                        help="from this iteration on, every iteration uses the identity (no flips/rotations)")
    parser.add_argument("--ramp-until", type=int, default=None,
                        help="end the input-noise ramp here (the paper: 1000), in ten equal steps")
    parser.add_argument("--sigma-after", type=float, default=None,
                        help="the input noise's sigma after the ramp (the paper: 1/1000)")
    parser.add_argument("--log-every", type=int, default=250)
    parser.add_argument("--target", type=float, default=24.15)
    parser.add_argument("-o", "--output", default=None)
    args = parser.parse_args(argv)

    shape = {"kernel_size": args.kernel_size}
    if args.channels:
        shape["channels"] = tuple(args.channels)
    separation.LAYER5 = dataclasses.replace(config_module.LAYER5, **shape)  # read by SeparationProblem
    if args.augment_until is not None:
        paper_index = separation.augmentation_index
        separation.augmentation_index = lambda k, last: 0 if k >= args.augment_until else paper_index(k, last)
    if args.ramp_until is not None or args.sigma_after is not None:
        ramp_end = args.ramp_until or separation.NOISE_RAMP_END  # compressed into fewer iterations
        after = 1 / 1000 if args.sigma_after is None else args.sigma_after
        step = max(1, ramp_end // 10)
        separation.noise_sigma = lambda k, last, *_: 0.0 if last else ((k // step) / 1000 if k < ramp_end else after)
    mixture, truths = texture_demo(Path(args.images), args.size)
    T = args.iterations
    problem = separation.SeparationProblem(mixture, (T,), [args.seed])
    opt = fast_cpu_optimizer(problem, args.lr)
    schedule = parse_schedule(args.schedule)

    averages = {d: OutputAverage(d) for d in args.ema}
    spread = {d: 0.0 for d in args.ema}  # moving average of the mean squared deviation from each average
    tracker_update = problem.tracker.update

    def update_and_average(quality, outputs):  # the current layers at every tracked step
        tracker_update(quality, outputs)
        for d, avg in averages.items():
            if avg.outputs is not None:  # both layers have one size: the mean over the pair
                deviation = sum(float((outputs[k] - avg.outputs[k]).pow(2).mean()) for k in avg.outputs) / 2
                spread[d] = d * spread[d] + (1 - d) * deviation
            avg.update(outputs)

    problem.tracker.update = update_and_average

    curve = []
    t0 = time.perf_counter()
    for k in range(T):
        last = k == T - 1
        log = (k + 1) % args.log_every == 0 or last
        opt.zero_grad()
        out = problem.step(0, k, last, log)
        out.loss.backward()
        opt.lr = args.lr * schedule(k)
        opt.step()
        if log:
            seconds = time.perf_counter() - t0
            point = {"iteration": k + 1, "seconds": round(seconds, 1), "lr": opt.lr,
                     "recon_psnr": round(float(problem.tracker.psnr[0]), 3),
                     "best": round(score_layers(problem.tracker.outputs, truths), 3)}
            for d, avg in averages.items():
                point[f"ema_{d}"] = round(score_layers(avg.outputs, truths), 3)
                point[f"spread_{d}"] = float(f"{spread[d]:.4g}")
            curve.append(point)
            print(json.dumps(point), flush=True)
    keys = ["best"] + [f"ema_{d}" for d in args.ema]
    summary = {key: {"reached_at": next((p["iteration"] for p in curve if p[key] >= args.target), None),
                     "final": curve[-1][key], "max": max(p[key] for p in curve)} for key in keys}
    summary["s_per_iter"] = round(curve[-1]["seconds"] / T, 4)
    print(json.dumps(summary), flush=True)
    if args.output:
        Path(args.output).write_text(json.dumps({"args": vars(args), "summary": summary, "curve": curve}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
