#!/usr/bin/env bash
# Long-context extension, shown on a small model trained from scratch: SFT on needle-in-a-haystack
# conversations of up to 128 tokens, then a context stage of up to 512-token conversations that
# raises RoPE θ; RULER's single needle scored at 128, 256 and 512 tokens before and after.
# About 20 minutes on 2 cores. Results: docs/LONG_CONTEXT.md.
set -euo pipefail
cd "$(dirname "$0")"
SMOL=${SMOL_BIN:-../../.build/release/smol}
mkdir -p work/tokenizer
# The tokenizer learns the prose and the task's own phrases (the preamble and the question), as a
# model's tokenizer learns its domain: the fixed part of a needle prompt then takes about 60 tokens,
# leaving a haystack even at 128.
python3 -c "import make_needle_data as m; open('work/phrases.txt', 'w').write('\n\n'.join(m.prompt([], 0.5, k, '12') for k in m.KEYS * 40))"
$SMOL tokenizer train ../../data/corpus/prose.txt work/phrases.txt --vocab-size 4096 --special '<|endoftext|>' --out work/tokenizer/tokenizer.json
# A plain template: the user turn (the needle prompt) then the answer and the end of text.
python3 - <<'PY'
import json
json.dump({"eos_token": "<|endoftext|>",
           "chat_template": "{% for m in messages %}{{ m.content }}{% if m.role == 'assistant' %}<|endoftext|>{% endif %}{% endfor %}"},
          open("work/tokenizer/tokenizer_config.json", "w"))
PY
python3 make_needle_data.py work/tokenizer/tokenizer.json ../../data/corpus/prose.txt 70 121 48000 1 2 work/short.jsonl
python3 make_needle_data.py work/tokenizer/tokenizer.json ../../data/corpus/prose.txt 122 505 6000 2 2 work/long.jsonl
$SMOL data prepare work/short.jsonl --format chat --tokenizer work/tokenizer --seq-len 128 --out work/short.bin --force
$SMOL data prepare work/long.jsonl --format chat --tokenizer work/tokenizer --seq-len 512 --out work/long.bin --force
$SMOL train long_context.yaml --out work/run --force --no-store
$SMOL eval work/run/checkpoints/step_00003000 --tasks needle.yaml --output work/before > /dev/null
$SMOL eval work/run/checkpoints/step_00004500 --tasks needle.yaml --output work/after > /dev/null
python3 - <<'PY'
import json
for name in ("before", "after"):
    grid = json.load(open(f"work/{name}/results.json"))["tasks"]["needle_demo"]["needle_grid"]
    by_length = {}
    for c in grid:
        by_length.setdefault(c["length"], []).append(c["accuracy"] * c["n"])
    n = {c["length"]: 0 for c in grid}
    for c in grid:
        n[c["length"]] += c["n"]
    print(f"{name:6s} " + "  ".join(f"{L} tokens: {sum(v) / n[L]:.3f}" for L, v in sorted(by_length.items())))
PY
python3 digits.py
