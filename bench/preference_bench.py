"""A preference step (DPO, APO) beside an SFT step at the same shape, interleaved: each round runs
every objective once per shape, so a slow minute on this shared machine hits all of them, and each
ratio is taken within one round.

Both run the same rows (`smol bench train --objective ...`): two documents of seq_len / 2 tokens per
row, attention stopping at their edge, loss on the second half of each. For SFT that is two packed
conversations; for DPO it is one pair (chosen, rejected), whose step also scores the pair from the
forward's own log-probs and runs the output head a second time with the pair's token weights. The
reference model's log-probs are not part of the step: they are computed once before training
(`reference_seconds_per_step`: the forward over one step's pairs), and cached across runs.

Usage:
  python3 bench/preference_bench.py [--shapes tiny,smollm2-135m] [--objectives sft,dpo,apo_zero] [--steps 3] [--rounds 3]
"""
import argparse
import json
import os
import statistics
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def smol_run(shape, objective, steps):
    out = subprocess.run([str(ROOT / ".build/release/smol"), "bench", "train", "--shape", shape, "--objective", objective,
                          "--steps", str(steps), "--peak-gflops", "100", "--json"], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", default="tiny,smollm2-135m")
    ap.add_argument("--objectives", default="sft,dpo,apo_zero")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    objectives = args.objectives.split(",")
    print(f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}")
    for shape in args.shapes.split(","):
        runs = {o: [] for o in objectives}
        for _ in range(args.rounds):
            for o in objectives:
                runs[o].append(smol_run(shape, o, args.steps))
        base = objectives[0]
        r0 = runs[base][0]
        print(f"{shape} ({r0['batch']}×{r0['seq_len']} tokens per step, {args.rounds} interleaved rounds, median of {args.steps} steps each)")
        for o in objectives:
            tps = statistics.median(r["tokens_per_s"] for r in runs[o])
            ratio = statistics.median(r["tokens_per_s"] / b["tokens_per_s"] for r, b in zip(runs[o], runs[base]))
            ref = [r["reference_seconds_per_step"] for r in runs[o] if r.get("reference_seconds_per_step")]
            step = statistics.median(r["seconds_per_step"] for r in runs[o])
            extra = f"; reference scoring {statistics.median(ref):.3f} s per step's pairs, once ({statistics.median(ref) / step:.2f} of a step)" if ref else ""
            print(f"  {o:9s} {tps:9.1f} tok/s  {step:7.3f} s/step  {ratio:5.3f}× {base}{extra}")


if __name__ == "__main__":
    main()
