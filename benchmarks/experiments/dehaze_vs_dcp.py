"""Fast-mode dehazing against the dark channel prior on hazed cases with known depth.

    OMP_NUM_THREADS=1 python benchmarks/experiments/dehaze_vs_dcp.py --size 256 --iterations 800 \\
        --seeds 0,1,2 -o dehaze_vs_dcp.json

Cases: the full suite's three hazed images (a smooth depth ramp with a bump) and two whose depth
has an object's edge in it (a near silhouette over a far ramp: what a real depth map has and the
ramp lacks). Per case and seed: ``dd.dehaze(hazy, SolverConfig(mode="fast", iterations=N,
seed=s), keep_fit=True)`` (the fit as it is) and ``dd.dehaze(hazy, method="dcp")``, PSNR and SSIM
against the clear image, the seconds of each, and what the default call (without ``keep_fit``)
returns: the fit or the classic result, by the task's rule; with ``--keep DIR`` the outputs as
.npz for offline screens.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def edge_depth_case(size: int, image: str, shape: str, airlight=(0.85, 0.85, 0.85)):
    """``image`` hazed through a depth with an edge: ``shape``'s silhouette near (t 0.85), the rest
    a ramp from t 0.55 at the bottom to 0.2 at the top."""
    from doubledip.evaluation.cases import Case, _load_mask, load_sample

    clear = load_sample(image, size)
    mask = _load_mask(shape, size)
    y = np.linspace(0.0, 1.0, size, dtype=np.float32)[:, None] * np.ones((1, size), np.float32)
    t = np.where(mask > 0.5, 0.85, 0.2 + 0.35 * y).astype(np.float32)
    a = np.asarray(airlight, np.float32)
    hazy = (t[..., None] * clear + (1 - t[..., None]) * a).astype(np.float32)
    return Case("dehaze", f"{image}_{shape}_edge_haze", (hazy,), {},
                {"image": clear, "transmission": t, "airlight": a, "hazy": hazy}, "psnr", "edge depth")


def _choice(hazy, fit, classic) -> str:
    """What the default call (no keep_fit) returns for this fit: "dip" or "dcp" (the task's rule,
    dehazing._keep_the_better, on the fit's and the classic outputs)."""
    import torch

    from doubledip.engine.tasks.dehazing import FALLBACK_MARGIN, haze_residual

    to = lambda x: torch.from_numpy(np.asarray(x, np.float32))  # noqa: E731
    image = to(hazy).permute(2, 0, 1)[None]
    mine = haze_residual(image, to(fit.transmission)[None, None], to(fit.airlight))
    theirs = haze_residual(image, to(classic.transmission)[None, None], to(classic.airlight))
    return "dip" if mine < (1 - FALLBACK_MARGIN) * theirs else "dcp"


def cases(size: int, images: list[str] | None = None):
    """The screen's five cases, or, with ``images`` (scikit-image sample names), two per image:
    the suite's smooth depth and the horse's edge depth (cases the rule was not chosen on)."""
    from doubledip.evaluation.cases import dehaze_case

    if images:
        return [c for name in images for c in (dehaze_case(size, name), edge_depth_case(size, name, "horse"))]
    return [dehaze_case(size), dehaze_case(size, "coffee"), dehaze_case(size, "chelsea", airlight=(0.9, 0.9, 0.88)),
            edge_depth_case(size, "astronaut", "horse"), edge_depth_case(size, "coffee", "horse")]


def table(rows: list) -> str:
    """Markdown: per case and seed the fit, the classic result and what the default call returns."""
    lines = ["| case | seed | fit dB | fit s | dark channel prior dB | default call returns | its dB | its - DCP dB |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['case']} | {r['seed']} | {r['psnr']:.2f} | {r['seconds']:.0f} | {r['dcp_psnr']:.2f} | "
                     f"{r['default_call']} | {r['default_call_psnr']:.2f} | {r['default_call_psnr'] - r['dcp_psnr']:+.2f} |")
    fit = [r["psnr"] - r["dcp_psnr"] for r in rows]
    chosen = [r["default_call_psnr"] - r["dcp_psnr"] for r in rows]
    lines.append(f"| **mean** | | fit - DCP {sum(fit) / len(fit):+.2f} (worst {min(fit):+.2f}) | "
                 f"{sum(r['seconds'] for r in rows) / len(rows):.0f} | | fit {sum(r['default_call'] == 'dip' for r in rows)}"
                 f" of {len(rows)} | | {sum(chosen) / len(chosen):+.2f} (worst {min(chosen):+.2f}) |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--iterations", type=int, default=None, help="default: fast mode's")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--cases", default=None, help="comma-separated case names (default: all)")
    parser.add_argument("--images", default=None,
                        help="comma-separated scikit-image samples: each hazed through both depths instead of the five cases")
    parser.add_argument("--keep", default=None, help="folder for the outputs (.npz per case and seed)")
    parser.add_argument("-o", "--output", default=None)
    parser.add_argument("--table", nargs="+", default=None, metavar="JSON",
                        help="print the Markdown table of earlier runs' output files instead of running")
    args = parser.parse_args(argv)
    if args.table:
        print(table([row for path in args.table for row in json.loads(Path(path).read_text())]))
        return 0
    if args.output is None:
        parser.error("-o/--output is required to run")

    import doubledip as dd
    from doubledip.evaluation.metrics import psnr, ssim

    rows = []
    for case in cases(args.size, args.images.split(",") if args.images else None):
        if args.cases and case.name not in args.cases.split(","):
            continue
        hazy, truth = case.args[0], case.truth
        start = time.perf_counter()
        classic = dd.dehaze(hazy, method="dcp")
        dcp_seconds = time.perf_counter() - start
        for seed in (int(s) for s in args.seeds.split(",")):
            cfg = dd.SolverConfig(mode="fast", iterations=args.iterations, seed=seed, device="cpu", threads=1)
            r = dd.dehaze(hazy, cfg, keep_fit=True)  # the fit as it is; the default call's choice below
            choice = _choice(hazy, r, classic)
            row = {"case": case.name, "seed": seed, "iterations": args.iterations, "seconds": r.seconds,
                   "dcp_seconds": dcp_seconds, "psnr": psnr(r.image, truth["image"]),
                   "ssim": ssim(r.image, truth["image"]), "dcp_psnr": psnr(classic.image, truth["image"]),
                   "dcp_ssim": ssim(classic.image, truth["image"]), "method": r.method,
                   "stop_reason": r.stop_reason, "warnings": r.warnings, "default_call": choice,
                   "default_call_psnr": psnr(r.image if choice == "dip" else classic.image, truth["image"])}
            rows.append(row)
            print(json.dumps(row), flush=True)
            if args.keep:
                Path(args.keep).mkdir(parents=True, exist_ok=True)
                np.savez_compressed(Path(args.keep) / f"{case.name}_seed{seed}.npz", hazy=hazy, clear=truth["image"],
                                    t_true=truth["transmission"], image=r.image, transmission=r.transmission,
                                    airlight=r.airlight, dcp_image=classic.image, dcp_t=classic.transmission,
                                    dcp_airlight=classic.airlight)
    Path(args.output).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
