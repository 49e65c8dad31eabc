"""The ``doubledip batch TASK INPUT... -o OUT`` subcommand.

Exit codes: 0 every input done, 1 some failed (a summary line on stderr), 2 a usage error,
130 interrupted (Ctrl-C: rerun the same command to continue).
"""
from __future__ import annotations

import argparse
import sys

__all__ = ["register", "run"]


def _add_batch_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("batch")
    g.add_argument("--workers", type=int, default=None, metavar="N",
                   help="local worker processes (default 1: this process); with --ray, the Ray tasks kept in flight")
    g.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                   help="run each input as a Ray task: without ADDRESS (or 'local') on a local Ray "
                        "instance, with one ('auto', 'ray://host:10001') on that cluster")
    g.add_argument("--num-cpus", type=float, default=1, help="CPUs per Ray task (default 1)")
    g.add_argument("--num-gpus", type=float, default=0,
                   help="GPUs per Ray task (fractions such as 0.25 let several fits share a GPU)")
    g.add_argument("--retry-failed", action="store_true", help="run inputs that failed before again")
    g.add_argument("--group", type=int, default=None, metavar="N",
                   help="fit up to N same-size inputs in one batched run (default: 1 on CPUs, where it "
                        "does not pay; 4 on CUDA); image i of a group gets seed + i")
    g.add_argument("--checkpoint-every", type=int, default=None, metavar="K",
                   help="checkpoint each run every K iterations, so an interrupted input continues where "
                        "it was (default 500; 0: no checkpoints)")
    g.add_argument("--keep-partial", action="store_true",
                   help="on Ctrl-C, also save the running input's best result so far, marked partial in result.json")


def register(subparsers) -> argparse.ArgumentParser:
    """Add ``batch`` (one sub-subcommand per task, with the task's own options) to an argparse
    subparsers object; ``func`` is :func:`run`."""
    from doubledip.cli_options import _common, add_task_options
    from doubledip.engine.tasks import registry

    p = subparsers.add_parser(
        "batch", help="run a task on many images: folders, globs, a resumable manifest, workers or Ray",
        description="Run TASK on every INPUT (image files, folders of images, glob patterns) into "
                    "OUT/<name>/, recording each input's state in OUT/manifest.jsonl. A rerun redoes "
                    "nothing done and continues interrupted inputs from their checkpoints. Other inputs "
                    "of a task come from files beside each image: photo.png + photo.hint.png "
                    "(remove-watermark), photo.fg_hint.png + photo.bg_hint.png (segment), mix.png + "
                    "mix.image2.png (separate-pair); remove-watermark-multi takes one folder per set.")
    tasks = p.add_subparsers(dest="batch_task", required=True, metavar="TASK", parser_class=type(p))
    for spec in registry.tasks():
        aliases = [spec.name] if spec.name != spec.cli_name else []
        tp = tasks.add_parser(spec.cli_name, aliases=aliases, help=spec.summary, description=spec.summary)
        tp.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders or glob patterns")
        add_task_options(tp, spec)
        _common(tp, long_runs=False)
        _add_batch_options(tp)
        tp.set_defaults(func=run, task=spec.name)
    return p


def run(args) -> int:
    """Run the batch ``args`` describe; returns the exit status."""
    from doubledip.cli_options import _config
    from doubledip.engine.tasks import registry
    from doubledip.runs.batch import DEFAULT_CHECKPOINT_EVERY, BatchInterrupted, run_many

    try:
        spec = registry.get(args.task)
        options = {o.name: getattr(args, o.name) for o in spec.options if not o.in_config}
        if args.workers is not None and args.workers < 1:
            raise ValueError(f"--workers must be >= 1, got {args.workers}")
        config = _config(args, spec)
        every = DEFAULT_CHECKPOINT_EVERY if args.checkpoint_every is None else args.checkpoint_every
        report = run_many(spec.name, args.inputs, args.output, config, workers=args.workers, ray=args.ray,
                          options=options, retry_failed=args.retry_failed, overwrite=args.overwrite,
                          group=args.group, export=args.export, checkpoint_every=every,
                          keep_partial=args.keep_partial, num_cpus=args.num_cpus, num_gpus=args.num_gpus,
                          progress=not args.quiet)
    except BatchInterrupted as stop:
        print(f"doubledip batch: interrupted: {stop.report.summary()}; rerun the same command to continue",
              file=sys.stderr)
        return 130
    except (ValueError, TypeError, FileNotFoundError, PermissionError) as exc:
        print(f"doubledip: error: {exc}", file=sys.stderr)
        return 2
    if report.failed:
        print(f"doubledip batch: {len(report.failed)} of {len(report.records)} inputs failed "
              f"({len(report.done)} done); see {report.manifest} for their errors", file=sys.stderr)
        return 1
    print(f"doubledip batch: {report.summary()}")
    return 0
