"""Curves of fast-mode two-image separation for screening a stopping rule on the layers (issue 16:
"the pair's stopping rule").

    OMP_NUM_THREADS=1 python -m benchmarks.experiments.pair_curves --seeds 0,1,2 -o pair_curves.json
    python -m benchmarks.experiments.pair_curves -o pair_curves.json --table

Per case (the quick suite's brick + grass pair, the full suite's astronaut + coffee) and seed:
``dd.separate_pair`` in fast mode for ``--iterations`` with early stopping off, and every
``--log-every`` iterations what a rule can read at run time (the reconstruction PSNR, the
exclusion term, the mean absolute change of the best-tracked layers since the last record,
relative to the mixtures' mean intensity) beside what it cannot (the separation score and
layer PSNR against the true layers). The pair's result at iteration k is its best-tracked
outputs so far, the same as a run of k iterations (no schedule depends on the run's length), so
a rule's run is the curve cut where it fires: ``--table`` replays the candidate rules.
"""
from __future__ import annotations

# (name, threshold on the windowed layer change, window, first iteration it may fire, cap)
RULES = [("cap 1800", None, 0, 0, 1800), ("cap 2500", None, 0, 0, 2500), ("cap 3000", None, 0, 0, 3000)] + [
    (f"settled < {t:g} (window {w}, from {s}) cap {c}", t, w, s, c)
    for t in (0.002, 0.0015, 0.001, 0.0007) for w in (3,) for s in (1000, 1500) for c in (3000, 3500)]


def _replay(curve: list, threshold, window: int, start: int, cap: int) -> dict:
    """The curve's point where the rule stops: the first record at or past ``start`` whose mean
    change over the last ``window`` records is below ``threshold``, else the record at ``cap``."""
    changes = []
    for p in curve:
        if p["layer_change"] is not None:
            changes.append(p["layer_change"])
        if threshold is not None and p["iteration"] >= start and len(changes) >= window:
            if sum(changes[-window:]) / window < threshold:
                return p
        if p["iteration"] >= cap:
            return p
    return curve[-1]


def table(rows: list) -> str:
    runs = sorted(rows, key=lambda r: (r["case"], r["seed"]))
    head = " | ".join(f"{r['case']} s{r['seed']}: stop, separation (peak - it), layer dB" for r in runs)
    lines = [f"| rule | {head} | mean separation | worst separation | mean iterations |",
             "|---|" + "---|" * (len(runs) + 3)]
    for name, threshold, window, start, cap in RULES:
        cells, seps, its = [], [], []
        for r in runs:
            p = _replay(r["curve"], threshold, window, start, cap)
            peak = max(q["separation"] for q in r["curve"])
            cells.append(f"{p['iteration']}, {p['separation']:.3f} ({peak - p['separation']:.3f}), {p['layer_psnr']:.2f}")
            seps.append(p["separation"])
            its.append(p["iteration"])
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {sum(seps) / len(seps):.3f} | {min(seps):.3f} | "
                     f"{sum(its) / len(its):.0f} |")
    lines += ["", "| case | seed | separation peak (at) | layer PSNR peak (at) | s per 1000 iterations |",
              "|---|---|---|---|---|"]
    for r in runs:
        c = r["curve"]
        sp = max(c, key=lambda p: p["separation"])
        lp = max(c, key=lambda p: p["layer_psnr"])
        per = c[-1]["seconds"] / c[-1]["iteration"] * 1000
        lines.append(f"| {r['case']} | {r['seed']} | {sp['separation']:.3f} ({sp['iteration']}) | "
                     f"{lp['layer_psnr']:.2f} ({lp['iteration']}) | {per:.0f} |")
    return "\n".join(lines)


def _run(case, seed: int, iterations: int, log_every: int) -> dict:
    import time

    import numpy as np

    import doubledip as dd
    from doubledip.evaluation import metrics

    scale = float(np.mean([np.mean(a) for a in case.args]))
    curve, previous = [], [None]
    start = time.perf_counter()

    def record(entry):
        out = entry.get("outputs") or {}
        if out.get("layers") is None:
            return
        now = np.stack(out["layers"])
        change = None if previous[0] is None else float(np.abs(now - previous[0]).mean()) / scale
        previous[0] = now
        m = metrics.score_separate_pair({"layers": out["layers"], "alphas": out.get("alphas")}, case.truth)
        curve.append({"iteration": int(entry["iteration"]) + 1, "seconds": time.perf_counter() - start,
                      "psnr": float(entry["psnr"]), "exclusion": float(entry["exclusion"]),
                      "layer_change": change, "separation": float(m["separation"]),
                      "layer_psnr": float(m["layer_psnr"])})

    config = dd.SolverConfig(mode="fast", iterations=iterations, seed=seed, log_every=log_every,
                             early_stop=False, callback=record, device="cpu", threads=1)
    result = dd.separate_pair(*case.args, config)
    print(case.name, seed, f"{curve[-1]['separation']:.3f}", f"{result.seconds:.0f} s", flush=True)
    return {"case": case.name, "seed": seed, "iterations": iterations, "seconds": result.seconds, "curve": curve}


def main(argv=None) -> int:
    from benchmarks.experiments import run_screen

    def options(p):
        p.add_argument("--seeds", default="0,1,2")
        p.add_argument("--iterations", type=int, default=3500)
        p.add_argument("--log-every", type=int, default=50)
        p.add_argument("--cases", default=None, help="comma-separated case names (default: both)")

    def jobs(args):
        from doubledip.engine.tasks import registry

        cases = registry.get("separate_pair").evaluation.cases("full", 128)
        for case in cases:
            if args.cases and case.name not in args.cases.split(","):
                continue
            for seed in (int(s) for s in args.seeds.split(",")):
                yield ((case.name, seed), lambda case=case, seed=seed: _run(case, seed, args.iterations, args.log_every))

    return run_screen(__doc__, "pair_curves.json", options, jobs, lambda r: (r["case"], r["seed"]), table, argv)


if __name__ == "__main__":
    raise SystemExit(main())
