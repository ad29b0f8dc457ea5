"""Long-context stages (training.context_stages): seq_len and RoPE θ change at a token count, the
data is cut again at the new length, checkpoints carry the θ in force, and a run stopped before,
at or after the switch resumes to the same losses and the same final weights bit for bit."""
import json

import pytest

from conftest import SMALL


def staged(shards, tmp_path, stages="[{start_tokens: 4096, seq_len: 128, rope_theta: 100000}]", name="staged.yaml"):
    text = (SMALL.replace("SHARDS", str(shards))
            .replace("max_position_embeddings: 64", "max_position_embeddings: 128")
            .replace("schedule: {type: wsd, warmup_steps: 3, decay_fraction: 0.25}", "schedule: {type: constant, warmup_steps: 2}")
            .replace("  seq_len: 64\n  micro_batch: 4\n", "  seq_len: 32\n  micro_batch: 8\n")
            .replace("  steps: 24\n", "  steps: 16\n")
            .replace("  checkpoint_every: 5\n  keep_checkpoints: 2\n", "  checkpoint_every: 4\n  keep_checkpoints: 5\n"))
    if stages:
        text += f"  context_stages: {stages}\n"
    p = tmp_path / name
    p.write_text(text)
    return p


def rows(run):
    return [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]


def train_losses(run):
    return [(r["step"], r["loss"]) for r in rows(run) if r["kind"] == "train"]


@pytest.fixture(scope="module")
def full(smol, shards, tmp_path_factory):
    d = tmp_path_factory.mktemp("stages")
    cfg = staged(shards, d)
    r = smol("train", cfg, "--out", d / "full", "--no-store")
    return d, cfg, r.stdout


def test_the_stage_switches_shape_and_theta_at_its_token_count(smol, shards, full):
    d, cfg, out = full
    # 512 tokens per step: step 9 starts at 4096 tokens, with 128-token rows, 2 per micro-batch, 2 micro-batches.
    assert "context stage 1 from step 9 (4.1K tokens): seq_len 128, rope_theta 100000, micro_batch 2" in out
    steps = train_losses(d / "full")
    assert [s for s, _ in steps] == list(range(1, 17))
    assert all(r["tokens"] == 512 * r["step"] for r in rows(d / "full") if r["kind"] == "train")
    ck = d / "full" / "checkpoints"
    assert json.loads((ck / "step_00000008" / "config.json").read_text())["rope_theta"] == 10000
    assert json.loads((ck / "step_00000016" / "config.json").read_text())["rope_theta"] == 100000
    # The same run without stages agrees up to the switch; with the stage but θ unchanged, the
    # shape alone changes step 9 on; with θ raised too, step 9 differs again: θ reaches the model.
    smol("train", staged(shards, d, stages=None, name="plain.yaml"), "--out", d / "plain", "--no-store")
    smol("train", staged(shards, d, stages="[{start_tokens: 4096, seq_len: 128}]", name="same_theta.yaml"), "--out", d / "same", "--no-store")
    plain, same = train_losses(d / "plain"), train_losses(d / "same")
    assert plain[:8] == steps[:8] and same[:8] == steps[:8]
    assert plain[8] != same[8] and same[8] != steps[8]


@pytest.mark.parametrize("stop", [4, 8, 12])
def test_a_run_stopped_before_at_or_after_the_switch_resumes_bit_identical(smol, full, stop):
    d, cfg, _ = full
    out = d / f"stopped-{stop}"
    smol("train", cfg, "--out", out, "--no-store", "--set", f"training.steps={stop}")
    r = smol("train", cfg, "--out", out, "--no-store", "--resume")
    assert f"resumed from step {stop}" in r.stdout
    assert train_losses(out) == train_losses(d / "full")
    # (the stopped run also evaluated at its last step, `stop`)
    assert [e for e in rows(out) if e["kind"] == "eval" and e["step"] != stop] == [e for e in rows(d / "full") if e["kind"] == "eval" and e["step"] != stop]
    final = "checkpoints/step_00000016/model.safetensors"
    assert (out / final).read_bytes() == (d / "full" / final).read_bytes()


@pytest.mark.parametrize("stages, key", [
    ("[{start_tokens: 4096, seq_len: 256}]", "training.context_stages[0].seq_len"),
    ("[{start_tokens: 4096, seq_len: 128}, {start_tokens: 2048, seq_len: 128}]", "training.context_stages[1].start_tokens"),
    ("[{start_tokens: 4096, seq_len: 96}]", "training.context_stages[0].micro_batch"),
    ("[{start_tokens: 4096, seq_len: 128, rope_theta: -1}]", "training.context_stages[0].rope_theta"),
    ("[{start_tokens: 4096, seq_len: 128, theta: 5}]", "theta"),
])
def test_bad_stages_name_the_key(smol, shards, tmp_path, stages, key):
    r = smol("train", staged(shards, tmp_path, stages=stages), "--out", tmp_path / "run", check=False)
    assert r.returncode == 1 and key in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "run").exists()
