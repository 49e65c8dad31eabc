"""Fast-mode video dehazing against the dark channel prior per frame, on hazed pans with known depth.

    OMP_NUM_THREADS=1 python -m benchmarks.experiments.video_dehaze_vs_dcp --images astronaut,coffee \\
        --seeds 0,1 -o video_dehaze_vs_dcp.json [--table]

Clips: ``doubledip.evaluation.cases.dehaze_video_case(128, image=...)`` (6 frames, a 4 px/frame
pan over the image hazed through the scene's depth). Per clip and seed: the fit,
``dd.dehaze_video(clip, SolverConfig(mode="fast", seed=s), keep_fit=True)``; what the default
call (no ``keep_fit``) returns, by the task's own rule (``dehazing.fit_or_classic`` on the fit's
outputs: the fit or the prior per frame); and the prior run on each frame with the clip's
airlight. PSNR against the clear frames (mean, worst frame), flicker, seconds.
"""
from __future__ import annotations

import time

import numpy as np


def run(image: str, seed: int) -> dict:
    import torch

    import doubledip as dd
    from doubledip.engine.post import dcp_dehaze
    from doubledip.engine.tasks import dehazing, video
    from doubledip.evaluation import metrics
    from doubledip.evaluation.cases import dehaze_video_case
    from doubledip.evaluation.suite import flicker

    case = dehaze_video_case(128, image=image)
    hazy, clear, motion = case.args[0], case.truth["image"], case.truth["motion"]
    start = time.perf_counter()
    fit = dd.dehaze_video(hazy, dd.SolverConfig(mode="fast", seed=seed, progress=False), keep_fit=True)
    seconds = time.perf_counter() - start
    x = torch.from_numpy(hazy).permute(0, 3, 1, 2).contiguous()
    a0 = video.clip_airlight(x)
    keep, why, _ = dehazing.fit_or_classic(x, torch.from_numpy(fit.transmission)[:, None],
                                           torch.from_numpy(fit.airlight), a0)
    # the prior on each frame with the clip's airlight: what the default call returns when not the fit
    dcp = np.stack([dcp_dehaze(x[t:t + 1], airlight=a0)[0][0].permute(1, 2, 0).numpy() for t in range(len(x))])

    def scored(frames) -> dict:
        psnrs = [metrics.psnr(frames[t], clear[t]) for t in range(len(clear))]
        return {"psnr": float(np.mean(psnrs)), "psnr_min": float(min(psnrs)),
                "flicker": flicker(frames, clear, motion)}

    row = {"image": image, "seed": seed, "seconds": seconds, "fit": scored(fit.image), "dcp": scored(dcp),
           "default": "dip" if keep else "dcp", "why": why}
    print(image, seed, row["fit"]["psnr"], row["dcp"]["psnr"], row["default"], flush=True)
    return row


def table(rows: list) -> str:
    lines = ["| clip | seed | fit: PSNR (worst frame), flicker, s | DCP per frame: PSNR (worst), flicker | "
             "default call returns | default minus DCP (dB) |", "|---|---|---|---|---|---|"]
    for r in rows:
        chosen = r["fit"] if r["default"] == "dip" else r["dcp"]
        lines.append(f"| {r['image']} | {r['seed']} | {r['fit']['psnr']:.2f} ({r['fit']['psnr_min']:.2f}), "
                     f"{r['fit']['flicker']:.4f}, {r['seconds']:.0f} | {r['dcp']['psnr']:.2f} ({r['dcp']['psnr_min']:.2f}), "
                     f"{r['dcp']['flicker']:.4f} | {r['default']} | {chosen['psnr'] - r['dcp']['psnr']:+.2f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    from benchmarks.experiments import run_screen

    def options(p):
        p.add_argument("--images", default="astronaut,coffee")
        p.add_argument("--seeds", default="0,1")

    def jobs(args):
        for image in args.images.split(","):
            for seed in (int(s) for s in args.seeds.split(",")):
                yield (image, seed), lambda image=image, seed=seed: run(image, seed)

    return run_screen(__doc__, "video_dehaze_vs_dcp.json", options, jobs, lambda r: (r["image"], r["seed"]), table,
                      argv)


if __name__ == "__main__":
    raise SystemExit(main())
