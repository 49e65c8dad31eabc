"""Screen saliency maps for automatic segmentation hints on random textured composites.

Issue 17. The suite's five composites are few and were seen while the saliency was built; this
screen draws composites at random (foreground and background samples, shape, scale, place,
tints, an object darker than its background now and then) from a seed, so a choice made on one
draw (``--draw dev``) can be checked on another (``--draw check``). Per case and map it reports
the IoU of the map above its Otsu threshold and of that mask through fast mode's guided filter
(the segmentation's post-processing with no fit). No generator is fitted: a map takes 0.1-1 s.

    OMP_NUM_THREADS=1 python -m benchmarks.experiments.saliency_screen --draw dev --cases 30 -o sal_dev.json
    python -m benchmarks.experiments.saliency_screen -o sal_dev.json --table
    # the fit itself, with one method's hints (slow: about 20 s a case and seed)
    OMP_NUM_THREADS=1 python -m benchmarks.experiments.saliency_screen --draw check --cases 14 --fit refined --seeds 0 -o fit.json
    # the default call (dd.segment(img, SolverConfig(mode="fast", seed=s)), no hints given) against
    # Otsu and the map thresholded alone; --with-fit also runs method="dip" (the fit, slow)
    OMP_NUM_THREADS=1 python -m benchmarks.experiments.saliency_screen --draw final --call --seeds 0 -o call.json
"""
from __future__ import annotations

import sys

import numpy as np

#: what a composite's object is cut from: mostly textures, now and then a photo (all ship with
#: scikit-image); the issue's cases are textured objects over textured or natural backgrounds
TEXTURES = ("brick", "grass", "gravel")
OBJECT_PHOTOS = ("chelsea", "coffee", "immunohistochemistry", "moon")
#: what the background is: a texture or a photo
BACKGROUNDS = TEXTURES + ("astronaut", "coffee", "chelsea", "rocket", "camera", "immunohistochemistry",
                          "moon", "hubble_deep_field")
#: first seed of each draw: they never overlap for up to 1000 cases (`held`: drawn after the
#: refinement window was chosen on `dev`, `check` and the named cases; `final`: after fast mode's
#: default for automatic hints was chosen on those; `verify`: after its filter guard was set on all five)
DRAWS = {"dev": 1000, "check": 2000, "held": 4000, "final": 5000, "verify": 6000}


#: object scale and centre ranges of a draw: ``any`` (the default) lets large objects touch the
#: border; ``small`` (the first draw screened) keeps every object inside it
OBJECTS = {"any": ((0.3, 0.9), (0.25, 0.75)), "small": ((0.3, 0.65), (0.3, 0.7))}


def draw_case(seed: int, size: int = 128, objects: str = "any"):
    """One random textured composite (a :class:`doubledip.evaluation.cases.Case`, auto hints)."""
    from doubledip.evaluation import cases

    (scales, centres) = OBJECTS[objects]
    rng = np.random.default_rng(seed)
    fg = rng.choice(OBJECT_PHOTOS if rng.random() < 0.25 else TEXTURES)
    bg = rng.choice([b for b in BACKGROUNDS if b != fg])

    def tint():
        k = rng.integers(4)
        return [None, cases._WARM, cases._COOL, tuple(rng.uniform(0.5, 1.0, 3))][k]

    dark = rng.random() < 0.2
    kw = dict(foreground=str(fg), background=str(bg), shape=str(rng.choice(["ellipse", "blob", "horse"])),
              scale=float(rng.uniform(*scales)), centre=tuple(float(c) for c in rng.uniform(*centres, 2)),
              fg_tint=tint(), bg_tint=tint(), fg_gain=0.55 if dark else 1.0, seed=int(seed))
    name = f"r{seed}_{fg}_{kw['shape']}_on_{bg}" + ("_dark" if dark else "")
    return cases.segment_composite_case(size, name=name, **kw)


