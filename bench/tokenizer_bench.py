"""Encode throughput of `smol` next to Hugging Face `tokenizers` on the same text and vocabulary,
one core and all cores, in one run. Usage: python3 bench/tokenizer_bench.py TOKENIZER FILE...
(TOKENIZER: a tokenizer.json, or a .gguf whose tokenizer both sides load)."""
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def hf_tokenizer(path):
    from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers
    if not path.endswith(".gguf"):
        return Tokenizer.from_file(path)
    import gguf
    f = gguf.GGUFReader(path).fields
    tokens = [bytes(f["tokenizer.ggml.tokens"].parts[i]).decode() for i in f["tokenizer.ggml.tokens"].data]
    merges = [tuple(bytes(f["tokenizer.ggml.merges"].parts[i]).decode().split(" ", 1)) for i in f["tokenizer.ggml.merges"].data]
    types = [int(f["tokenizer.ggml.token_type"].parts[i][0]) for i in f["tokenizer.ggml.token_type"].data]
    tok = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False)])
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t, ty in zip(tokens, types) if ty == 3])
    return tok


def hf_mbps(path, files, threads, repeats=3):
    code = f"""
import os, sys, time, json
sys.path.insert(0, {os.path.join(ROOT, 'bench')!r})
from tokenizer_bench import hf_tokenizer
tok = hf_tokenizer({path!r})
docs = []
for f in {files!r}:
    docs += open(f, encoding='utf-8').read().split('\\n\\n')
n = sum(len(d.encode()) for d in docs)
best = 1e9
for _ in range({repeats}):
    t0 = time.perf_counter(); tok.encode_batch(docs); best = min(best, time.perf_counter() - t0)
print(n / best / 1e6)
"""
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads), TOKENIZERS_PARALLELISM="true")
    return float(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout)


def main():
    path, files = sys.argv[1], sys.argv[2:]
    ours = json.loads(subprocess.run([os.path.join(ROOT, ".build/release/smol"), "bench", "tokenizer", "--tokenizer", path,
                                      *sum((["--file", f] for f in files), []), "--json"], capture_output=True, text=True, check=True).stdout)
    n = ours["threads"]
    one, alln = hf_mbps(path, files, 1), hf_mbps(path, files, n)
    print(f"{'':<12} {'smol MB/s':>10} {'HF MB/s':>9} {'ratio':>6}")
    print(f"{'1 core':<12} {ours['mbps_one_core']:>10.2f} {one:>9.2f} {ours['mbps_one_core'] / one:>5.2f}x")
    print(f"{f'{n} cores':<12} {ours['mbps_all_cores']:>10.2f} {alln:>9.2f} {ours['mbps_all_cores'] / alln:>5.2f}x")
    print(f"text: {ours['bytes']} bytes in {', '.join(files)}; tokenizer {path}")


if __name__ == "__main__":
    main()
