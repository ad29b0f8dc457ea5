#!/usr/bin/env bash
# The main job on the bundled default: tokenise the bundled corpus, train configs/demo.yaml,
# then print sampled continuations and a summary. Extra arguments go to `smol train`.
set -euo pipefail
cd "$(dirname "$0")/.."
smol=.build/release/smol
mkdir -p data/shards
[ -f data/shards/prose.bin ] || $smol data prepare data/corpus/prose.txt --out data/shards/prose.bin
[ -f data/shards/code.bin ] || $smol data prepare data/corpus/code.txt --delimiter '<|endoftext|>' --out data/shards/code.bin
exec $smol train configs/demo.yaml --out "${SMOL_DEMO_OUT:-runs/demo}" "$@"
