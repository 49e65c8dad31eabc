"""The ``doubledip`` command: one subcommand per task, plus ``demo`` (and ``evaluate``).

Errors in what the user gave (bad paths, images, options) exit with code 2 and one line on
stderr, and leave no output files behind (results are written only once a run has finished).
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from doubledip.cli_options import (CHECKPOINTS, UsageError, _Parser, _common, _config, _several,
                                   add_task_options)


def _add_task(sub, spec) -> None:
    """The subcommand of one registered task, from its spec's inputs and options."""
    p = sub.add_parser(spec.cli_name, help=spec.summary, description=spec.summary)
    for item in spec.inputs:
        if item.required:
            nargs = "+" if item.kind == "images" or _several(spec) else None
            p.add_argument(item.name, nargs=nargs, help=item.help)
        else:
            p.add_argument("--" + item.name.replace("_", "-"), dest=item.name, default=None, help=item.help)
    add_task_options(p, spec)
    _common(p)
    p.set_defaults(task=spec.name, func=_write)


def build_parser() -> argparse.ArgumentParser:
    from doubledip.engine.tasks import registry

    parser = _Parser(prog="doubledip", description="Double-DIP unsupervised image decomposition.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for spec in registry.tasks():
        _add_task(sub, spec)
    for group in registry.groups():  # `doubledip video separate ...`: a group's tasks under its name
        members = registry.tasks(group)
        listed = ", ".join(s.cli_name for s in members)
        p = sub.add_parser(group, help=f"{group} tasks: {listed}", description=f"{group} tasks: {listed}")
        inner = p.add_subparsers(dest="group_command", required=True, parser_class=_Parser)
        for spec in members:
            _add_task(inner, spec)

    p = sub.add_parser("demo", help="dehaze a hazed sample image (fast mode, short run, no arguments)")
    _common(p, default_out="doubledip-demo")
    p.set_defaults(iterations_default=600, mode="fast", func=_write)

    benched = [s.name for s in registry.tasks() if s.bench is not None]
    p = sub.add_parser("bench", help="time one optimisation step of a task on this machine")
    p.add_argument("--task", nargs="+", default=["separate"], metavar="TASK",
                   help=", ".join(benched) + " (several allowed)")
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

    from doubledip.evaluation.command import register

    register(sub)
    from doubledip.runs import command as batch_command

    batch_command.register(sub)
    return parser


def _long_run(args, config):
    """``config`` with one run's checkpoint settings: OUTDIR/.checkpoint, --resume, --keep-partial."""
    fields = {"keep_partial": args.keep_partial}
    if args.checkpoint_every is not None or args.resume:
        fields.update(checkpoint_dir=str(Path(args.output) / CHECKPOINTS), checkpoint_every=args.checkpoint_every,
                      resume=args.resume)
    return config.replace(**fields)


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
                    rows.append(bench(task, size, args.device, batch, args.steps,
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


def _check_output(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise UsageError(f"output {str(out)!r} exists and is not a folder")


def _task_call(spec, args, config) -> list[tuple[Path, object]]:
    """Run the task the subcommand names; returns (folder, result) pairs to save."""
    out = Path(args.output)
    options = {o.name: getattr(args, o.name) for o in spec.options if not o.in_config}
    options = {k: v for k, v in options.items() if v is not None and v is not False}
    optional = {i.name: getattr(args, i.name) for i in spec.optional_inputs if getattr(args, i.name) is not None}
    required = [getattr(args, i.name) for i in spec.required_inputs]
    if _several(spec):
        images = required[0]
        if len(images) > 1:  # several images: one batched run, OUTDIR/<name>/ each
            if config.checkpoint_dir is not None:
                raise UsageError(f"{spec.cli_name}: checkpoints cover one image; for several, "
                                 f"doubledip batch {spec.cli_name} ... checkpoints each input")
            if optional:
                raise UsageError(f"{spec.cli_name}: {', '.join('--' + n.replace('_', '-') for n in optional)} "
                                 f"applies to one image; give one image, or none of these options")
            from doubledip.engine.batch import batch

            results = batch(spec.name, images, config, **options)
            return [(out / folder, r) for folder, r in zip(_unique_stems(images), results)]
        required = [images[0]]
    return [(out, spec.run(*required, config, **optional, **options))]


def _run(args) -> Path:
    from doubledip.engine.tasks import registry

    out = Path(args.output)
    _check_output(out)
    if args.export == "onnx":
        import importlib.util

        if importlib.util.find_spec("onnx") is None or importlib.util.find_spec("onnxscript") is None:
            raise UsageError("--export onnx needs the onnx and onnxscript packages (pip install 'doubledip[onnx]')")
    extra = {}
    if args.command == "demo":
        import doubledip as dd

        hazy = demo_image()
        # the demo shows the fit (fast mode's default dehazing is the classic prior, no fit); the
        # fit's result is kept only where it explains the image better than the prior's
        runs = [(out, dd.dehaze(hazy, _long_run(args, _config(args)), method="dip"))]
        extra = {"input": hazy}
    else:
        spec = registry.get(args.task)
        if args.export and spec.export is None:  # refused before the run: nothing is written
            raise UsageError(f"--export: {spec.name} results cannot be exported")
        runs = _task_call(spec, args, _long_run(args, _config(args, spec)))
    from doubledip.engine import checkpoint

    partial = checkpoint.interrupted()  # Ctrl-C with --keep-partial: the best result so far
    for folder, result in runs:
        _save(result, folder, args, extra, partial)
    if not partial:  # finished: the checkpoint has done its job
        shutil.rmtree(out / CHECKPOINTS, ignore_errors=True)
    return out


def _save(result, folder: Path, args, extra_images: dict, partial: bool = False) -> None:
    """Write one result (and its export) into ``folder``; an unwritable folder is a usage error."""
    try:
        result.save(folder, overwrite=args.overwrite, extra_images=extra_images or None)
        if partial:
            from doubledip.runs.outputs import mark_partial

            mark_partial(folder)
        if args.export:
            result.export(folder / "export", args.export)
    except OSError as exc:  # unwritable or read-only: one line naming the folder
        raise UsageError(f"cannot write to {str(folder)!r}: {exc.strerror or exc}") from None
    # saved: why the run ended and what it warns about (an error above stays the one line)
    if getattr(result, "stopped_at", None) is not None:
        print(f"doubledip: stopped at iteration {result.stopped_at + 1}: {result.stop_reason}", file=sys.stderr)
    for message in getattr(result, "warnings", ()):
        print(f"doubledip: warning: {message}", file=sys.stderr)


def _write(args) -> int:
    """A task's or the demo's subcommand: run, save, list what was written."""
    out = _run(args)
    print(f"results written to {out.resolve()}")
    for f in sorted(out.iterdir()):
        if not f.name.startswith("."):
            print(f"  {f.name}")
    return 0


def main(argv: list[str] | None = None) -> int:
    import warnings

    from doubledip.engine.results import ShortRunWarning

    with warnings.catch_warnings():
        # the CLI prints a result's warnings as its own lines (_save), not as Python warnings
        warnings.filterwarnings("ignore", category=ShortRunWarning)
        return _main(argv)


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    args = None
    try:
        args = parser.parse_args(argv)
        return int(args.func(args) or 0)
    except UsageError as exc:
        print(f"doubledip: error: {exc}", file=sys.stderr)
        return 2
    except (ValueError, TypeError, FileNotFoundError, PermissionError) as exc:
        print(f"doubledip: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        saved = getattr(args, "output", None) and (Path(args.output) / CHECKPOINTS).is_dir()
        if saved:
            print(f"doubledip: interrupted; a checkpoint is in {Path(args.output) / CHECKPOINTS}: "
                  f"the same command with --resume continues", file=sys.stderr)
        else:
            print("doubledip: interrupted; nothing was written", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
