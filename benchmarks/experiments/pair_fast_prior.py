"""Fast two-image separation: how long the pull of the mixing weights toward 0.5 should last,
and the learning rate (issue 16: fewer iterations to the same quality).

    OMP_NUM_THREADS=1 python -m benchmarks.experiments.pair_fast_prior -o pair_fast_prior.json [--table]

Per (prior length, lr, seed): the quick suite's pair case (128 x 128) in fast mode for 2500
iterations, logged every 250 (the pair's result at iteration k is its best-tracked outputs so
far, the same as a run of k iterations: no schedule depends on the run's length). Rows are
appended after each run (a stopped screen resumes where it was).
"""
from __future__ import annotations

VARIANTS = ((0, 1e-3), (250, 1e-3), (250, 2e-3), (1000, 1e-3))
AT = (999, 1499, 1749, 1999, 2249, 2499)


def table(rows: list) -> str:
    lines = ["| prior iterations | lr | seed | " + " | ".join(f"separation / layer PSNR at {k + 1}" for k in AT) + " |",
             "|---|---|---|" + "---|" * len(AT)]
    for r in sorted(rows, key=lambda r: (r["prior"], r["lr"], r["seed"])):
        at = {p["iteration"]: p for p in r["curve"] if "separation" in p}
        cells = [f"{at[k]['separation']:.3f} / {at[k]['layer_psnr']:.2f}" if k in at else "" for k in AT]
        lines.append(f"| {r['prior']} | {r['lr']:g} | {r['seed']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _run(prior: int, lr: float, seed: int) -> dict:
    from doubledip.engine.tasks import pair, registry
    from doubledip.engine.tasks.registry import Defaults
    from doubledip.evaluation.suite import run_case

    case = registry.get("separate_pair").evaluation.cases("quick", 128)[0]
    saved = pair.FAST_ALPHA_PRIOR_ITERATIONS, pair.SPEC.defaults["fast"]
    pair.FAST_ALPHA_PRIOR_ITERATIONS = prior
    pair.SPEC.defaults["fast"] = Defaults(saved[1].stages, lr)
    try:
        row = run_case(case, iterations=AT[-1] + 1, mode="fast", device="cpu", seed=seed, log_every=250,
                       with_baselines=False)
    finally:
        pair.FAST_ALPHA_PRIOR_ITERATIONS, pair.SPEC.defaults["fast"] = saved
    row.update(prior=prior, lr=lr)
    print(prior, lr, seed, row["metrics"]["separation"], flush=True)
    return row


def main(argv=None) -> int:
    from benchmarks.experiments import run_screen

    def options(p):
        p.add_argument("--seeds", default="0,1,2")

    def jobs(args):
        for prior, lr in VARIANTS:
            for seed in (int(s) for s in args.seeds.split(",")):
                yield (prior, lr, seed), lambda prior=prior, lr=lr, seed=seed: _run(prior, lr, seed)

    return run_screen(__doc__, "pair_fast_prior.json", options, jobs, lambda r: (r["prior"], r["lr"], r["seed"]),
                      table, argv)


if __name__ == "__main__":
    raise SystemExit(main())
