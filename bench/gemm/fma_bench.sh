#!/bin/bash
# One-thread comparison of the non-AMX bf16 GEMM kernels and OpenBLAS sgemm (bench/gemm/fma_bench.c):
#   bash bench/gemm/fma_bench.sh [best-of-N]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd); k=$root/Sources/SmolKernels
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
gcc -O3 -march=native -I"$k/include" -I"$k" "$root/bench/gemm/fma_bench.c" "$k/bf16_gemm.c" "$k/bf16_fma_gemm.c" "$k/cpu_features.c" \
    -I/usr/include/x86_64-linux-gnu -lopenblas -lm -o "$tmp/fma_bench"
OPENBLAS_NUM_THREADS=1 OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-Haswell} "$tmp/fma_bench" "${1:-3}"
