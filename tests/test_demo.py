"""The README's main job, shortened: scripts/demo.sh on the bundled corpus (BPE tokenizer, prose and
code mixed 75/25) must learn — its held-out loss must fall well below ln(vocab), the loss of a uniform
guess — and draw its sources in the configured proportions."""
import json
import math
import os
import subprocess

from conftest import ROOT, smol_binary


def test_demo_learns_well_below_uniform(tmp_path):
    env = dict(os.environ, SMOL_DEMO_OUT=str(tmp_path / "demo"))
    r = subprocess.run(["bash", str(ROOT / "scripts/demo.sh"), "--set", "training.steps=60", "--set", "training.eval_every=30",
                        "--set", "training.sample_tokens=40"], capture_output=True, text=True, env=env, timeout=900)
    assert r.returncode == 0, r.stderr
    rows = [json.loads(l) for l in (tmp_path / "demo" / "metrics.jsonl").read_text().splitlines()]
    evals = [x["val_loss"] for x in rows if x["kind"] == "eval"]
    uniform = math.log(2048)
    assert len(evals) == 2 and evals[1] < evals[0]
    assert evals[-1] < 0.85 * uniform, (evals, uniform)   # ~5.0 after the full 200 steps
    last = [x for x in rows if x["kind"] == "eval"][-1]
    prose, code = last["source_tokens"]["prose"], last["source_tokens"]["code"]
    sequences = (prose + code) / 256
    assert prose + code == 60 * 4096
    sigma = math.sqrt(sequences * 0.75 * 0.25) / sequences
    assert abs(prose / (prose + code) - 0.75) < 4 * sigma, (prose, code)
    assert "samples" in r.stdout and "summary" in r.stdout
    # `smol sample` on the run speaks its BPE tokenizer (it once decoded BPE ids as bytes).
    import tokenizers  # installed by scripts/install.sh
    tok = tokenizers.Tokenizer.from_file(str(ROOT / "data/shards/tokenizer.json"))
    out = subprocess.run([smol_binary(), "sample", str(tmp_path / "demo"), "--prompt", "The history of",
                          "--max-tokens", "20", "--seed", "1", "--json"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    s = json.loads(out.stdout)
    assert s["prompt_ids"] == tok.encode("The history of").ids
    assert len(s["generated_ids"]) > 0 and max(s["generated_ids"]) > 255     # BPE ids, not bytes
    assert s["text"] == tok.decode(s["generated_ids"], skip_special_tokens=False)
