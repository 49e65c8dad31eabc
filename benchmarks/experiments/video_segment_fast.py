"""Fast-mode video segmentation: the frames fitted in turn (the default) or together, against
each frame run alone.

    OMP_NUM_THREADS=1 python -m benchmarks.experiments.video_segment_fast --clips horse,cat \\
        --seeds 0,1,2 -o video_segment_fast.json [--table]
    # 12-frame clips, in turn within the clip's budget (the default) and without it
    OMP_NUM_THREADS=1 python -m benchmarks.experiments.video_segment_fast --frames 12 --unbounded \\
        -o video_segment_fast_12.json
    # reference mode (frames alone and together only), at the video suite's 400 iterations
    OMP_NUM_THREADS=1 python -m benchmarks.experiments.video_segment_fast --mode reference \\
        --iterations 400 -o video_segment_reference.json

Clips (6 frames, 128 x 128, hints: the true mask and its complement eroded by 4 px):
``horse``, the video suite's (coffee horse over grass, 4 px/frame); ``cat``, a second one built
here only (chelsea horse over gravel, 5 px/frame). Per clip and seed:

- ``alone``: ``dd.segment(frame_t, SolverConfig(mode="fast", seed=s), fg_hint=..., bg_hint=...)``
  on every frame, its IoU and seconds;
- ``in turn``: ``dd.segment_video(clip, SolverConfig(mode="fast", seed=s), fg_hints=...,
  bg_hints=...)``, the default call;
- ``together``: the same with ``frames_per_step=3`` (the shared nets, as reference mode).

Reported: mean and worst per-frame IoU, seconds, the clip's time over the mean time of one
frame alone, and the flicker (``doubledip.evaluation.suite.flicker``, motion-compensated) of
the runs alone and of each clip run. ``--table`` prints the Markdown table of a JSON written
before.
"""
from __future__ import annotations

import time

import numpy as np


def clip_case(name: str, size: int = 128, frames: int | None = None):
    from doubledip.evaluation.cases import VIDEO_FRAMES, segment_video_case

    frames = VIDEO_FRAMES if frames is None else frames
    if name == "horse":
        return segment_video_case(size, frames)
    if name == "cat":
        return segment_video_case(size, frames, foreground="chelsea", background="gravel", speed=5,
                                  name="cat_moving_hints")
    raise ValueError(f"unknown clip {name!r}; expected horse or cat")


UNBOUNDED = "in turn, unbounded"  # the label of in-turn fits without the clip's budget


def run(clip_name: str, seed: int, mode: str = "fast", iterations: int | None = None,
        frames: int | None = None, unbounded: bool = False) -> dict:
    import doubledip as dd
    from doubledip.engine.tasks import video
    from doubledip.evaluation import metrics
    from doubledip.evaluation.suite import flicker

    case = clip_case(clip_name, frames=frames)
    clip, fg, bg = case.args[0], case.kwargs["fg_hints"], case.kwargs["bg_hints"]
    truth, motion = case.truth["mask"], case.truth["motion"]
    cfg = dd.SolverConfig(mode=mode, seed=seed, iterations=iterations, progress=False)
    row = {"clip": clip_name, "seed": seed, "mode": mode, "iterations": iterations, "frames": len(clip)}
    masks, seconds = [], []
    for t in range(len(clip)):
        start = time.perf_counter()
        r = dd.segment(clip[t], cfg, fg_hint=fg[t], bg_hint=bg[t])
        seconds.append(time.perf_counter() - start)
        masks.append(r.mask)
    ious = [metrics.iou(m, truth[t]) for t, m in enumerate(masks)]
    row["alone"] = {"iou": ious, "seconds": seconds, "flicker": flicker(np.stack(masks), truth, motion)}
    # in turn is fast mode's own: reference mode fits the frames together (the paper's shared nets)
    labels = (("in turn", {}),) if mode == "fast" else ()
    if unbounded and mode == "fast":  # each frame WARM_SHARE whatever the clip's length (as before the budget)
        labels += ((UNBOUNDED, {}),)
    shipped = video.IN_TURN_BUDGET
    for label, kwargs in labels + (("together", {"frames_per_step": 3}),):
        video.IN_TURN_BUDGET = float("inf") if label == UNBOUNDED else shipped
        start = time.perf_counter()
        r = dd.segment_video(clip, cfg, fg_hints=fg, bg_hints=bg, **kwargs)
        took = time.perf_counter() - start
        video.IN_TURN_BUDGET = shipped
        row[label] = {"iou": [metrics.iou(r.mask[t], truth[t]) for t in range(len(clip))], "seconds": took,
                      "flicker": flicker(r.mask, truth, motion), "stop_reason": r.stop_reason}
        print(clip_name, seed, label, np.mean(row[label]["iou"]), took, flush=True)
    return row