#: the cases of segmentation_hints.md: the suite's five composites, five built for that screen,
#: the quick suite's horse
NAMED_EXTRAS = {
    "grey_gravel_blob_on_grass": dict(foreground="gravel", background="grass", shape="blob", scale=0.5,
                                      centre=(0.5, 0.45), fg_tint=None, bg_tint=None, seed=3),
    "grey_brick_ellipse_on_gravel": dict(foreground="brick", background="gravel", shape="ellipse", scale=0.5,
                                         centre=(0.45, 0.5), fg_tint=None, bg_tint=None),
    "grass_horse_on_brick_similar": dict(foreground="grass", background="brick", shape="horse", scale=0.7,
                                         fg_tint=(1, .9, .8), bg_tint=(.9, .9, 1)),
    "coffee_blob_on_moon": dict(foreground="coffee", background="moon", shape="blob", scale=0.45,
                                centre=(0.4, 0.6), bg_tint=(.9, .85, .8), seed=5),
    "gravel_on_ihc": dict(foreground="gravel", background="immunohistochemistry", shape="ellipse", scale=0.35,
                          centre=(0.65, 0.35), fg_tint=(.6, .5, .7)),
}


def named_cases(size: int = 128):
    from doubledip.evaluation import cases

    out = cases.segment_composites(size)
    out += [cases.segment_composite_case(size, name=n, **kw) for n, kw in NAMED_EXTRAS.items()]
    return out + [cases.segment_case(size, hints=False, name="horse_no_hints")]


def maps(image: np.ndarray) -> dict[str, np.ndarray]:
    """The candidate maps of one H x W x 3 image, by name."""
    from scipy import ndimage

    from doubledip.engine import saliency as sal

    hc = sal.global_contrast(image)
    hc = sal._normalise(ndimage.gaussian_filter(hc, max(hc.shape) / 64))
    bc = sal._normalise(sal.border_contrast(image))
    side = sal.side_contrast(image)
    out = {"combined": sal.combined(image), "border_contrast": bc, "global_contrast_smoothed": hc,
           "side_contrast": side}
    out["combined_refined"] = sal.two_class_refinement(image, out["combined"])
    out["border_refined"] = sal.two_class_refinement(image, bc)
    out["refined"] = sal.two_class_refinement(image, side)  # the default: side contrast, refined twice
    out["refined_window_1/32"] = sal.two_class_refinement(image, side, window=1 / 32)  # the default before
    out["border_and_side_refined"] = sal.two_class_refinement(image, sal._normalise(bc + side))
    return out


def iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0.5, b > 0.5
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def guided(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Fast mode's post-processing of a binary mask: guided filter, radius 1/8 of the short side."""
    import torch

    from doubledip.engine.post import guided_filter
    from doubledip.engine.tasks.segmentation import FAST_GUIDE_RADIUS

    img = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None]
    m = torch.from_numpy(mask.astype(np.float32))[None, None]
    r = max(1, round(FAST_GUIDE_RADIUS * min(image.shape[:2])))
    return (guided_filter(img, m, radius=r, eps=1e-4)[0, 0].numpy() > 0.5).astype(np.float32)


def score_case(case) -> dict:
    from doubledip.engine import saliency as sal

    image, truth = case.args[0], case.truth["mask"]
    b = max(1, round(0.06 * min(truth.shape)))
    edge = np.concatenate([truth[:b].ravel(), truth[-b:].ravel(), truth[:, :b].ravel(), truth[:, -b:].ravel()])
    row = {"case": case.name, "object_fraction": float(truth.mean()), "border_fraction": float(edge.mean())}
    for name, s in maps(image).items():
        t = sal.threshold_mask(s)
        row[name] = {"threshold": iou(t, truth), "guided": iou(guided(image, t), truth),
                     "otsu_effectiveness": effectiveness(s)}
    return row


def effectiveness(s: np.ndarray) -> float:
    """Otsu's effectiveness of a map: between-class over total variance at its threshold (0-1)."""
    from doubledip.engine import saliency as sal

    x = s.ravel().astype(np.float64)
    t = sal.otsu_threshold(x)
    hi = x > t
    if hi.all() or not hi.any():
        return 0.0
    w1 = hi.mean()
    return float(w1 * (1 - w1) * (x[hi].mean() - x[~hi].mean()) ** 2 / max(x.var(), 1e-12))


