"""Training throughput of `smol` next to PyTorch on the same machine, same shapes, same thread
count, AdamW and clipping, interleaved: each round runs every contender once per shape, so a slow
minute on this shared machine hits all of them, and each ratio is taken within one round.

Contenders: smol fp32 and smol bf16 (`--precision bf16`: our AMX / AVX512-BF16 GEMMs); peers:
PyTorch eager fp32, and PyTorch `torch.compile` with bf16 autocast (its fastest CPU path; its
compilation is not timed). Ratios are smol's tokens/s over each peer's, per round.

OpenBLAS picks its kernels when it loads (AVX2 "Haswell", AVX-512 "SkylakeX"/"Cooperlake", ...),
unless OPENBLAS_CORETYPE names them. With --unpinned and the variable set, smol fp32 also runs with
it removed (OpenBLAS's own pick). PyTorch does not use OpenBLAS (MKL / oneDNN).

Needs PyTorch (python3 -m pip install torch). Usage:
  python3 bench/train_bench.py [--shapes tiny,smollm2-135m] [--steps 6] [--rounds 3] [--peers eager,compile-bf16] [--json]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def smol_run(shape, steps, env, precision):
    out = subprocess.run([str(ROOT / ".build/release/smol"), "bench", "train", "--shape", shape, "--steps", str(steps),
                          "--precision", precision, "--json"], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def torch_run(shape, steps, threads, mode):
    out = subprocess.run([sys.executable, str(ROOT / "bench/torch_train.py"), "--shape", shape, "--steps", str(steps),
                          "--threads", str(threads), "--mode", mode], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", default="tiny,smollm2-135m")
    ap.add_argument("--steps", type=int, default=6, help="timed steps per run (each run reports its median step)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--peers", default="eager,compile-bf16")
    ap.add_argument("--precisions", default="fp32,bf16")
    ap.add_argument("--unpinned", action="store_true", help="also smol fp32 with OPENBLAS_CORETYPE removed")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    threads = int(os.environ.get("SMOL_THREADS", os.cpu_count()))
    configured = dict(os.environ, SMOL_THREADS=str(threads))
    ours = [(f"smol {p}", configured, p) for p in a.precisions.split(",")]
    if a.unpinned and "OPENBLAS_CORETYPE" in os.environ:
        ours.append(("smol fp32, OPENBLAS_CORETYPE unset", {k: v for k, v in configured.items() if k != "OPENBLAS_CORETYPE"}, "fp32"))
    peers = [(f"pytorch {m}", m) for m in a.peers.split(",")]

    rows = []
    for shape in a.shapes.split(","):
        runs = {name: [] for name, *_ in ours + peers}
        for r in range(a.rounds):
            # Alternate who goes first, so no contender always gets the warmer (or colder) machine.
            order = [("smol", c) for c in ours] + [("peer", p) for p in peers]
            if r % 2:
                order = order[::-1]
            for kind, c in order:
                if kind == "smol":
                    runs[c[0]].append(smol_run(shape, a.steps, c[1], c[2]))
                else:
                    runs[c[0]].append(torch_run(shape, a.steps, threads, c[1]))
        for name, _, precision in ours:
            row = {"shape": shape, "contender": name, "blas_core": runs[name][0].get("blas_core", "?"),
                   "precision": runs[name][0].get("precision", precision),
                   "tokens_per_s": statistics.median(o["tokens_per_s"] for o in runs[name]),
                   "peak_rss_bytes": max(o["peak_rss_bytes"] for o in runs[name]),
                   "rounds": a.rounds, "steps": a.steps, "threads": threads, "vs": {}}
            for peer, _ in peers:
                ratios = [o["tokens_per_s"] / p["tokens_per_s"] for o, p in zip(runs[name], runs[peer])]
                row["vs"][peer] = {"peer": runs[peer][0]["peer"], "tokens_per_s": statistics.median(p["tokens_per_s"] for p in runs[peer]),
                                   "peak_rss_bytes": max(p["peak_rss_bytes"] for p in runs[peer]),
                                   "ratio_median": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios)}
            rows.append(row)
    if a.json:
        for row in rows:
            print(json.dumps(row))
        return
    print(f"{a.rounds} rounds × {a.steps} timed steps, {threads} threads; OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}")
    for r in rows:
        print(f"{r['shape']:<13} {r['contender']:<36} {r['tokens_per_s']:>8.1f} tok/s  RSS {r['peak_rss_bytes'] / 1e9:.2f} GB")
        for peer, v in r["vs"].items():
            print(f"{'':<13}   vs {peer:<20} {v['tokens_per_s']:>8.1f} tok/s  RSS {v['peak_rss_bytes'] / 1e9:.2f} GB"
                  f"   ratio {v['ratio_median']:.2f}x ({v['ratio_min']:.2f}-{v['ratio_max']:.2f})")


if __name__ == "__main__":
    main()
