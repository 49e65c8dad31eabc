"""The ``doubledip`` command: one subcommand per task, plus ``demo`` (and ``evaluate``).

Errors in what the user gave (bad paths, images, options) exit with code 2 and one line on
stderr, and leave no output files behind (results are written only once a run has finished).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

TASKS = ("dehaze", "separate", "separate-pair", "segment", "remove-watermark", "remove-watermark-multi")


class UsageError(Exception):
    """A problem with what the user asked for: reported in one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's own errors: one line, exit 2
        raise UsageError(f"{self.prog}: {message}")


def _common(p: argparse.ArgumentParser, default_out: str | None = None) -> None:
    p.add_argument("-o", "--output", dest="output", default=default_out, required=default_out is None,
                   metavar="OUTDIR", help="folder for the result images and result.json")
    p.add_argument("--iterations", type=int, default=None,
                   help="total iterations of one run (default: the method's)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:N")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mode", default="reference", choices=("reference", "fast"),
                   help="reference: the published method; fast: the faster method (bf16 nets on GPUs, task changes, early stopping; see README)")
    p.add_argument("--log-every", type=int, default=25, help="progress/history every K iterations")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the generators (CUDA graphs on CUDA; a cold compile takes minutes on a CPU)")
    p.add_argument("--low-memory", action="store_true",
                   help="recompute activations in the backward instead of keeping them (same results, slower)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--export", choices=("onnx", "torchscript"), default=None,
                   help="also write the fitted generators to OUTDIR/export (with manifest.json)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="doubledip", description="Double-DIP unsupervised image decomposition.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("dehaze", help="remove haze: image, transmission map, airlight")
    p.add_argument("image", nargs="+", help="one image, or several of one size (batched: OUTDIR/<name>/ each)")
    p.add_argument("--airlight", type=float, nargs=3, metavar=("R", "G", "B"), default=None,
                   help="known airlight in [0, 1] (default: dark channel prior estimate)")
    p.add_argument("--learn-airlight", action="store_true", help="learn the airlight in the first pass too")
    p.add_argument("--passes", type=int, default=None, choices=(1, 2),
                   help="default: 2 (reference mode), 1 (fast mode)")
    _common(p)

    p = sub.add_parser("separate", help="split one image into two additive layers")
    p.add_argument("image", nargs="+", help="one image, or several of one size (batched: OUTDIR/<name>/ each)")
    _common(p)

    p = sub.add_parser("separate-pair", help="two layers from two mixtures with different weights")
    p.add_argument("image1")
    p.add_argument("image2")
    _common(p)

    p = sub.add_parser("segment", help="foreground/background segmentation")
    p.add_argument("image")
    p.add_argument("--fg-hint", default=None, help="map marking sure foreground (needs --bg-hint)")
    p.add_argument("--bg-hint", default=None, help="map marking sure background (needs --fg-hint)")
    _common(p)

    p = sub.add_parser("remove-watermark", help="remove a watermark inside a hinted region")
    p.add_argument("image")
    p.add_argument("hint", help="map that is 1 over the watermark's region")
    p.add_argument("--repeats", type=int, default=None, help="independent runs, median-combined (default 3)")
    _common(p)

    p = sub.add_parser("remove-watermark-multi", help="remove one watermark shared by several images")
    p.add_argument("images", nargs="+")
    p.add_argument("--repeats", type=int, default=None, help="independent runs, median-combined (default 3)")
    _common(p)

    p = sub.add_parser("demo", help="dehaze a hazed sample image (fast mode, short run, no arguments)")
    _common(p, default_out="doubledip-demo")
    p.set_defaults(iterations_default=600, mode="fast")

    p = sub.add_parser("bench", help="time one optimisation step of a task on this machine")
    p.add_argument("--task", nargs="+", default=["separate"], metavar="TASK",
                   help="separate, separate_pair, segment, dehaze, remove_watermark (several allowed)")
    p.add_argument("--size", type=int, nargs="+", default=[256], help="image side(s)")
    p.add_argument("--batch", type=int, nargs="+", default=[1], help="images per batched run")
    p.add_argument("--device", default="auto")
    p.add_argument("--steps", type=int, default=10, help="timed steps (after 3 warm-up steps)")
    p.add_argument("--mode", default="reference", choices=("reference", "fast"),
                   help="fast: the per-step part of fast mode (bf16 generators on GPUs; float32 on CPUs)")
    p.add_argument("--compile", action="store_true",
                   help="compiled generators (SolverConfig(compile=True)); the compile is timed apart")
    p.add_argument("-o", "--output", default=None, metavar="OUTDIR", help="also write OUTDIR/bench.json")
    p.set_defaults(func=_bench)

    try:
        from doubledip.evaluation.command import register
    except ImportError:  # the evaluation suite is optional at this stage
        register = None
    if register is not None:
        register(sub)
    return parser


def _config(args):
    from doubledip.engine.config import SolverConfig

    iterations = args.iterations if args.iterations is not None else getattr(args, "iterations_default", None)
    return SolverConfig(iterations=iterations, repeats=getattr(args, "repeats", None), device=args.device,
                        seed=args.seed, mode=args.mode, progress=not args.quiet, log_every=args.log_every,
                        threads=args.threads, compile=args.compile, low_memory=args.low_memory)


def demo_image(size: int = 192):
    """A sample photo shipped by scikit-image (chelsea), hazed through a smooth depth-like
    transmission and a known airlight (the quality suite's dehazing case)."""
    try:
        from doubledip.evaluation.cases import dehaze_case
    except ImportError:
        raise UsageError("demo needs scikit-image (pip install scikit-image)") from None
    return dehaze_case(size, "chelsea").args[0]


def _bench(args) -> int:
    """``doubledip bench``: a table on screen, JSON with -o."""
    import json

    from doubledip.engine.config import SolverConfig
    from doubledip.bench import bench, format_rows

    try:
        SolverConfig(device=args.device).resolve_device()
        rows = []
        for task in args.task:
            for size in args.size:
                for batch in args.batch:
                    rows.append(bench(task.replace("-", "_"), size, args.device, batch, args.steps,
                                      mode=args.mode, compile=args.compile))
                    print(f"done {task} {size}x{size} batch {batch}", file=sys.stderr)
    except (ValueError, TypeError) as exc:
        print(f"doubledip: error: {exc}", file=sys.stderr)
        return 2
    print(format_rows(rows))
    if args.output:
        out = Path(args.output)
        out.mkdir(parents=True, exist_ok=True)
        (out / "bench.json").write_text(json.dumps(rows, indent=2))
        print(f"wrote {out / 'bench.json'}", file=sys.stderr)
    return 0


def _unique_stems(paths: list[str]) -> list[str]:
    """Output folder names for several inputs: their file stems, numbered where they repeat."""
    stems = [Path(p).stem or "image" for p in paths]
    return [s if stems.count(s) == 1 else f"{i}_{s}" for i, s in enumerate(stems)]


def _run(args) -> Path:
    import doubledip as dd
    from doubledip.engine.io import save_png

    config = _config(args)
    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise UsageError(f"output {str(out)!r} exists and is not a folder")
    if args.export == "onnx":
        import importlib.util

        if importlib.util.find_spec("onnx") is None or importlib.util.find_spec("onnxscript") is None:
            raise UsageError("--export onnx needs the onnx and onnxscript packages (pip install 'doubledip[onnx]')")
    cmd = args.command
    if cmd in ("dehaze", "separate") and len(args.image) > 1:  # several images: one batched run
        options = {"airlight": args.airlight, "learn_airlight": args.learn_airlight,
                   "passes": args.passes} if cmd == "dehaze" else {}
        results = dd.batch(cmd, args.image, config, **options)
        for folder, result in zip(_unique_stems(args.image), results):
            result.save(out / folder)
            if args.export:
                result.export(out / folder / "export", args.export)
        return out
    if cmd == "dehaze":
        result = dd.dehaze(args.image[0], config, airlight=args.airlight, learn_airlight=args.learn_airlight,
                           passes=args.passes)
    elif cmd == "separate":
        result = dd.separate(args.image[0], config)
    elif cmd == "separate-pair":
        result = dd.separate_pair(args.image1, args.image2, config)
    elif cmd == "segment":
        result = dd.segment(args.image, args.fg_hint, args.bg_hint, config)
    elif cmd == "remove-watermark":
        result = dd.remove_watermark(args.image, args.hint, config)
    elif cmd == "remove-watermark-multi":
        result = dd.remove_watermark_multi(args.images, config)
    elif cmd == "demo":
        hazy = demo_image()
        result = dd.dehaze(hazy, config)
        result.save(out)
        save_png(out / "input.png", hazy)
        if args.export:
            result.export(out / "export", args.export)
        return out
    else:  # pragma: no cover - argparse rejects unknown commands
        raise UsageError(f"unknown command {cmd!r}")
    result.save(out)
    if args.export:
        result.export(out / "export", args.export)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if hasattr(args, "func"):  # subcommands that bring their own runner (evaluate)
            return int(args.func(args) or 0)
        out = _run(args)
    except UsageError as exc:
        print(f"doubledip: error: {exc}", file=sys.stderr)
        return 2
    except (ValueError, TypeError, FileNotFoundError, PermissionError) as exc:
        print(f"doubledip: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("doubledip: interrupted; nothing was written", file=sys.stderr)
        return 130
    print(f"results written to {out.resolve()}")
    for f in sorted(out.iterdir()):
        if not f.name.startswith("."):
            print(f"  {f.name}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
