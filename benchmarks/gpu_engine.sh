#!/usr/bin/env bash
# One call on a lent GPU machine, after benchmarks/gpu_kernels.sh has installed the package:
# the engine on CUDA — every task's short run (finite, in range), batched vs one-at-a-time at the
# first iteration, reference vs fast mode per-step cost, and the batched images-per-hour table.
#   bash benchmarks/gpu_engine.sh [out_dir]
set -euo pipefail
out=${1:-${OUT:-/tmp/gpu_engine}}
mkdir -p "$out"
export TRITON_INTERPRET=0 OMP_NUM_THREADS=4
# correctness on CUDA: the task, batch and fast-mode tests (device="auto" picks CUDA there)
python -m pytest -q -p no:cacheprovider tests/test_tasks.py tests/test_batched.py \
    tests/test_fast_mode.py 2>&1 | tail -15 | tee "$out/tests.txt"
python - <<'PY' | tee "$out/smoke.txt"
import numpy as np, doubledip as dd
img = np.random.default_rng(0).random((256, 256, 3)).astype(np.float32)
for mode in ("reference", "fast"):
    r = dd.separate(img, dd.SolverConfig(iterations=50, device="cuda", mode=mode))
    print(mode, "separate", r.seconds, [float(l.min()) for l in r.layers], [float(l.max()) for l in r.layers])
PY
python - <<'PY' | tee "$out/compile_smoke.txt"
# compile=True on CUDA (CUDA graphs): same first loss as eager, finite results, one graph per group
import numpy as np, doubledip as dd
img = np.random.default_rng(0).random((256, 256, 3)).astype(np.float32)
for task, run in (("separate", lambda c: dd.separate(img, c)), ("dehaze", lambda c: dd.dehaze(img, c, passes=1))):
    cfg = dd.SolverConfig(iterations=60, device="cuda", log_every=1, seed=1)
    e, c = run(cfg), run(cfg.replace(compile=True))
    first = abs(c.history[0]["loss"] - e.history[0]["loss"]) / e.history[0]["loss"]
    print(task, "first-loss rel diff", first, "eager s", e.seconds, "compiled s (incl. compile)", c.seconds,
          "losses at 60:", e.history[-1]["loss"], c.history[-1]["loss"])
PY
for mode in reference fast; do
  doubledip bench --device cuda --mode "$mode" --task separate separate_pair segment dehaze remove_watermark \
      --size 256 512 --batch 1 --steps 20 -o "$out/bench_$mode" | tee "$out/bench_$mode.txt"
done
doubledip bench --device cuda --task separate dehaze --size 256 --batch 1 4 16 --steps 20 \
    -o "$out/bench_batch" | tee "$out/bench_batch.txt"
# compiled generators (CUDA graphs): per-step cost after the compile, against the eager rows above
doubledip bench --device cuda --compile --task separate separate_pair segment dehaze remove_watermark \
    --size 256 512 --batch 1 --steps 20 -o "$out/bench_compile" | tee "$out/bench_compile.txt"
doubledip bench --device cuda --compile --task separate dehaze --size 256 --batch 1 4 16 --steps 20 \
    -o "$out/bench_batch_compile" | tee "$out/bench_batch_compile.txt"
