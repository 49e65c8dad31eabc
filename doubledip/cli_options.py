"""The command line's shared parts: the options every run takes, a task's own options, the
config they make, and the usage error (one line, exit code 2). ``doubledip.cli`` (one run) and
``doubledip.runs.command`` (``doubledip batch``) both build on these."""
from __future__ import annotations

import argparse

# a single run's checkpoints (--checkpoint-every, --resume), inside its output folder
CHECKPOINTS = ".checkpoint"


class UsageError(Exception):
    """A problem with what the user asked for: reported in one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's own errors: one line, exit 2
        raise UsageError(f"{self.prog}: {message}")


def _common(p: argparse.ArgumentParser, default_out: str | None = None, long_runs: bool = True) -> None:
    """The options every run takes; ``long_runs``: also one run's checkpoint options (``doubledip
    batch`` has its own, per input)."""
    p.add_argument("-o", "--output", dest="output", default=default_out, required=default_out is None,
                   metavar="OUTDIR", help="folder for the result images and result.json")
    p.add_argument("--overwrite", action="store_true",
                   help="replace another task's result (or other files) in OUTDIR; without it such a folder is refused")
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
    if not long_runs:
        return
    g = p.add_argument_group("long runs")
    g.add_argument("--checkpoint-every", type=int, default=None, metavar="K",
                   help=f"write a checkpoint to OUTDIR/{CHECKPOINTS} every K iterations (and on Ctrl-C)")
    g.add_argument("--resume", action="store_true",
                   help=f"continue from the checkpoint in OUTDIR/{CHECKPOINTS} (none there: start anew)")
    g.add_argument("--keep-partial", action="store_true",
                   help="on Ctrl-C, save the best result so far, marked partial in result.json")


def _several(spec) -> bool:
    """Whether the task's subcommand takes several images as one batched run (OUTDIR/<name>/ each):
    it batches, and its only required input is one image."""
    required = spec.required_inputs
    return spec.run_many is not None and len(required) == 1 and required[0].kind == "image"


def add_task_options(p: argparse.ArgumentParser, spec) -> None:
    """A task's own options (its spec's ``options``) as flags of ``p``."""
    for option in spec.options:
        if option.flag:
            p.add_argument(option.cli_flag, dest=option.name, action="store_true", help=option.help)
        else:
            p.add_argument(option.cli_flag, dest=option.name, type=option.type, nargs=option.nargs,
                           choices=option.choices, default=None, metavar=option.metavar, help=option.help)


def _config(args, spec=None):
    """The SolverConfig the parsed options ``args`` ask for (``spec``: the task, for its config options)."""
    from doubledip.engine.config import SolverConfig

    iterations = args.iterations if args.iterations is not None else getattr(args, "iterations_default", None)
    fields = {o.name: getattr(args, o.name) for o in (spec.options if spec else ()) if o.in_config}
    return SolverConfig(iterations=iterations, device=args.device, seed=args.seed, mode=args.mode,
                        progress=not args.quiet, log_every=args.log_every, threads=args.threads,
                        compile=args.compile, low_memory=args.low_memory, **fields)
