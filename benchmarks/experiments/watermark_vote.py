"""Hinted watermark removal: how fast mode combines its repeats with the classic inpainting
(issue 16: "never worse than the classic method for the task").

    OMP_NUM_THREADS=1 python -m benchmarks.experiments.watermark_vote --images rocket,coffee --seeds 0,1 -o out.json [--table]

Per image (a stamped scikit-image photo, ``evaluation.cases.remove_watermark_case``) and seed
``s``: three independent fast fits (``repeats=1``, seeds ``s``, ``s + 100``, ``s + 200``,
``keep_fit=True``: as fast mode's three repeats), the biharmonic inpainting of the hint, and
inside the region: the fits' median (fast mode before the inpainting), the median's mean with
the inpainting (the first change), and the mean of (the median of the fits and the inpainting)
and the inpainting (``watermark.blend_with_inpainting``: fast mode's default now). PSNR in the
region against the clean image.
"""
from __future__ import annotations

COMBINATIONS = ("single fits", "median of fits", "inpainting", "mean of median and inpainting", "vote, then mean with inpainting")


def combine(runs, filled, marked, region):
    """``{combination: H x W x 3}`` from the fits (K x H x W x 3), the inpainting and the input."""
    import numpy as np

    median = np.median(runs, 0)
    vote = np.median(np.concatenate([runs, filled[None]]), 0)
    inside = region[..., None]
    return {"median of fits": np.where(inside, median, marked), "inpainting": np.where(inside, filled, marked),
            "mean of median and inpainting": np.where(inside, (median + filled) / 2, marked),
            "vote, then mean with inpainting": np.where(inside, (vote + filled) / 2, marked)}


def table(rows: list) -> str:
    names = COMBINATIONS[1:]
    lines = ["| image | seed | single fits dB | " + " | ".join(f"{n} dB" for n in names) + " |",
             "|---|---|---|" + "---|" * len(names)]
    for r in sorted(rows, key=lambda r: (r["case"], r["seed"])):
        lines.append(f"| {r['case']} | {r['seed']} | {' / '.join(f'{v:.1f}' for v in r['single fits'])} | "
                     + " | ".join(f"{r[n]:.2f}" for n in names) + " |")
    if rows:
        n = len(rows)
        lines.append("| **mean** | | | " + " | ".join(f"{sum(r[k] for r in rows) / n:.2f}" for k in names) + " |")
        lines.append("| **worst minus inpainting** | | | " + " | ".join(
            f"{min(r[k] - r['inpainting'] for r in rows):+.2f}" for k in names) + " |")
    return "\n".join(lines)


def _row(case, seed, runs, filled) -> dict:
    import numpy as np

    from doubledip.evaluation.metrics import psnr

    marked, hint = case.args
    truth, where = case.truth["image"], case.truth["region"]
    out = combine(runs, filled, marked, np.asarray(hint) > 0.5)
    row = {"case": case.name, "seed": seed, "single fits": [psnr(r, truth, mask=where) for r in runs]}
    row.update({k: psnr(v.astype(np.float32), truth, mask=where) for k, v in out.items()})
    print(row, flush=True)
    return row


def _run(image: str, seed: int) -> dict:
    import numpy as np

    import doubledip as dd
    from doubledip.evaluation.baselines import inpaint_hint
    from doubledip.evaluation.cases import remove_watermark_case

    case = remove_watermark_case(128, image)
    marked, hint = case.args
    runs = np.stack([dd.remove_watermark(marked, hint, dd.SolverConfig(mode="fast", seed=seed + 100 * k, repeats=1,
                                                                      progress=False), keep_fit=True).image
                     for k in range(3)])
    return _row(case, seed, runs, inpaint_hint(marked, hint))


def main(argv=None) -> int:
    from benchmarks.experiments import run_screen

    def options(p):
        p.add_argument("--seeds", default="0,1")
        p.add_argument("--images", default="chelsea,astronaut,coffee,rocket")

    def jobs(args):
        for image in args.images.split(","):
            for seed in (int(s) for s in args.seeds.split(",")):
                yield (f"{image}_stamp", seed), lambda image=image, seed=seed: _run(image, seed)

    return run_screen(__doc__, "watermark_vote.json", options, jobs, lambda r: (r["case"], r["seed"]), table, argv)


if __name__ == "__main__":
    raise SystemExit(main())
