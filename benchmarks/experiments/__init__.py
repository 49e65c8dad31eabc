"""Screens and side-by-sides outside the benchmark suite (see README.md here). Those that load
the authors' code run from the repository root as ``python -m benchmarks.experiments.<name>``."""

import argparse
import json
from pathlib import Path
from typing import Callable, Iterable


def _listed(x):
    """JSON for what json cannot write itself (numpy arrays and scalars): a list or a number."""
    import numpy as np

    return np.asarray(x).tolist()


def run_screen(doc: str, default_output: str, add_arguments: Callable[[argparse.ArgumentParser], None],
               jobs: Callable[[argparse.Namespace], Iterable[tuple[tuple, Callable[[], dict]]]],
               key: Callable[[dict], tuple], table: Callable[[list], str], argv=None) -> int:
    """The command line of a screen whose runs are rows of one JSON file: ``-o`` (the file),
    ``--table`` (print ``table`` of the file and exit), the screen's own options
    (``add_arguments``). ``jobs(args)`` yields (key, run) pairs; a run whose key (``key(row)``
    of a row already in the file) is there is skipped, and the file is written after each run
    (a stopped screen resumes where it was). Prints the table at the end."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    add_arguments(p)
    p.add_argument("-o", "--output", default=default_output)
    p.add_argument("--table", action="store_true", help="print the table of --output and exit")
    args = p.parse_args(argv)
    out = Path(args.output)
    if args.table:
        print(table(json.loads(out.read_text())))
        return 0
    rows = json.loads(out.read_text()) if out.exists() else []
    done = {key(r) for r in rows}
    for job_key, job in jobs(args):
        if job_key in done:
            continue
        rows.append(job())
        out.write_text(json.dumps(rows, indent=1, default=_listed))
    print(table(rows))
    return 0