def table(rows: list[dict]) -> str:
    names = [k for k in rows[0] if isinstance(rows[0][k], dict)]
    lines = ["| case | object % | object % of the border | " + " | ".join(f"{n}: thr / gf" for n in names) + " |",
             "|---|---|---|" + "---|" * len(names)]
    for r in rows:
        lines.append(f"| {r['case']} | {100 * r['object_fraction']:.0f} | {100 * r['border_fraction']:.0f} | " + " | ".join(
            f"{r[n]['threshold']:.3f} / {r[n]['guided']:.3f}" for n in names) + " |")
    for label, f in (("mean", np.mean), ("worst", np.min)):
        lines.append(f"| **{label}** | | | " + " | ".join(
            f"{f([r[n]['threshold'] for r in rows]):.3f} / {f([r[n]['guided'] for r in rows]):.3f}"
            for n in names) + " |")
    share = {n: np.mean([r[n]["guided"] >= 0.8 for r in rows]) for n in names}
    lines.append("| **share >= 0.8 (gf)** | | | " + " | ".join(f"{share[n]:.2f}" for n in names) + " |")
    return "\n".join(lines)


def fit_case(case, method: str, seed: int) -> dict:
    """Fast mode's fit (``dd.segment``) with the hints ``method``'s map gives: IoU and seconds."""
    import time

    import doubledip as dd
    from doubledip.engine import saliency as sal

    image, truth = case.args[0], case.truth["mask"]
    start = time.perf_counter()
    s = sal.saliency(image, method)
    fg, bg = sal.hints_from_saliency(s)
    r = dd.segment(image, dd.SolverConfig(mode="fast", seed=seed, progress=False), fg_hint=fg, bg_hint=bg)
    mask = r.mask[..., 0] if r.mask.ndim == 3 else r.mask
    soft = r.soft_mask[..., 0] if r.soft_mask.ndim == 3 else r.soft_mask
    threshold = sal.threshold_mask(s)
    # the fit's soft mask averaged with the map's threshold (or the map, shifted so that its Otsu
    # threshold sits at 0.5) before the guided filter: does the fit add what the map lacks?
    return {"case": case.name, "method": method, "seed": seed, "fit": iou(mask, truth),
            "threshold_guided": iou(guided(image, threshold), truth),
            "soft_guided_with_threshold": iou(guided(image, (soft + threshold) / 2), truth),
            "soft_guided_with_map": iou(guided(image, (soft + np.clip(s - sal.otsu_threshold(s) + 0.5, 0, 1)) / 2), truth),
            "soft_alone": iou((soft > 0.5).astype(np.float32), truth),
            "seconds": time.perf_counter() - start}


def call_case(case, seed: int, with_fit: bool) -> dict:
    """The default fast call with no hints (``dd.segment(img, SolverConfig(mode="fast", seed=seed))``)
    against Otsu (the better polarity) and the saliency map thresholded alone; ``with_fit``: the fit
    with the same hints too (``method="dip"``)."""
    import time
    import warnings

    import doubledip as dd
    from doubledip.evaluation.baselines import otsu_mask, saliency_threshold_mask

    image, truth = case.args[0], case.truth["mask"]
    cfg = dd.SolverConfig(mode="fast", seed=seed, progress=False)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a trivial mask's warning: scored like any other
        r = dd.segment(image, cfg)
    row = {"case": case.name, "seed": seed, "call": iou(r.mask, truth), "call_method": r.method,
           "call_seconds": time.perf_counter() - start}
    otsu = otsu_mask(image)
    row["otsu"] = max(iou(otsu, truth), iou(1 - otsu, truth))
    row["saliency_threshold"] = iou(saliency_threshold_mask(image), truth)
    if with_fit:
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = dd.segment(image, cfg, method="dip")
        row["fit"], row["fit_seconds"] = iou(fit.mask, truth), time.perf_counter() - start
    return row


