#!/usr/bin/env bash
# One call on a lent GPU machine (its own torch/triton, no registry): install without dependencies,
# run the kernel parity tests on CUDA tensors with compiled Triton, then the suite's fused-op and
# Adam rows on CUDA (torch reference vs Triton) and their tables.
#   bash benchmarks/gpu_kernels.sh [out_dir]        # out_dir: default $OUT, else /tmp/gpu_kernels
set -euo pipefail
out=${1:-${OUT:-/tmp/gpu_kernels}}
mkdir -p "$out"
pip install --no-build-isolation --no-deps -e . >"$out/install.log" 2>&1 || tail -20 "$out/install.log"
if ! python -c "import pytest_benchmark" 2>/dev/null; then  # the suite needs it (doubledip[test])
  pip install --no-deps pytest-benchmark py-cpuinfo >>"$out/install.log" 2>&1 || echo "pytest-benchmark missing" | tee -a "$out/install.log"
fi
nvidia-smi --query-gpu=name,memory.total,clocks.max.memory --format=csv | tee "$out/gpu.txt"
python -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" | tee -a "$out/gpu.txt"
export TRITON_INTERPRET=0 OMP_NUM_THREADS=4
python -m pytest -q -p no:cacheprovider tests/test_kernels_blend.py tests/test_kernels_exclusion.py \
    tests/test_kernels_noise.py 2>&1 | tail -30 | tee "$out/tests.txt" || true
python -m pytest -q -p no:cacheprovider benchmarks/test_kernels.py --bench-device cuda \
    --kernel-sizes 256,512,1024,2048 --benchmark-json="$out/bench_kernels_gpu.json" 2>&1 | tail -5 || true
python benchmarks/report.py "$out/bench_kernels_gpu.json" | tee "$out/bench_kernels_gpu.md"
