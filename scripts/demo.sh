#!/usr/bin/env bash
# The main job on the bundled default: train a BPE tokenizer on the bundled corpus, tokenise it into
# two sources (prose, code), train configs/demo.yaml on their mixture, then print sampled
# continuations and a summary. Extra arguments go to `smol train`.
set -euo pipefail
cd "$(dirname "$0")/.."
smol=.build/release/smol
mkdir -p data/shards
tok=data/shards/tokenizer.json
[ -f $tok ] || $smol tokenizer train data/corpus/prose.txt data/corpus/code.txt --vocab-size 2048 \
  --special '<|endoftext|>' --out $tok
[ -f data/shards/prose.manifest.json ] || $smol data prepare data/corpus/prose.txt --tokenizer $tok --out data/shards --name prose --force
[ -f data/shards/code.manifest.json ] || $smol data prepare data/corpus/code.txt --delimiter '<|endoftext|>' \
  --tokenizer $tok --out data/shards --name code --force
exec $smol train configs/demo.yaml --out "${SMOL_DEMO_OUT:-runs/demo}" "$@"