def call_table(rows: list[dict]) -> str:
    cols = [c for c in ("call", "fit", "saliency_threshold", "otsu") if c in rows[0]]
    lines = ["| case | seed | " + " | ".join(cols) + " | call s |" + (" fit s |" if "fit" in cols else ""),
             "|---|---|" + "---|" * (len(cols) + 1 + ("fit" in cols))]
    for r in rows:
        lines.append(f"| {r['case']} | {r['seed']} | " + " | ".join(f"{r[c]:.3f}" for c in cols)
                     + f" | {r['call_seconds']:.1f} |" + (f" {r['fit_seconds']:.1f} |" if "fit" in cols else ""))
    for label, f in (("mean", np.mean), ("worst", np.min)):
        lines.append(f"| **{label}** | | " + " | ".join(f"{f([r[c] for r in rows]):.3f}" for c in cols) + " | |"
                     + (" |" if "fit" in cols else ""))
    lines.append("| **share >= 0.8** | | " + " | ".join(f"{np.mean([r[c] >= 0.8 for r in rows]):.2f}" for c in cols)
                 + " | |" + (" |" if "fit" in cols else ""))
    return "\n".join(lines)


def fit_table(rows: list[dict]) -> str:
    keys = sorted({(r["method"], r["seed"]) for r in rows})
    by = {(r["case"], r["method"], r["seed"]): r for r in rows}
    names = list(dict.fromkeys(r["case"] for r in rows))
    lines = ["| case | " + " | ".join(f"{m} seed {s}: fit / gf of threshold" for m, s in keys) + " |",
             "|---|" + "---|" * len(keys)]
    for n in names:
        lines.append(f"| {n} | " + " | ".join(
            f"{by[n, m, s]['fit']:.3f} / {by[n, m, s]['threshold_guided']:.3f}" if (n, m, s) in by else "-"
            for m, s in keys) + " |")
    for label, f in (("mean", np.mean), ("worst", np.min)):
        lines.append(f"| **{label}** | " + " | ".join(
            f"{f([by[n, m, s]['fit'] for n in names if (n, m, s) in by]):.3f} / "
            f"{f([by[n, m, s]['threshold_guided'] for n in names if (n, m, s) in by]):.3f}" for m, s in keys) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    from benchmarks.experiments import run_screen

    def options(p):
        p.add_argument("--draw", choices=sorted(DRAWS) + ["named"], default="dev",
                       help="dev / check: random composites from two disjoint seed ranges; "
                            "named: segmentation_hints.md's 11")
        p.add_argument("--cases", type=int, default=30, help="random composites in the draw")
        p.add_argument("--size", type=int, default=128)
        p.add_argument("--objects", choices=sorted(OBJECTS), default="any", help="object sizes and places drawn")
        p.add_argument("--fit", metavar="METHOD", help="fit fast mode with METHOD's hints instead of scoring maps")
        p.add_argument("--seeds", default="0", help="with --fit or --call: comma-separated seeds")
        p.add_argument("--call", action="store_true", help="score the default fast call against the baselines")
        p.add_argument("--with-fit", action="store_true", help="with --call: the fit too (method='dip')")

    def jobs(a):
        todo = (named_cases(a.size) if a.draw == "named"
                else [draw_case(DRAWS[a.draw] + i, a.size, a.objects) for i in range(a.cases)])
        for case in todo:
            if a.call:
                for seed in (int(x) for x in a.seeds.split(",")):
                    yield (case.name, seed), lambda case=case, seed=seed: call_case(case, seed, a.with_fit)
            elif a.fit:
                for seed in (int(x) for x in a.seeds.split(",")):
                    yield (case.name, a.fit, seed), lambda case=case, seed=seed: fit_case(case, a.fit, seed)
            else:
                yield (case.name,), lambda case=case: score_case(case)

    def key(row):
        if "call" in row:
            return (row["case"], row["seed"])
        return (row["case"], row["method"], row["seed"]) if "fit" in row else (row["case"],)

    def either_table(rows):
        if rows and "call" in rows[0]:
            return call_table(rows)
        return fit_table(rows) if rows and "fit" in rows[0] else table(rows)

    return run_screen(__doc__, "saliency_screen.json", options, jobs, key, either_table, argv)


if __name__ == "__main__":
    sys.exit(main())
