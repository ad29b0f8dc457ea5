"""Distillation step speed against plain training at the same shape: `smol bench train` with no
teacher, with a whole-distribution teacher and with a top-64 teacher of the same shape, interleaved
round by round (these machines are shared and noisy: compare within a round).

    python3 bench/distill_bench.py --shape tiny --rounds 3
"""
import argparse
import json
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SMOL = os.environ.get("SMOL_BIN", str(ROOT / ".build/release/smol"))


def bench(shape, steps, distill):
    args = [SMOL, "bench", "train", "--shape", shape, "--steps", str(steps), "--json"] + (["--distill", distill] if distill else [])
    return json.loads(subprocess.run(args, check=True, capture_output=True, text=True).stdout)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", default="tiny")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=3)
    a = ap.parse_args()
    print(f"shape {a.shape}, OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}")
    print("round  plain tok/s  whole tok/s (×plain, teacher share)  top-64 tok/s (×plain, teacher share)  RSS plain/whole/top-64 GB")
    for r in range(a.rounds):
        p, w, k = (bench(a.shape, a.steps, d) for d in (None, "whole", "64"))
        print(f"{r + 1:5d}  {p['tokens_per_s']:11.1f}  {w['tokens_per_s']:11.1f} ({w['tokens_per_s'] / p['tokens_per_s']:.3f}, {w['teacher_share'] * 100:.1f}%)"
              f"          {k['tokens_per_s']:12.1f} ({k['tokens_per_s'] / p['tokens_per_s']:.3f}, {k['teacher_share'] * 100:.1f}%)"
              f"          {p['peak_rss_bytes'] / 1e9:.2f}/{w['peak_rss_bytes'] / 1e9:.2f}/{k['peak_rss_bytes'] / 1e9:.2f}", flush=True)


if __name__ == "__main__":
    main()