def table(rows: list) -> str:
    labels = [k for k in ("in turn", UNBOUNDED, "together") if any(k in r for r in rows)]
    titles = {"in turn": "in turn (default)", UNBOUNDED: UNBOUNDED, "together": "together (3 frames/step)"}
    lines = ["| clip | seed | frames alone: IoU mean (min), s per frame, flicker | " + " | ".join(
        f"{titles[k]}: IoU mean (min), s, x a frame alone, flicker" for k in labels) + " |",
        "|---|---|---|" + "---|" * len(labels)]
    gaps = {k: [] for k in labels}
    ratios = {k: [] for k in labels}
    if not rows:
        return "(no rows)"
    for r in rows:
        alone = r["alone"]
        per_frame = float(np.mean(alone["seconds"]))
        cells = [f"{np.mean(alone['iou']):.3f} ({min(alone['iou']):.3f}), {per_frame:.1f}, {alone['flicker']:.4f}"]
        for label in labels:
            if label not in r:
                cells.append("- (reference mode: together only)")
                continue
            x = r[label]
            ratio = x["seconds"] / per_frame
            gaps[label].append(float(np.mean(x["iou"]) - np.mean(alone["iou"])))
            ratios[label].append(ratio)
            cells.append(f"{np.mean(x['iou']):.3f} ({min(x['iou']):.3f}), {x['seconds']:.1f}, {ratio:.2f}, "
                         f"{x['flicker']:.4f}")
        lines.append(f"| {r['clip']} | {r['seed']} | " + " | ".join(cells) + " |")
    for label in (k for k in labels if gaps[k]):
        lines.append(f"\n{label}: IoU minus the frames alone, mean {np.mean(gaps[label]):+.3f}, worst "
                     f"{min(gaps[label]):+.3f}; time over a frame alone, mean {np.mean(ratios[label]):.2f}, "
                     f"worst {max(ratios[label]):.2f}")
    return "\n".join(lines)


def main(argv=None) -> int:
    from benchmarks.experiments import run_screen

    def options(p):
        p.add_argument("--clips", default="horse,cat")
        p.add_argument("--seeds", default="0,1,2")
        p.add_argument("--mode", choices=("fast", "reference"), default="fast")
        p.add_argument("--iterations", type=int, help="per run (default: the mode's)")
        p.add_argument("--frames", type=int, help="frames per clip (default: the video suite's 6)")
        p.add_argument("--unbounded", action="store_true",
                       help="also fit in turn without the clip's budget (each frame WARM_SHARE)")

    def jobs(args):
        for name in args.clips.split(","):
            for seed in (int(s) for s in args.seeds.split(",")):
                yield (name, seed), lambda name=name, seed=seed: run(name, seed, args.mode, args.iterations,
                                                                    args.frames, args.unbounded)

    return run_screen(__doc__, "video_segment_fast.json", options, jobs, lambda r: (r["clip"], r["seed"]), table, argv)


if __name__ == "__main__":
    raise SystemExit(main())
