"""Hinted watermark removal: the fast fit, the classic inpainting of the hint, and their mean
(issue 16: fast mode "never worse than the classic method for the task").

    OMP_NUM_THREADS=1 python -m benchmarks.experiments.watermark_blend --seeds 0,1 -o watermark_blend.json [--table]

Per case (the suite's chelsea and astronaut stamps, and a coffee and a rocket stamp built for this
screen only) and seed: the fast fit, ``dd.remove_watermark(marked, hint,
SolverConfig(mode="fast", seed=s), keep_fit=True)`` (fast mode's default call when this screen
ran), the biharmonic inpainting of the hinted region (``evaluation.baselines.inpaint_hint``),
and the per-pixel mean of the two inside the region (what fast mode's default call returns
since: the hints here are binary, so the two are the same numbers); PSNR inside the region
against the clean image. Rows are appended after each run.
"""
from __future__ import annotations

IMAGES = ("chelsea", "astronaut", "coffee", "rocket")


def table(rows: list) -> str:
    lines = ["| case | seed | fast fit dB | inpainting dB | mean of the two dB | mean minus inpainting | "
             "mean minus the better of the two | fit s |", "|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["case"], r["seed"])):
        lines.append(f"| {r['case']} | {r['seed']} | {r['fit']:.2f} | {r['inpainting']:.2f} | {r['mean']:.2f} | "
                     f"{r['mean'] - r['inpainting']:+.2f} | {r['mean'] - max(r['fit'], r['inpainting']):+.2f} | "
                     f"{r['seconds']:.0f} |")
    n = len(rows)
    if n:
        lines.append(f"| **mean** | | {sum(r['fit'] for r in rows) / n:.2f} | {sum(r['inpainting'] for r in rows) / n:.2f} | "
                     f"{sum(r['mean'] for r in rows) / n:.2f} | worst {min(r['mean'] - r['inpainting'] for r in rows):+.2f} | "
                     f"worst {min(r['mean'] - max(r['fit'], r['inpainting']) for r in rows):+.2f} | |")
    return "\n".join(lines)


def _run(image: str, seed: int) -> dict:
    import numpy as np

    import doubledip as dd
    from doubledip.evaluation.baselines import inpaint_hint
    from doubledip.evaluation.cases import remove_watermark_case
    from doubledip.evaluation.metrics import psnr

    case = remove_watermark_case(128, image)
    marked, hint = case.args
    r = dd.remove_watermark(marked, hint, dd.SolverConfig(mode="fast", seed=seed, progress=False), keep_fit=True)
    inpainted = inpaint_hint(marked, hint)
    region = np.asarray(hint)[..., None] > 0.5
    mean = np.where(region, (r.image + inpainted) / 2, r.image).astype(np.float32)
    truth, where = case.truth["image"], case.truth["region"]
    row = {"case": case.name, "seed": seed, "seconds": r.seconds,
           "fit": psnr(r.image, truth, mask=where), "inpainting": psnr(inpainted, truth, mask=where),
           "mean": psnr(mean, truth, mask=where)}
    print(row, flush=True)
    return row


def main(argv=None) -> int:
    from benchmarks.experiments import run_screen

    def options(p):
        p.add_argument("--seeds", default="0,1")
        p.add_argument("--images", default=",".join(IMAGES))

    def jobs(args):
        for image in args.images.split(","):
            for seed in (int(s) for s in args.seeds.split(",")):
                yield (f"{image}_stamp", seed), lambda image=image, seed=seed: _run(image, seed)

    return run_screen(__doc__, "watermark_blend.json", options, jobs, lambda r: (r["case"], r["seed"]), table, argv)


if __name__ == "__main__":
    raise SystemExit(main())
