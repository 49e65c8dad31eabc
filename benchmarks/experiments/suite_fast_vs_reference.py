"""Fast mode's default call against reference mode's default call, at equal seeds, on the quick
suite's cases (issue 16: "never below reference mode's default, in at most a quarter of its time").
A mode ``fast:ITERATIONSxREPEATS`` screens a budget against the defaults (``fast:2750x1``).

    OMP_NUM_THREADS=1 python -m benchmarks.experiments.suite_fast_vs_reference --tasks segment \\
        --seeds 0,1,2 -o suite_fast_vs_reference.json [--table]

Per task, case (``doubledip evaluate --suite quick``'s, 128 x 128) and seed: the case run through
``doubledip.evaluation.suite.run_case`` with ``iterations=None`` (each mode's own defaults,
stopping rules included) in reference and in fast mode; the primary metric, the seconds and,
where the solver hands out its outputs at log points, the fast run's curve (the metric every
``--log-every`` iterations). Rows are appended to the output after each run (a stopped screen
resumes where it was).
"""
from __future__ import annotations


def variant(mode: str) -> tuple[str, int | None, int | None, float | None]:
    """``fast`` / ``reference`` (the mode's defaults) or ``fast:ITERATIONSxREPEATS[@LR]`` (a budget,
    and a learning rate, screened against them, e.g. ``fast:2750x1``, ``fast:2800x1@0.002``):
    (mode, iterations, repeats, lr)."""
    name, _, budget = mode.partition(":")
    if not budget:
        return name, None, None, None
    budget, _, lr = budget.partition("@")
    iterations, _, repeats = budget.partition("x")
    return name, int(iterations), int(repeats) if repeats else None, float(lr) if lr else None


def table(rows: list) -> str:
    by = {}
    for r in rows:
        by.setdefault((r["task"], r["case"], r["seed"]), {})[r.get("variant", r["mode"])] = r
    lines = ["| task | case | seed | reference: metric, iterations, s | fast: metric, iterations x repeats, s | "
             "fast minus reference | time ratio (fast / reference) |", "|---|---|---|---|---|---|---|"]
    for (task, case, seed), modes in sorted(by.items()):
        ref = modes.get("reference")
        for name, fast in sorted(modes.items()):
            if ref is None or name == "reference":
                continue
            key = ref["primary"]
            a, b = ref["metrics"][key], fast["metrics"][key]
            budget = (f"{fast['iterations']}" + (f" x {fast['repeats']}" if fast.get("repeats") else "")
                      if fast["iterations"] is not None else "no fit")
            if fast.get("method") not in (None, "dip"):
                budget += f" ({fast['method']})"
            label = "" if name == "fast" else f" ({name})"
            lines.append(f"| {task} | {case} | {seed} | {key} {a:.3f}, {ref['iterations']}, {ref['seconds']:.0f} | "
                         f"{b:.3f}, {budget}, {fast['seconds']:.{0 if fast['seconds'] >= 1 else 2}f}{label} | "
                         f"{b - a:+.3f} | {fast['seconds'] / ref['seconds']:.{2 if fast['seconds'] >= 1 else 5}f} |")
    return "\n".join(lines)


def _run(case, seed: int, mode: str, log_every: int) -> dict:
    from doubledip.evaluation.suite import run_case

    name, iterations, repeats, lr = variant(mode)
    row = run_case(case, iterations=iterations, repeats=repeats, mode=name, device="cpu", seed=seed,
                   log_every=log_every, with_baselines=False, lr=lr)
    row["variant"] = mode
    print(row["task"], case.name, seed, mode, row["metrics"][row["primary"]], row["seconds"], flush=True)
    return row


def main(argv=None) -> int:
    from benchmarks.experiments import run_screen

    def options(p):
        p.add_argument("--tasks", default="segment,separate_pair")
        p.add_argument("--seeds", default="0,1,2")
        p.add_argument("--modes", default="fast,reference")
        p.add_argument("--log-every", type=int, default=250)
        p.add_argument("--suite", default="quick", choices=("quick", "full"))
        p.add_argument("--cases", default=None, help="comma-separated case names (default: all the suite's)")

    def jobs(args):
        from doubledip.engine.tasks import registry

        for task in args.tasks.split(","):
            for case in registry.get(task).evaluation.cases(args.suite, 128):
                if args.cases and case.name not in args.cases.split(","):
                    continue
                for seed in (int(s) for s in args.seeds.split(",")):
                    for mode in args.modes.split(","):
                        yield ((task, case.name, seed, mode),
                               lambda case=case, seed=seed, mode=mode: _run(case, seed, mode, args.log_every))

    return run_screen(__doc__, "suite_fast_vs_reference.json", options, jobs,
                      lambda r: (r["task"], r["case"], r["seed"], r.get("variant", r["mode"])), table, argv)


if __name__ == "__main__":
    raise SystemExit(main())
