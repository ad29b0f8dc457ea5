"""End-to-end training through the `smol` CLI: determinism, exact resume after a kill, atomic
checkpoints, sampling against the NumPy reference, and clear errors on bad input."""
import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest

import reference_llama as ref
import safetensors_np
from conftest import ROOT, kill_at_checkpoint



def losses(run_dir):
    rows = [json.loads(l) for l in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"]) for r in rows if r["kind"] == "train"], [r for r in rows if r["kind"] == "eval"]


def test_same_seed_gives_identical_losses_and_another_seed_differs(smol, config, tmp_path):
    smol("train", config, "--out", tmp_path / "a")
    smol("train", config, "--out", tmp_path / "b")
    smol("train", config, "--out", tmp_path / "c", "--set", "training.seed=12")
    a, evals = losses(tmp_path / "a")
    assert len(a) == 24 and [s for s, _ in a] == list(range(1, 25))
    assert a == losses(tmp_path / "b")[0]
    assert [l for _, l in a] != [l for _, l in losses(tmp_path / "c")[0]]
    assert [e["step"] for e in evals] == [8, 16, 24]
    assert a[-1][1] < a[0][1] - 1.0


def test_resume_after_sigkill_is_bit_identical(smol, config, tmp_path):
    smol("train", config, "--out", tmp_path / "full")
    out = tmp_path / "killed"
    kill_at_checkpoint(["train", config, "--out", out], out, 10)
    smol("train", config, "--out", out, "--resume")
    assert losses(out)[0] == losses(tmp_path / "full")[0]
    assert losses(out)[1] == losses(tmp_path / "full")[1]


def test_checkpoint_killed_mid_write_leaves_previous_one_usable(smol, config, tmp_path):
    smol("train", config, "--out", tmp_path / "full")
    out = tmp_path / "crash"
    # SIGKILL after 20 kB of the step-15 checkpoint have been written.
    r = smol("train", config, "--out", out, check=False,
             env={"SMOL_FAULT_KILL_AFTER_BYTES": "20000", "SMOL_FAULT_PATH_CONTAINS": ".tmp-step_00000015"})
    assert r.returncode == -signal.SIGKILL
    names = sorted(os.listdir(out / "checkpoints"))
    assert names == [".tmp-step_00000015", "step_00000005", "step_00000010"], names
    r = smol("train", config, "--out", out, "--resume")
    assert "resumed from step 10" in r.stdout
    assert losses(out)[0] == losses(tmp_path / "full")[0]
    assert sorted(os.listdir(out / "checkpoints")) == ["step_00000020", "step_00000024"]


def test_progress_lines_and_metrics_fields(smol, config, tmp_path):
    r = smol("train", config, "--out", tmp_path / "p", "--set", "training.steps=4")
    lines = [l for l in r.stdout.splitlines() if l.startswith("step ") and "|" in l]
    assert len(lines) == 4
    for field in ("loss", "gnorm", "lr", "tok/s", "MFU", "ETA"):
        assert field in lines[0]
    row = json.loads((tmp_path / "p" / "metrics.jsonl").read_text().splitlines()[0])
    assert set(row) >= {"step", "tokens", "loss", "grad_norm", "lr", "tokens_per_s", "mfu", "eta_s"}
    # tokens_per_s · model FLOPs per token / peak = mfu (the config gives peak 100 GFLOP/s)
    flops = json.loads(smol("params", config, "--json").stdout)["flops_per_token"]
    assert row["mfu"] == pytest.approx(row["tokens_per_s"] * flops / 100e9, rel=1e-6)
    assert "summary" in r.stdout and "parameters" in r.stdout


def test_greedy_sample_matches_numpy_reference(smol, config, tmp_path):
    smol("train", config, "--out", tmp_path / "s", "--set", "training.steps=10")
    ck = tmp_path / "s" / "checkpoints" / "step_00000010"
    out = json.loads(smol("sample", ck, "--prompt", "def f(x):", "--max-tokens", "12", "--temperature", "0", "--json").stdout)
    cfg = json.loads((ck / "config.json").read_text())
    model = ref.Reference(cfg, safetensors_np.load(ck / "model.safetensors"))
    ids = list(out["prompt_ids"])
    assert ids == list("def f(x):".encode())
    for _ in range(12):
        logits = model.forward_backward(np.array(ids), np.zeros(len(ids), dtype=int), 1, len(ids), grad=False)[0]
        nxt = int(np.argmax(logits[-1]))
        if nxt == 256:
            break
        ids.append(nxt)
    assert out["generated_ids"] == ids[len(out["prompt_ids"]):]
    # seeded sampling is reproducible
    s1 = smol("sample", ck, "--prompt", "The ", "--seed", "3", "--json").stdout
    assert s1 == smol("sample", ck, "--prompt", "The ", "--seed", "3", "--json").stdout


def test_exported_config_is_huggingface_llama(smol, config, tmp_path):
    smol("train", config, "--out", tmp_path / "h", "--set", "training.steps=5")
    ck = tmp_path / "h" / "checkpoints" / "step_00000005"
    cfg = json.loads((ck / "config.json").read_text())
    # The small config has NoPE layers: transformers runs that as SmolLM3 (a LlamaForCausalLM would
    # apply RoPE in every layer and compute another function).
    assert cfg["architectures"] == ["SmolLM3ForCausalLM"] and cfg["model_type"] == "smollm3"
    assert cfg["no_rope_layers"] == [1, 0]
    smol("train", config, "--out", tmp_path / "r", "--set", "training.steps=2", "--set", "model.no_rope_layer_interval=null")
    cfg = json.loads((tmp_path / "r" / "checkpoints" / "step_00000002" / "config.json").read_text())
    assert cfg["architectures"] == ["LlamaForCausalLM"] and cfg["model_type"] == "llama"
    header = safetensors_np.header(ck / "model.safetensors")
    assert header["model.embed_tokens.weight"]["shape"] == [264, 64]
    assert header["model.layers.1.self_attn.k_proj.weight"]["shape"] == [32, 64]
    assert "lm_head.weight" not in header  # tied
    opt = safetensors_np.header(ck / "optimizer.safetensors")
    assert "exp_avg.model.norm.weight" in opt and "exp_avg_sq.model.norm.weight" in opt


# ---------------------------------------------------------------- bad input


def assert_clean_failure(r, *needles):
    assert r.returncode == 1, (r.returncode, r.stderr)          # not a signal, not a trap
    assert "Fatal error" not in r.stderr and "Stack dump" not in r.stderr
    for n in needles:
        assert n in r.stderr, (n, r.stderr)


def test_bad_configs_name_file_and_key(smol, config, tmp_path):
    assert_clean_failure(smol("train", tmp_path / "nope.yaml", check=False), "nope.yaml")
    text = config.read_text()
    cases = {
        "unknown.yaml": (text.replace("optimizer: {", "optimizer: {learning_rate: 1, "), ["unknown.yaml", "optimizer.learning_rate"]),
        "missing.yaml": (text.replace("  hidden_size: 64\n", ""), ["missing.yaml", "hidden_size"]),
        "neglr.yaml": (text.replace("lr: 3.0e-3", "lr: -1"), ["optimizer.lr"]),
        "heads.yaml": (text.replace("num_attention_heads: 4", "num_attention_heads: 5"), ["num_attention_heads"]),
        "kv.yaml": (text.replace("num_key_value_heads: 2", "num_key_value_heads: 3"), ["num_key_value_heads"]),
        "syntax.yaml": (text + "\n  : : [\n", ["syntax.yaml", "YAML"]),
    }
    for name, (body, needles) in cases.items():
        p = tmp_path / name
        p.write_text(body)
        assert_clean_failure(smol("train", p, "--out", tmp_path / "x", check=False), *needles)


def test_missing_or_truncated_shard(smol, config, shards, tmp_path):
    body = config.read_text().replace(str(shards / "code.bin"), str(tmp_path / "gone.bin"))
    (tmp_path / "m.yaml").write_text(body)
    assert_clean_failure(smol("train", tmp_path / "m.yaml", check=False), "gone.bin")
    data = (shards / "code.bin").read_bytes()
    (tmp_path / "cut.bin").write_bytes(data[: len(data) // 2])
    (tmp_path / "t.yaml").write_text(config.read_text().replace(str(shards / "code.bin"), str(tmp_path / "cut.bin")))
    assert_clean_failure(smol("train", tmp_path / "t.yaml", check=False), "cut.bin", "truncated")


def test_bad_checkpoint_files_fail_cleanly_and_keep_earlier_work(smol, config, tmp_path):
    out = tmp_path / "run"
    smol("train", config, "--out", out, "--set", "training.steps=5")
    ck = out / "checkpoints" / "step_00000005"
    good = (ck / "model.safetensors").read_bytes()
    metrics = (out / "metrics.jsonl").read_text()
    (ck / "model.safetensors").write_bytes(good[: len(good) - 100])
    assert_clean_failure(smol("sample", ck, "--prompt", "x", check=False), "model.safetensors")
    assert_clean_failure(smol("train", config, "--out", out, "--resume", check=False), "model.safetensors")
    (ck / "model.safetensors").write_bytes(b"GIF89a" + b"\0" * 64)
    assert_clean_failure(smol("sample", ck, "--prompt", "x", check=False), "model.safetensors", "header length")
    # the failed resume wrote nothing over the run's files
    assert (out / "metrics.jsonl").read_text() == metrics
    (ck / "model.safetensors").write_bytes(good)
    smol("sample", ck, "--prompt", "x", "--max-tokens", "3")


def test_resume_without_checkpoint_and_bad_sample_args(smol, config, tmp_path):
    assert_clean_failure(smol("train", config, "--out", tmp_path / "empty", "--resume", check=False), "no checkpoint")
    assert_clean_failure(smol("sample", tmp_path / "nowhere", "--prompt", "x", check=False), "nowhere", "no such file")
    (tmp_path / "empty").mkdir(exist_ok=True)
    assert_clean_failure(smol("sample", tmp_path / "empty", "--prompt", "x", check=False), "config.json")


def test_gradient_accumulation_matches_one_large_batch(smol, config, tmp_path):
    """2 micro-batches of 4 accumulated = 1 micro-batch of 8 over the same windows (same loader order)."""
    smol("train", config, "--out", tmp_path / "acc", "--set", "training.steps=6", "--set", "training.micro_batch=4",
         "--set", "training.tokens_per_batch=512")
    smol("train", config, "--out", tmp_path / "big", "--set", "training.steps=6", "--set", "training.micro_batch=8",
         "--set", "training.tokens_per_batch=512")
    acc = [l for _, l in losses(tmp_path / "acc")[0]]
    big = [l for _, l in losses(tmp_path / "big")[0]]
    # the summation order differs, so the bits may too; the values must agree closely
    assert np.allclose(acc, big, rtol=2e-4), (acc, big)


def test_token_budget_sets_the_number_of_steps(smol, config, tmp_path):
    both = smol("train", config, "--out", tmp_path / "tb", "--set", "training.token_budget=2000", check=False)
    assert_clean_failure(both, "token_budget", "not both")
    r = smol("train", config, "--out", tmp_path / "tb", "--set", "training.steps=null", "--set", "training.token_budget=2000", "--json")
    steps = [json.loads(l) for l in r.stdout.splitlines() if l.startswith("{") and '"kind":"train"' in l]
    assert len(steps) == 4                       # ceil(2000 / 512)
    summary = json.loads(r.stdout.splitlines()[-1])["summary"]
    assert summary["tokens"] == 4 * 512 and summary["steps"] == 4


def test_eval_tasks_run_at_eval_points_and_match_smol_eval(smol, config, tmp_path):
    """training.eval_tasks scores the live model at eval points; the numbers are those `smol eval`
    gets from the checkpoint saved at the same step."""
    text = config.read_text().replace("  steps: 24\n", "  steps: 10\n").replace("  checkpoint_every: 5\n", "  checkpoint_every: 10\n")
    text = text.replace("  eval_every: 8\n", "  eval_every: 5\n  eval_tasks: [TASK]\n  eval_tasks_limit: 6\n".replace(
        "TASK", str(ROOT / "tasks/smol_facts_en.yaml")))
    config.write_text(text)
    smol("train", config, "--out", tmp_path / "run")
    _, evals = losses(tmp_path / "run")
    assert [e["step"] for e in evals] == [5, 10]
    for e in evals:
        assert set(e["tasks"]) >= {"smol_facts_en/acc", "smol_facts_en/acc_norm", "smol_facts_en/acc_norm_stderr"}
    smol("eval", tmp_path / "run", "--tasks", ROOT / "tasks/smol_facts_en.yaml", "--limit", "6", "--output", tmp_path / "ev")
    res = json.loads((tmp_path / "ev/results.json").read_text())["results"]["smol_facts_en"]
    for k, v in res.items():
        assert evals[-1]["tasks"]["smol_facts_en/" + k] == v, k
    bad = config.read_text().replace("  eval_tasks_limit: 6\n", "  eval_tasks_limit: 6\n  eval_tasks_every: 7\n")
    config.write_text(bad)
    r = smol("train", config, "--out", tmp_path / "bad", check=False)
    assert r.returncode == 1 and "eval_tasks_every" in r.stderr
