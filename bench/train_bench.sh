#!/usr/bin/env bash
# Training throughput of `smol` next to PyTorch eager (fp32, AdamW, fused SDPA) on the same
# machine, same shapes, same thread count, in one run. Needs PyTorch: python3 -m pip install torch
# Usage: bench/train_bench.sh [steps]   (default 3 timed steps per shape; the median is reported)
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${1:-3}
threads=${SMOL_THREADS:-$(nproc)}
ours=$(SMOL_THREADS=$threads .build/release/smol bench train --steps "$steps" --json)
peer=$(python3 bench/torch_train.py --steps "$steps" --threads "$threads")
python3 - "$ours" "$peer" <<'PY'
import json, sys
ours = {r["name"]: r for r in map(json.loads, sys.argv[1].splitlines())}
peer = {r["name"]: r for r in map(json.loads, sys.argv[2].splitlines())}
print(f"{'shape':<14} {'smol tok/s':>10} {'torch tok/s':>11} {'ratio':>6}   {'smol RSS':>8} {'torch RSS':>9}   {'smol MFU':>8}")
for name, o in ours.items():
    p = peer[name]
    print(f"{name:<14} {o['tokens_per_s']:>10.1f} {p['tokens_per_s']:>11.1f} {o['tokens_per_s'] / p['tokens_per_s']:>5.2f}x"
          f"   {o['peak_rss_bytes'] / 1e9:>6.2f}GB {p['peak_rss_bytes'] / 1e9:>7.2f}GB   {100 * o['mfu']:>7.1f}%")
print(f"peer: {next(iter(peer.values()))['peer']}; threads {next(iter(ours.values()))['threads']}; "
      f"MFU over a measured sgemm peak of {next(iter(ours.values()))['peak_gflops']:.1f} GFLOP/s")
PY
