#!/usr/bin/env bash
# One call on a lent GPU machine (installs the package itself, as gpu_kernels.sh does): the engine
# on CUDA. Every task's short run (finite, in range), the compiled path against eager, then the
# suite's task steps per variant (batched 1/4/16) and peak memory on CUDA at 256 and 512, and
# `doubledip bench --compile` rows (compiled generators: not in the suite).
#   bash benchmarks/gpu_engine.sh [out_dir]         # out_dir: default $OUT, else /tmp/gpu_engine
set -euo pipefail
out=${1:-${OUT:-/tmp/gpu_engine}}
mkdir -p "$out"
pip install --no-build-isolation --no-deps -e . >"$out/install.log" 2>&1 || tail -20 "$out/install.log"
if ! python -c "import pytest_benchmark" 2>/dev/null; then  # the suite needs it (doubledip[test])
  pip install --no-deps pytest-benchmark py-cpuinfo >>"$out/install.log" 2>&1 || echo "pytest-benchmark missing" | tee -a "$out/install.log"
fi
export TRITON_INTERPRET=0 OMP_NUM_THREADS=4
# correctness on CUDA: the task, batch and fast-mode tests (device="auto" picks CUDA there)
python -m pytest -q -p no:cacheprovider tests/test_tasks.py tests/test_batched.py \
    tests/test_fast_mode.py 2>&1 | tail -15 | tee "$out/tests.txt" || true
python - <<'PY' | tee "$out/compile_smoke.txt"
# compile=True on CUDA (CUDA graphs): same first loss as eager, finite results
import numpy as np, doubledip as dd
img = np.random.default_rng(0).random((256, 256, 3)).astype(np.float32)
for task, run in (("separate", lambda c: dd.separate(img, c)), ("dehaze", lambda c: dd.dehaze(img, c, passes=1))):
    cfg = dd.SolverConfig(iterations=60, device="cuda", log_every=1, seed=1)
    e, c = run(cfg), run(cfg.replace(compile=True))
    first = abs(c.history[0]["loss"] - e.history[0]["loss"]) / e.history[0]["loss"]
    print(task, "first-loss rel diff", first, "eager s", e.seconds, "compiled s (incl. compile)", c.seconds,
          "losses at 60:", e.history[-1]["loss"], c.history[-1]["loss"])
PY
python -m pytest -q -p no:cacheprovider benchmarks/test_steps.py benchmarks/test_memory.py --bench-device cuda \
    --bench-sizes 256,512 --bench-batch 1,4,16 --benchmark-json="$out/bench_engine_gpu.json" 2>&1 | tail -5 || true
python benchmarks/report.py "$out/bench_engine_gpu.json" | tee "$out/bench_engine_gpu.md"
doubledip bench --device cuda --compile --task separate separate_pair segment dehaze remove_watermark \
    --size 256 512 --batch 1 --steps 20 -o "$out/bench_compile" | tee "$out/bench_compile.txt"
