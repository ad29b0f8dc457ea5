"""How fast could a training step of the tiny shape be with the OpenBLAS kernels loaded here?

Times, one by one and in isolation, every GEMM of one training step (the seven projections of
each layer forward, their input and weight gradients, attention's seven GEMMs per query block,
and the output head's three GEMMs per 2,048-row chunk) through Debian's OpenBLAS (ctypes, the
library smol links, the same environment and thread count), and adds them up. A step that did nothing but those GEMMs, each at its
isolated best, would run at `ceiling` tokens/s; the real step also has the softmaxes, SwiGLU,
norms, RoPE and AdamW. Then runs `smol bench train` and PyTorch on the same shape, so the three
figures come from one run. Usage: python3 bench/gemm_ceiling.py [--repeats 10] [--steps 6]
"""
import argparse
import ctypes
import os
import time
import numpy as np

from train_bench import smol_run, torch_run

ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112

# tiny: vocab 8192, hidden 256, 6 layers, 4 heads of 64, 2 KV heads, intermediate 688, 16 × 256 tokens
V, C, L, Q, KV, F, N = 8192, 256, 6, 256, 128, 688, 16 * 256
HEAD_ROWS = 2048  # the head's row chunk (CrossEntropyHead: 2^24 floats of logits / V)
THREADS = int(os.environ.get("SMOL_THREADS", os.cpu_count()))


def step_gemms():
    """(name, transA, transB, m, n, k, beta, calls per step, BLAS threads per call) for one step, as
    LlamaModel, Attention and CrossEntropyHead call them."""
    linears = [("q", C, Q), ("k", C, KV), ("v", C, KV), ("o", Q, C), ("gate", C, F), ("up", C, F), ("down", F, C)]
    out = []
    for name, fan_in, fan_out in linears:       # y = x Wᵀ, dx = dy W, dW += dyᵀ x
        out.append((f"{name} forward", False, True, N, fan_out, fan_in, 1.0 if name in ("o", "down") else 0.0, L, THREADS))
        out.append((f"{name} dx", False, False, N, fan_in, fan_out, 0.0, L, THREADS))
        out.append((f"{name} dW", True, False, fan_out, fan_in, N, 1.0, L, THREADS))
    # Attention (Attention.swift): per (sequence, KV head) task, per 64-row query block ending at t1,
    # the rep = 2 query heads packed into m = 128 rows against the t1 visible keys: QKᵀ and PV
    # forward; QKᵀ again, dV, dP, dQ and dK backward. Tasks run one per thread, each GEMM on one
    # thread.
    m, d, tasks = 2 * 64, 64, 16 * 2   # batch 16 × 2 KV heads
    for t1 in range(64, 257, 64):
        per = tasks * L
        out.append((f"attn QKᵀ t1={t1}", False, True, m, t1, d, 0.0, 2 * per, 1))
        out.append((f"attn PV t1={t1}", False, False, m, d, t1, 0.0, per, 1))
        out.append((f"attn dV t1={t1}", True, False, t1, d, m, 1.0, per, 1))
        out.append((f"attn dP t1={t1}", False, True, m, t1, d, 0.0, per, 1))
        out.append((f"attn dQ t1={t1}", False, False, m, d, t1, 0.0, per, 1))
        out.append((f"attn dK t1={t1}", True, False, t1, d, m, 1.0, per, 1))
    chunks = N // HEAD_ROWS
    out.append(("head logits", False, True, HEAD_ROWS, V, C, 0.0, chunks, THREADS))
    out.append(("head dx", False, False, HEAD_ROWS, C, V, 0.0, chunks, THREADS))
    out.append(("head dW", True, False, V, C, HEAD_ROWS, 1.0, chunks, THREADS))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--steps", type=int, default=6)
    a = ap.parse_args()
    blas = ctypes.CDLL("libopenblas.so.0")
    blas.openblas_get_corename.restype = ctypes.c_char_p
    blas.cblas_sgemm.argtypes = [ctypes.c_int] * 6 + [ctypes.c_float, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p,
                                                      ctypes.c_int, ctypes.c_float, ctypes.c_void_p, ctypes.c_int]
    rng = np.random.default_rng(0)
    total, flops = 0.0, 0.0
    print(f"OpenBLAS {blas.openblas_get_corename().decode()} kernels, {THREADS} threads, best of {a.repeats} per GEMM")
    for name, ta, tb, m, n, k, beta, count, gemm_threads in step_gemms():
        blas.openblas_set_num_threads(gemm_threads)
        A = rng.standard_normal((k, m) if ta else (m, k)).astype(np.float32)
        B = rng.standard_normal((n, k) if tb else (k, n)).astype(np.float32)
        Cm = np.zeros((m, n), np.float32)
        best = float("inf")
        for _ in range(a.repeats + 1):
            t0 = time.perf_counter()
            blas.cblas_sgemm(ROW_MAJOR, TRANS if ta else NO_TRANS, TRANS if tb else NO_TRANS, m, n, k, 1.0,
                             A.ctypes.data, A.shape[1], B.ctypes.data, B.shape[1], beta, Cm.ctypes.data, n)
            best = min(best, time.perf_counter() - t0)
        # Single-threaded GEMMs run THREADS at a time, one per core; threaded ones one after another.
        total += best * count / (THREADS // gemm_threads)
        flops += 2.0 * m * n * k * count
        print(f"  {name:<16} {m:>5}×{n:<5}×{k:<5} ×{count:<4g} {gemm_threads} thr {2 * m * n * k / best / 1e9:6.1f} GFLOP/s")
    ceiling = N / total
    print(f"GEMMs of one step: {flops / 1e9:.1f} GFLOP in {total * 1e3:.0f} ms → ceiling {ceiling:,.0f} tokens/s")
    smol = smol_run("tiny", a.steps, dict(os.environ))
    torch = torch_run("tiny", a.steps, THREADS)
    s, p = smol["tokens_per_s"], torch["tokens_per_s"]
    print(f"smol {s:,.0f} tokens/s ({100 * s / ceiling:.0f}% of the ceiling, OpenBLAS {smol['blas_core']}); "
          f"PyTorch {p:,.0f}; smol/PyTorch {s / p:.2f}×; ceiling/PyTorch {ceiling / p:.2f}×")


if __name__ == "__main__":
    main()
