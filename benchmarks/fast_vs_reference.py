"""mode="fast" against mode="reference" on the quality suite's cases, at equal iteration budgets.

    OMP_NUM_THREADS=1 python benchmarks/fast_vs_reference.py --seeds 0 1 2 --size 128 \
        --tasks separate separate_pair dehaze segment remove_watermark [--iterations N] [-o out.json]

For every case and seed both modes run the same number of iterations (early stopping off, so the
budgets are equal); the table gives the case's primary metric (mean and spread over seeds), the
worst per-seed difference fast - reference, and wall seconds per iteration of each mode.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys

import torch


def main(argv=None) -> int:
    from doubledip.evaluation import cases as suite_cases
    from doubledip.evaluation.suite import SUITES, run_case

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", default=["separate", "separate_pair", "dehaze", "segment",
                                                       "remove_watermark"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--iterations", type=int, default=None, help="default: the quick suite's per task")
    parser.add_argument("-o", "--output", default=None)
    args = parser.parse_args(argv)

    cases = [c for c in suite_cases.quick_cases(args.size) if c.task in args.tasks]
    rows = []
    for case in cases:
        iterations = args.iterations or SUITES["quick"]["iterations"][case.task]
        per_mode = {}
        for mode in ("reference", "fast"):
            values, speeds = [], []
            for seed in args.seeds:
                # equal budgets: fast mode without early stopping
                row = run_case(case, iterations=iterations, repeats=1, mode=mode, device="cpu", seed=seed,
                               log_every=max(25, iterations // 10), with_baselines=False) if mode == "reference" \
                    else _run_fast_without_early_stop(case, iterations, seed)
                values.append(row["metrics"][case.primary])
                speeds.append(row["s_per_iter"])
                print(f"{case.task}/{case.name} {mode} seed {seed}: {case.primary}={values[-1]:.4f} "
                      f"{row['s_per_iter']:.4f} s/iter", file=sys.stderr, flush=True)
            per_mode[mode] = (values, speeds)
        ref, fast = per_mode["reference"], per_mode["fast"]
        diffs = [f - r for f, r in zip(fast[0], ref[0])]
        rows.append({
            "task": case.task, "case": case.name, "metric": case.primary, "iterations": iterations,
            "seeds": args.seeds, "reference": ref[0], "fast": fast[0],
            "mean_difference": statistics.mean(diffs), "worst_difference": min(diffs),
            "reference_s_per_iter": statistics.median(ref[1]), "fast_s_per_iter": statistics.median(fast[1]),
            "threads": torch.get_num_threads(),
        })
    print(f"{'task/case':40s} {'metric':22s} {'reference':>16s} {'fast':>16s} {'mean diff':>9s} "
          f"{'worst':>8s} {'speed-up':>8s}")
    for r in rows:
        def ms(v):
            return f"{statistics.mean(v):.3f}+-{statistics.pstdev(v):.3f}"
        print(f"{r['task'] + '/' + r['case']:40s} {r['metric']:22s} {ms(r['reference']):>16s} {ms(r['fast']):>16s} "
              f"{r['mean_difference']:+9.3f} {r['worst_difference']:+8.3f} "
              f"{r['reference_s_per_iter'] / r['fast_s_per_iter']:7.2f}x")
    if args.output:
        with open(args.output, "w") as fh:
            json.dump(rows, fh, indent=2)
    return 0


def _run_fast_without_early_stop(case, iterations, seed):
    """run_case in fast mode with early stopping off (equal iteration budgets)."""
    import doubledip as dd
    from doubledip.evaluation import suite

    original = dd.SolverConfig

    def config_without_early_stop(*a, **k):
        k.setdefault("early_stop", False)
        return original(*a, **k)

    dd.SolverConfig = config_without_early_stop
    try:
        return suite.run_case(case, iterations=iterations, repeats=1, mode="fast", device="cpu", seed=seed,
                              log_every=max(25, iterations // 10), with_baselines=False)
    finally:
        dd.SolverConfig = original


if __name__ == "__main__":
    sys.exit(main())
