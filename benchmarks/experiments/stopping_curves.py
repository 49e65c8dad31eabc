"""Curves of fast-mode single-image separation for screening stopping rules (issue: time to quality).

    OMP_NUM_THREADS=1 python benchmarks/experiments/stopping_curves.py --images DIR --seed 0 \\
        --iterations 3500 -o curve_seed0.json

Runs ``dd.separate(mixture, SolverConfig(mode="fast", iterations=N, seed=S, early_stop=False))`` on
the paper's texture demo (``time_to_quality.texture_demo``) and, every ``--log-every`` iterations,
records what a stopping rule could read at run time (the reconstruction PSNR, the exclusion term,
the loss, the mean absolute change of the result layers since the previous record) beside what
it cannot (the mean layer PSNR against the true layers). A stopping rule only reads the signals,
so the run a rule would have stopped is this run cut where the rule fires:
``stopping_rules.py`` replays the rules on these curves.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from time_to_quality import texture_demo  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", required=True, help="folder with texture12.jpg and texture16.jpg")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--iterations", type=int, default=3500)
    parser.add_argument("--default-call", action="store_true",
                        help="fast mode's default call instead: its iteration count, stopping rule and restarts")
    parser.add_argument("--log-every", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-o", "--output", required=True)
    parser.add_argument("--layers-every", type=int, default=500,
                        help="also keep the result layers every this many iterations (OUTPUT with .npz)")
    args = parser.parse_args(argv)
    mixture, truths = texture_demo(Path(args.images), args.size)

    import doubledip as dd
    from doubledip.evaluation.metrics import layer_scores

    curve, previous, kept = [], [None], {}
    start = time.perf_counter()

    def record(entry):
        layers = (entry.get("outputs") or {}).get("layers")
        if layers is None:
            return
        now = np.stack(layers)
        change = None if previous[0] is None else float(np.abs(now - previous[0]).mean())
        previous[0] = now
        if (int(entry["iteration"]) + 1) % args.layers_every == 0:
            kept[f"layers_{int(entry['iteration']) + 1}"] = now.astype(np.float16)
        curve.append({"iteration": int(entry["iteration"]) + 1, "seconds": time.perf_counter() - start,
                      "loss": float(entry["loss"]), "psnr": float(entry["psnr"]),
                      "exclusion": float(entry["exclusion"]), "reconstruction": float(entry["reconstruction"]),
                      "layer_change": change,
                      "mean_layer_psnr": layer_scores(layers, truths, with_ssim=False)["layer_psnr"]})

    config = dd.SolverConfig(iterations=None if args.default_call else args.iterations, mode="fast",
                             seed=args.seed, log_every=args.log_every, early_stop=None if args.default_call else False,
                             callback=record, device="cpu", threads=1)
    start = time.perf_counter()
    result = dd.separate(mixture, config)
    final = layer_scores(result.layers, truths, with_ssim=False)["layer_psnr"]
    np.savez_compressed(Path(args.output).with_suffix(".npz"), mixture=mixture, **kept)
    from stopping_rules import collapse_ratio  # the collapse test's value at 1000 (attempt 0), when kept

    ratio = collapse_ratio(Path(args.output).with_suffix(".npz"))
    Path(args.output).write_text(json.dumps({
        "seed": args.seed, "size": args.size, "iterations": None if args.default_call else args.iterations,
        "default_call": args.default_call, "seconds": result.seconds, "mean_layer_psnr": final,
        "stop_reason": result.stop_reason, "stopped_at": result.stopped_at,
        "restarts": result.restarts, "warnings": result.warnings, "collapse_test_at_1000": ratio,
        "curve": curve}, indent=1))
    best = max(curve, key=lambda p: p["mean_layer_psnr"])
    print(f"seed {args.seed}: result {final:.2f} dB ({result.stop_reason}, restarts {result.restarts}), "
          f"peak {best['mean_layer_psnr']:.2f} dB at {best['iteration']}, "
          f"end {curve[-1]['mean_layer_psnr']:.2f} dB, {result.seconds:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
