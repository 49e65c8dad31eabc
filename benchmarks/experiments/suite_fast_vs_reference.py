"""Fast mode's default call against reference mode's default call, at equal seeds, on the quick
suite's cases (issue 16: "never below reference mode's default, in at most a quarter of its time").

    OMP_NUM_THREADS=1 python benchmarks/experiments/suite_fast_vs_reference.py --tasks segment \\
        --seeds 0,1,2 -o suite_fast_vs_reference.json [--table]

Per task, case (``doubledip evaluate --suite quick``'s, 128 x 128) and seed: the case run through
``doubledip.evaluation.suite.run_case`` with ``iterations=None`` (each mode's own defaults,
stopping rules included) in reference and in fast mode; the primary metric, the seconds and,
where the solver hands out its outputs at log points, the fast run's curve (the metric every
``--log-every`` iterations). Rows are appended to the output after each run (a stopped screen
resumes where it was).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def table(rows: list) -> str:
    by = {}
    for r in rows:
        by.setdefault((r["task"], r["case"], r["seed"]), {})[r["mode"]] = r
    lines = ["| task | case | seed | reference: metric, iterations, s | fast: metric, iterations, s | "
             "fast minus reference | time ratio (fast / reference) |", "|---|---|---|---|---|---|---|"]
    for (task, case, seed), modes in sorted(by.items()):
        if set(modes) != {"reference", "fast"}:
            continue
        ref, fast = modes["reference"], modes["fast"]
        key = ref["primary"]
        a, b = ref["metrics"][key], fast["metrics"][key]
        lines.append(f"| {task} | {case} | {seed} | {key} {a:.3f}, {ref['iterations']}, {ref['seconds']:.0f} | "
                     f"{b:.3f}, {fast['iterations']}, {fast['seconds']:.0f} | {b - a:+.3f} | "
                     f"{fast['seconds'] / ref['seconds']:.2f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", default="segment,separate_pair")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--modes", default="fast,reference")
    p.add_argument("--log-every", type=int, default=250)
    p.add_argument("-o", "--output", default="suite_fast_vs_reference.json")
    p.add_argument("--table", action="store_true", help="print the table of --output and exit")
    args = p.parse_args(argv)
    out = Path(args.output)
    if args.table:
        print(table(json.loads(out.read_text())))
        return 0
    from doubledip.engine.tasks import registry
    from doubledip.evaluation.suite import run_case

    rows = json.loads(out.read_text()) if out.exists() else []
    done = {(r["task"], r["case"], r["seed"], r["mode"]) for r in rows}
    for task in args.tasks.split(","):
        for case in registry.get(task).evaluation.cases("quick", 128):
            for seed in (int(s) for s in args.seeds.split(",")):
                for mode in args.modes.split(","):
                    if (task, case.name, seed, mode) in done:
                        continue
                    row = run_case(case, iterations=None, mode=mode, device="cpu", seed=seed,
                                   log_every=args.log_every, with_baselines=False)
                    rows.append(row)
                    print(task, case.name, seed, mode, row["metrics"][row["primary"]], row["seconds"], flush=True)
                    out.write_text(json.dumps(rows, indent=1, default=lambda x: np.asarray(x).tolist()))
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
