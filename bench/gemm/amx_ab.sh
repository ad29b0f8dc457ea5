#!/bin/bash
# One-thread A/B of amx_gemm.c at git revision REV (old) against the working tree (new):
#   bash bench/gemm/amx_ab.sh REV [best-of-N]
# Prints GFLOP/s per shape and the ratio of total times; says whether C is the same bits.
set -euo pipefail
rev=${1:?usage: amx_ab.sh REV [best-of-N]}; reps=${2:-7}
root=$(cd "$(dirname "$0")/../.." && pwd); k=$root/Sources/SmolKernels
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
git -C "$root" show "$rev:Sources/SmolKernels/amx_gemm.c" > "$tmp/old.c"
git -C "$root" show "$rev:Sources/SmolKernels/bf16_pack.h" > "$tmp/bf16_pack.h"   # the old file includes its own
cc="gcc -O3 -march=native -I$k/include -I$k"
$cc -c "$k/amx_gemm.c" -o "$tmp/new.o"
$cc -Dsmol_gemm_amx=old_gemm -Dsmol_gemm_amx_scratch_bytes=old_scratch -c "$tmp/old.c" -o "$tmp/old.o"
$cc "$root/bench/gemm/amx_ab.c" "$tmp/new.o" "$tmp/old.o" "$k/cpu_features.c" -o "$tmp/amx_ab"
"$tmp/amx_ab" "$reps"
