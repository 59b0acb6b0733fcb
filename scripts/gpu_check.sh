#!/usr/bin/env bash
# The device checks of a session lent a CUDA GPU: the CUDA-marked tests and the CUDA part of the
# benchmark, with the image's own python3 (torch with CUDA; fade_mm's core needs torch only).
# Writes pytest's and the benchmark's output (and the benchmark JSON) to ${OUT:-/tmp}.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-/tmp}
nvidia-smi -L
python3 -c 'import torch; print("torch", torch.__version__, torch.cuda.get_device_name())'
timeout 300 python3 -m pytest -q -m cuda -p no:cacheprovider tests/test_cuda.py 2>&1 \
    | tee "$out/cuda_tests.txt" | tail -25
timeout 240 python3 tools/benchmark.py --parts cuda --json "$out/bench_cuda.json" 2>&1 \
    | tee "$out/bench_cuda.txt"
