"""The README's main job, shortened: scripts/demo.sh on the bundled corpus must learn — its held-out
loss must fall well below ln(vocab), the loss of a uniform guess."""
import json
import math
import os
import subprocess

from conftest import ROOT


def test_demo_learns_well_below_uniform(tmp_path):
    env = dict(os.environ, SMOL_DEMO_OUT=str(tmp_path / "demo"))
    r = subprocess.run(["bash", str(ROOT / "scripts/demo.sh"), "--set", "training.steps=60", "--set", "training.eval_every=30",
                        "--set", "training.sample_tokens=40"], capture_output=True, text=True, env=env, timeout=900)
    assert r.returncode == 0, r.stderr
    rows = [json.loads(l) for l in (tmp_path / "demo" / "metrics.jsonl").read_text().splitlines()]
    evals = [x["val_loss"] for x in rows if x["kind"] == "eval"]
    uniform = math.log(264)
    assert len(evals) == 2 and evals[1] < evals[0]
    assert evals[-1] < 0.6 * uniform, (evals, uniform)   # ~3.0 after 60 steps; ~2.3 after the full 200
    assert "samples" in r.stdout and "summary" in r.stdout
