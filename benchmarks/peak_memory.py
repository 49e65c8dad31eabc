"""Peak resident memory of one task run, each in a fresh process (what a user's process pays).

    OMP_NUM_THREADS=1 python benchmarks/peak_memory.py --size 512 --tasks separate dehaze remove_watermark

Each task runs a few iterations on a random size x size image in a child process; the child
reports its peak RSS (``ru_maxrss``) and, for reference, the RSS after importing torch and
doubledip (before any work). Compare with the authors' figures in ../shared/PERFORMANCE.md
(separation 1.16 GB, dehazing 2.19 GB, watermark 1.98 GB at 512 x 512, RSS) or with
``benchmarks/vs_reference.py``.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = r"""
import json, resource, sys
import numpy as np
import doubledip as dd
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
task, size, mode, low = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4] == "1"
img = np.random.default_rng(0).random((size, size, 3)).astype(np.float32)
hint = np.zeros((size, size), np.float32); hint[size // 3: 2 * size // 3, size // 4: 3 * size // 4] = 1
cfg = dd.SolverConfig(iterations=6, repeats=1, mode=mode, low_memory=low)
run = {"separate": lambda: dd.separate(img, cfg), "separate_pair": lambda: dd.separate_pair(img, img[::-1].copy(), cfg),
       "dehaze": lambda: dd.dehaze(img, cfg, passes=1), "segment": lambda: dd.segment(img, hint, 1 - hint, cfg),
       "remove_watermark": lambda: dd.remove_watermark(img, hint, cfg)}[task]
run()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"task": task, "size": size, "mode": mode, "low_memory": low, "peak_rss_mb": peak,
                  "import_rss_mb": base}))
"""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", default=["separate", "dehaze", "remove_watermark"])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--mode", default="reference", choices=("reference", "fast"))
    parser.add_argument("--low-memory", action="store_true", help="SolverConfig(low_memory=True)")
    args = parser.parse_args(argv)
    rows = []
    for task in args.tasks:
        out = subprocess.run([sys.executable, "-c", CHILD, task, str(args.size), args.mode,
                              "1" if args.low_memory else "0"],
                             capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        r = rows[-1]
        print(f"{task:18s} {args.size}x{args.size} {args.mode:9s} low_memory={args.low_memory} peak RSS {r['peak_rss_mb']:7.0f} MB "
              f"(after imports {r['import_rss_mb']:.0f} MB)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
