"""Data and tensor parallel on one machine: `mpirun -np 2 smol bench train` with one thread per rank
beside one process with two threads, same shape per rank (the 135M shape by default), interleaved in
rounds; each ratio (total tokens/s of the ranks / tokens/s of the one process) is taken within a
round. Also prints each rank's share of the step spent communicating, and ZeRO-1's. `--tp T` adds
`mpirun -np T smol bench train --tp T` (one model's shards on T ranks, one thread each, the same
batch as the one process); `--only-tp` leaves the data-parallel runs out.

Usage: python3 bench/dp_bench.py [--shape smollm2-135m] [--rounds 2] [--steps 3] [--tp 3 [--only-tp]]
"""
import argparse
import json
import os
import statistics
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SMOL = str(ROOT / ".build/release/smol")


def single(shape, steps, peak):
    env = dict(os.environ, SMOL_THREADS="2")
    out = subprocess.run([SMOL, "bench", "train", "--shape", shape, "--steps", str(steps), "--peak-gflops", peak, "--json"],
                         env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def data_parallel(shape, steps, peak, zero, np_=2, tp=1):
    root = ["--allow-run-as-root"] if os.geteuid() == 0 else []
    out = subprocess.run(["mpirun", *root, "--oversubscribe", "-np", str(np_), "-x", "SMOL_THREADS=1", SMOL, "bench", "train", "--shape", shape,
                          "--steps", str(steps), "--peak-gflops", peak, "--zero", str(zero), "--tp", str(tp), "--json"],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", default="smollm2-135m")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--tp", type=int, default=0)
    ap.add_argument("--only-tp", action="store_true")
    a = ap.parse_args()
    peak = "100"   # MFU is not the point here; skip the probe
    ratios, tp_ratios = [], []
    for r in range(a.rounds):
        runs = [("one", lambda: single(a.shape, a.steps, peak))]
        if not a.only_tp:
            runs += [("dp2", lambda: data_parallel(a.shape, a.steps, peak, 0)), ("dp2-zero1", lambda: data_parallel(a.shape, a.steps, peak, 1))]
        if a.tp > 1:
            runs.append((f"tp{a.tp}", lambda: data_parallel(a.shape, a.steps, peak, 0, np_=a.tp, tp=a.tp)))
        got = {name: f() for name, f in (runs if r % 2 == 0 else runs[::-1])}
        one = got["one"]["tokens_per_s"]
        for name in [n for n, _ in runs[1:]]:
            d = got[name]
            comm = [x["communication_share"] for x in d["ranks"]]
            rss = [x["peak_rss_bytes"] / 1e9 for x in d["ranks"]]
            print(f"round {r + 1} {name}: total {d['total_tokens_per_s']:.1f} tok/s vs one process × 2 threads {one:.1f} "
                  f"= {d['total_tokens_per_s'] / one:.3f}; communication {', '.join(f'{c:.1%}' for c in comm)}; "
                  f"peak RSS per rank {', '.join(f'{x:.2f}' for x in rss)} GB (one process {got['one']['peak_rss_bytes'] / 1e9:.2f} GB)",
                  flush=True)
        if "dp2" in got:
            ratios.append(got["dp2"]["total_tokens_per_s"] / one)
        if a.tp > 1:
            tp_ratios.append(got[f"tp{a.tp}"]["total_tokens_per_s"] / one)
    if ratios:
        print(f"median DP=2 × 1 thread / 1 process × 2 threads: {statistics.median(ratios):.3f} (min {min(ratios):.3f}, max {max(ratios):.3f})")
    if tp_ratios:
        print(f"median TP={a.tp} × 1 thread / 1 process × 2 threads: {statistics.median(tp_ratios):.3f} (min {min(tp_ratios):.3f}, max {max(tp_ratios):.3f})")


if __name__ == "__main__":
    main()
