"""The ``doubledip evaluate`` subcommand."""
from __future__ import annotations

import argparse
import sys

__all__ = ["register", "run"]


def register(subparsers) -> argparse.ArgumentParser:
    """Add ``evaluate`` to an ``argparse`` subparsers object; the parser's ``func`` default is
    :func:`run` (call ``args.func(args)``; it returns the exit status)."""
    from doubledip.evaluation.suite import SUITES, evaluated_tasks
    p = subparsers.add_parser(
        "evaluate", help="run the quality suite (cases with known answers) and print its table",
        description="Run each task on synthetic cases built from scikit-image's sample images, "
                    "score the results against the known answers and trivial baselines, print a "
                    "table and (with -o) write DIR/evaluation.json.")
    p.add_argument("--suite", choices=sorted(SUITES), default="quick",
                   help="quick: every task once at 128x128, a few hundred iterations; "
                        "full: several cases per task at 256x256, default iterations; "
                        "video: the video tasks on 6-frame clips at 128x128, per frame, flicker, "
                        "against per-frame runs at equal time")
    p.add_argument("--tasks", default=None,
                   help="comma-separated API names to run (default: all): " + ",".join(evaluated_tasks()))
    p.add_argument("--mode", default="reference", help="solver mode (default: reference)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--iterations", type=int, default=None,
                   help="iterations for every task (default: the suite's)")
    p.add_argument("--size", type=int, default=None, help="image side (default: the suite's)")
    p.add_argument("--log-every", type=int, default=None, help="curve resolution in iterations")
    p.add_argument("-o", "--output", dest="output", default=None, metavar="DIR",
                   help="write DIR/evaluation.json")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    """Run the suite as ``args`` say, printing a line per finished case and then the table."""
    from doubledip.evaluation.suite import evaluate, format_table, format_video_table

    def report(row):
        print(f"done {row['task']} / {row['case']}: {row['primary']} "
              f"{row['metrics'].get(row['primary'])} in {row['seconds']:.1f} s", file=sys.stderr)

    try:
        rows = evaluate(suite=args.suite, tasks=args.tasks, mode=args.mode, device=args.device,
                        seed=args.seed, iterations=args.iterations, log_every=args.log_every,
                        out_dir=args.output, size=args.size, report=report)
    except (ValueError, TypeError, ImportError) as exc:
        print(f"doubledip evaluate: error: {exc}", file=sys.stderr)
        return 2
    print(format_video_table(rows) if args.suite == "video" else format_table(rows))
    if args.output:
        print(f"wrote {args.output}/evaluation.json", file=sys.stderr)
    return 0


def main(argv=None) -> int:
    """Stand-alone entry point: ``python -m doubledip.evaluation.command ...``."""
    parser = argparse.ArgumentParser(prog="doubledip")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
