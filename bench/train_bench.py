"""Training throughput of `smol` next to PyTorch eager (fp32, AdamW, fused SDPA) on the same machine,
same shapes, same thread count, interleaved: each round runs every contender once per shape, so a
slow minute on this shared machine hits all of them, and each ratio is taken within one round.

OpenBLAS picks its kernels when it loads (AVX2 "Haswell", AVX-512 "SkylakeX"/"Cooperlake", ...),
unless OPENBLAS_CORETYPE names them. When that variable is set, smol runs twice per round: as
configured, and with the variable removed (OpenBLAS's own pick for this CPU). PyTorch does not use
OpenBLAS (its GEMMs are MKL's), so the variable does not touch it.

Needs PyTorch (python3 -m pip install torch). Usage:
  python3 bench/train_bench.py [--shapes tiny,smollm2-135m] [--steps 6] [--rounds 3] [--json]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def smol_run(shape, steps, env):
    out = subprocess.run([str(ROOT / ".build/release/smol"), "bench", "train", "--shape", shape, "--steps", str(steps), "--json"],
                         env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def torch_run(shape, steps, threads):
    out = subprocess.run([sys.executable, str(ROOT / "bench/torch_train.py"), "--shape", shape, "--steps", str(steps),
                          "--threads", str(threads)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", default="tiny,smollm2-135m")
    ap.add_argument("--steps", type=int, default=6, help="timed steps per run (each run reports its median step)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    threads = int(os.environ.get("SMOL_THREADS", os.cpu_count()))
    configured = dict(os.environ, SMOL_THREADS=str(threads))
    contenders = [("smol", configured)]
    if "OPENBLAS_CORETYPE" in os.environ:
        own = {k: v for k, v in configured.items() if k != "OPENBLAS_CORETYPE"}
        contenders.append(("smol, OPENBLAS_CORETYPE unset", own))

    rows = []
    for shape in a.shapes.split(","):
        runs = {name: [] for name, _ in contenders}
        runs["pytorch"] = []
        for r in range(a.rounds):
            # Alternate who goes first, so neither side always gets the warmer (or colder) machine.
            order = contenders + [("pytorch", None)]
            if r % 2:
                order = order[::-1]
            for name, env in order:
                runs[name].append(torch_run(shape, a.steps, threads) if env is None else smol_run(shape, a.steps, env))
        peer = runs["pytorch"]
        for name, _ in contenders:
            ours = runs[name]
            ratios = [o["tokens_per_s"] / p["tokens_per_s"] for o, p in zip(ours, peer)]
            rows.append({
                "shape": shape, "contender": name, "blas_core": ours[0].get("blas_core", "?"),
                "tokens_per_s": statistics.median(o["tokens_per_s"] for o in ours),
                "pytorch_tokens_per_s": statistics.median(p["tokens_per_s"] for p in peer),
                "ratio_median": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios),
                "peak_rss_bytes": max(o["peak_rss_bytes"] for o in ours),
                "pytorch_peak_rss_bytes": max(p["peak_rss_bytes"] for p in peer),
                "rounds": a.rounds, "steps": a.steps, "threads": threads, "peer": peer[0]["peer"],
            })
    if a.json:
        for row in rows:
            print(json.dumps(row))
        return
    print(f"{a.rounds} rounds × {a.steps} timed steps, {threads} threads; peer: {rows[0]['peer']}; "
          f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}")
    print(f"{'shape':<14} {'contender':<31} {'OpenBLAS':<11} {'tok/s':>8} {'PyTorch':>8} {'ratio (min-max)':>19}"
          f" {'RSS':>7} {'PyTorch RSS':>11}")
    for r in rows:
        print(f"{r['shape']:<14} {r['contender']:<31} {r['blas_core']:<11} {r['tokens_per_s']:>8.1f} {r['pytorch_tokens_per_s']:>8.1f}"
              f" {r['ratio_median']:>6.2f}x ({r['ratio_min']:.2f}-{r['ratio_max']:.2f})"
              f" {r['peak_rss_bytes'] / 1e9:>5.2f}GB {r['pytorch_peak_rss_bytes'] / 1e9:>9.2f}GB")


if __name__ == "__main__":
    main()
