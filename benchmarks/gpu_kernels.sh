#!/usr/bin/env bash
# One call on a lent GPU machine (its own torch/triton, no registry): install without dependencies,
# run the kernel parity tests on CUDA tensors with compiled Triton, then the GPU benchmark rows.
#   bash benchmarks/gpu_kernels.sh [out_dir]
set -euo pipefail
out=${1:-${OUT:-/tmp/gpu_kernels}}
mkdir -p "$out"
pip install --no-build-isolation --no-deps -e . >"$out/install.log" 2>&1 || tail -20 "$out/install.log"
nvidia-smi --query-gpu=name,memory.total,clocks.max.memory --format=csv | tee "$out/gpu.txt"
python -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" | tee -a "$out/gpu.txt"
export TRITON_INTERPRET=0 OMP_NUM_THREADS=4
python -m pytest -q -p no:cacheprovider tests/test_kernels_blend.py tests/test_kernels_exclusion.py \
    tests/test_kernels_noise.py 2>&1 | tail -30 | tee "$out/tests.txt"
python -m pytest -q -p no:cacheprovider benchmarks/bench_kernels.py -k gpu \
    --benchmark-json="$out/bench_gpu.json" 2>&1 | tail -5
python benchmarks/bench_kernels.py "$out/bench_gpu.json" | tee "$out/bench_gpu.md"
