"""Inputs from the hostile test pass that used to crash (a signal or a Swift trap): each must be a
clear error naming the file (or, for a task that asks more than the model holds, a notice and a
clamp), with a normal exit code."""
import json
import shutil

import numpy as np

from conftest import ROOT
from smollm2 import GGUF


def assert_clean(r, code, *needles):
    assert r.returncode == code, (r.returncode, r.stderr)          # never a signal (negative code)
    assert "Fatal error" not in r.stderr and "Stack dump" not in r.stderr, r.stderr
    for n in needles:
        assert n in r.stderr, (n, r.stderr)


def test_tokenizer_ids_outside_any_sane_table_are_refused(smol, tmp_path):
    smol("tokenizer", "train", ROOT / "data/corpus/prose.txt", "--vocab-size", "300", "--special", "<|endoftext|>",
         "--out", tmp_path / "tok.json")
    good = json.loads((tmp_path / "tok.json").read_text())
    (tmp_path / "text.txt").write_text("hello")
    assert smol("tokenizer", "encode", "--tokenizer", tmp_path / "tok.json", "--file", tmp_path / "text.txt").returncode == 0
    cases = {
        "big_vocab_id": lambda t: t["model"]["vocab"].update({"zz": 2**31}),
        "negative_vocab_id": lambda t: t["model"]["vocab"].update({"zz": -5}),
        "huge_added_id": lambda t: t["added_tokens"].append({"id": 2**31 + 7, "content": "<x>", "special": True}),
        "sparse_added_id": lambda t: t["added_tokens"].append({"id": 1 << 30, "content": "<y>", "special": True}),
    }
    for name, mutate in cases.items():
        t = json.loads(json.dumps(good))
        mutate(t)
        p = tmp_path / f"{name}.json"
        p.write_text(json.dumps(t))
        r = smol("tokenizer", "encode", "--tokenizer", p, "--file", tmp_path / "text.txt", check=False)
        assert_clean(r, 1, f"{name}.json", "outside 0..<16777216")


def test_mcf_item_with_more_than_26_choices_names_the_line(smol, tmp_path):
    items = [{"query": "Pick one", "choices": [f"c{i}" for i in range(4)], "gold": 0},
             {"query": "Pick one of many", "choices": [f"c{i}" for i in range(30)], "gold": 3}]
    (tmp_path / "many.jsonl").write_text("".join(json.dumps(i) + "\n" for i in items))
    (tmp_path / "many.yaml").write_text("name: many\nkind: multiple_choice\ndata: many.jsonl\nformulation: mcf\nmetrics: [acc]\n")
    r = smol("eval", GGUF, "--tasks", tmp_path / "many.yaml", "--output", tmp_path / "out", check=False)
    assert_clean(r, 1, "many.jsonl:2", "30 choices", "26")
    assert not (tmp_path / "out" / "results.json").exists()


def test_generative_max_tokens_past_the_context_is_clamped_and_said(smol, tmp_path):
    shutil.copy(ROOT / "tasks/smol_qa_en.jsonl", tmp_path / "qa.jsonl")
    (tmp_path / "qa.yaml").write_text("name: qa\nkind: generative\ndata: qa.jsonl\nstop: [\"\\n\"]\nmax_tokens: 100000\nmetrics: [qem]\n")
    r = smol("eval", GGUF, "--tasks", tmp_path / "qa.yaml", "--output", tmp_path / "out", "--limit", "2", "--context-length", "256",
             check=False)
    assert_clean(r, 0, "qa.yaml", "max_tokens 100000", "256-token context", "at most 255")
    res = json.loads((tmp_path / "out" / "results.json").read_text())
    assert "qem" in res["results"]["qa"]


def test_divergence_stops_cleanly_or_is_skipped_and_never_writes_nan(smol, config, tmp_path):
    import math
    import safetensors_np
    from test_training import losses
    store = tmp_path / "runs.sqlite"
    r = smol("train", config, "--out", tmp_path / "div", "--store", store, "--set", "optimizer.lr=1e3", "--no-samples", check=False)
    assert_clean(r, 1, "the loss is", "stopped before applying it", "lower optimizer.lr")
    rows = [json.loads(l) for l in (tmp_path / "div/metrics.jsonl").read_text().splitlines()]   # every line parses
    assert all(math.isfinite(x["loss"]) for x in rows if x["kind"] == "train")
    for ck in (tmp_path / "div/checkpoints").glob("step_*"):
        assert all(np.isfinite(v).all() for v in safetensors_np.load(ck / "model.safetensors").values())
    assert "failed" in smol("runs", "list", "--store", store).stdout
    # With a stability policy the non-finite steps are skipped and the run ends normally.
    r = smol("train", config, "--out", tmp_path / "skip", "--no-store", "--set", "optimizer.lr=1e3", "--no-samples",
             "--set", "stability.rule=olmo", "--set", "stability.policy=skip", "--set", "stability.min_samples=2")
    events = [json.loads(l) for l in (tmp_path / "skip/metrics.jsonl").read_text().splitlines() if '"event"' in l]
    assert any(e["spike"]["signal"] == "non-finite" and e["action"] == "skipped" for e in events)
    assert all(math.isfinite(l) for _, l in losses(tmp_path / "skip")[0])


def test_a_checkpoint_with_non_finite_weights_is_refused(smol, config, tmp_path):
    import safetensors_np
    out = tmp_path / "run"
    smol("train", config, "--out", out, "--no-store", "--no-samples", "--set", "training.steps=5")
    path = out / "checkpoints/step_00000005/model.safetensors"
    raw = bytearray(path.read_bytes())
    n = int.from_bytes(raw[:8], "little")
    begin = safetensors_np.header(path)["model.norm.weight"]["data_offsets"][0]
    raw[8 + n + begin + 12: 8 + n + begin + 16] = np.array([np.nan], dtype=np.float32).tobytes()   # element 3
    path.write_bytes(bytes(raw))
    r = smol("train", config, "--out", out, "--no-store", "--resume", check=False)
    assert_clean(r, 1, "model.safetensors", "model.norm.weight", "non-finite")


def test_a_run_directory_is_held_by_one_training_and_never_trained_into_afresh(smol, config, tmp_path):
    import subprocess
    import time
    from conftest import smol_binary
    out = tmp_path / "run"
    smol("train", config, "--out", out, "--set", "training.steps=5")
    # A fresh run into a directory holding a run is refused, naming its checkpoints; nothing is touched.
    before = sorted(p.name for p in (out / "checkpoints").iterdir())
    r = smol("train", config, "--out", out, "--set", "training.steps=5", check=False)
    assert r.returncode == 1 and "checkpoints up to step 5" in r.stderr and "--force" in r.stderr
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == before
    # --force starts over: the old run's checkpoints are gone, the new run's are there.
    smol("train", config, "--out", out, "--set", "training.steps=3", "--set", "training.checkpoint_every=3", "--force")
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_00000003"]
    # Two trainings at once into one directory: the second stops, naming the first's pid.
    busy = tmp_path / "busy"
    p = subprocess.Popen([smol_binary(), "train", str(config), "--out", str(busy), "--set", "training.steps=400",
                          "--set", "training.checkpoint_every=0"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        while not (busy / "metrics.jsonl").exists() and time.time() < deadline:
            time.sleep(0.05)
        r = smol("train", config, "--out", busy, "--set", "training.steps=5", "--force", check=False)
        assert r.returncode == 1 and f"pid {p.pid}" in r.stderr and "another training holds this run directory" in r.stderr
    finally:
        p.kill()
        p.wait()
    assert (busy / "metrics.jsonl").exists()   # --force did not clear a directory it could not lock


def test_a_full_disk_while_appending_metrics_stops_cleanly_with_whole_lines(smol, config, tmp_path):
    """The file-size limit (RLIMIT_FSIZE, SIGXFSZ ignored) makes a write fail as a full disk does:
    partway through a line. The run exits 1 naming metrics.jsonl, by no signal; the log holds whole
    lines only; the checkpoint from before is intact and the run resumes from it."""
    import resource
    import signal
    import subprocess
    from conftest import smol_binary
    out = tmp_path / "run"
    smol("train", config, "--out", out, "--no-store", "--set", "training.steps=5", "--set", "training.checkpoint_every=5")
    size = (out / "metrics.jsonl").stat().st_size
    line = max(len(x) for x in (out / "metrics.jsonl").read_bytes().splitlines())

    def limited():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (size + 3 * line + line // 2, resource.RLIM_INFINITY))

    r = subprocess.run([smol_binary(), "train", str(config), "--out", str(out), "--no-store", "--resume",
                        "--set", "training.steps=40", "--set", "training.checkpoint_every=0"],
                       capture_output=True, text=True, preexec_fn=limited, timeout=300)
    assert r.returncode == 1, (r.returncode, r.stderr[-2000:])
    assert "metrics.jsonl" in r.stderr and "cannot append" in r.stderr and "Fatal error" not in r.stderr
    text = (out / "metrics.jsonl").read_bytes()
    assert text.endswith(b"\n") and len(text) > size
    rows = [json.loads(x) for x in text.splitlines()]          # every line whole
    assert max(x["step"] for x in rows if "step" in x) < 40
    # The checkpoint of step 5 was never touched: resuming from it (with room to write) finishes.
    r = smol("train", config, "--out", out, "--no-store", "--resume", "--set", "training.steps=8", "--set", "training.checkpoint_every=0",
             "--allow-config-change")
    assert r.returncode == 0 and "step_00000005" in "".join(p.name for p in (out / "checkpoints").iterdir())


def test_resume_with_a_changed_config_is_refused_unless_allowed(smol, config, tmp_path):
    out = tmp_path / "run"
    smol("train", config, "--out", out, "--set", "training.steps=5")
    # A killed save's leftover is removed at the next start.
    (out / "checkpoints" / ".tmp-step_00000010").mkdir()
    # Running longer, evaluating differently: a resume may change these.
    r = smol("train", config, "--out", out, "--resume", "--set", "training.steps=10", "--set", "training.eval_every=5")
    assert "removed 1 unfinished checkpoint" in r.stdout and not (out / "checkpoints" / ".tmp-step_00000010").exists()
    # The learning rate is part of what the checkpoints describe: refused, the key and both values named.
    r = smol("train", config, "--out", out, "--resume", "--set", "training.steps=12", "--set", "optimizer.lr=0.01", check=False)
    assert r.returncode == 1 and "optimizer.lr: 0.003 -> 0.01" in r.stderr and "--allow-config-change" in r.stderr
    r = smol("train", config, "--out", out, "--resume", "--set", "training.steps=12", "--set", "optimizer.lr=0.01",
             "--allow-config-change")
    assert "warning: resuming with a changed config (optimizer.lr: 0.003 -> 0.01)" in r.stdout


def test_sizes_that_cannot_fit_are_refused_by_key(smol, config, tmp_path):
    for key, value in [("hidden_size", 1000000000), ("num_hidden_layers", 1000000000), ("vocab_size", 2 ** 31),
                       ("max_position_embeddings", 2 ** 31)]:
        r = smol("params", config, "--set", f"model.{key}={value}", check=False)
        assert_clean(r, 1, f"model.{key}", "beyond any model this can hold")
    r = smol("params", config, "--set", "model.hidden_size=65536", "--set", "model.num_hidden_layers=4096",
             "--set", "model.num_attention_heads=512", "--set", "model.num_key_value_heads=512", check=False)
    assert_clean(r, 1, "parameters is beyond what this can hold")
    # Within the limits but beyond this machine: the estimate and what is available, before allocating.
    r = smol("train", config, "--out", tmp_path / "big", "--set", "model.hidden_size=16384", "--set", "model.num_hidden_layers=32",
             "--set", "model.num_attention_heads=128", "--set", "model.num_key_value_heads=128", "--set", "model.intermediate_size=65536",
             check=False)
    assert_clean(r, 1, "needs about", "available")
    # A micro-batch whose activations cannot fit: refused with the estimate, before allocating them.
    r = smol("train", config, "--out", tmp_path / "mb", "--set", "training.micro_batch=1000000", "--set", "training.tokens_per_batch=null",
             check=False)
    assert_clean(r, 1, "training activations for micro_batch 1000000", "needs about")
    r = smol("params", config, "--set", "training.micro_batch=1000000000000", check=False)
    assert_clean(r, 1, "training.micro_batch", "beyond any batch")


def test_gguf_metadata_beyond_any_model_is_a_clear_error(smol, tmp_path):
    import gguf
    for key in ["llama.context_length", "llama.block_count", "llama.embedding_length"]:
        path = tmp_path / f"{key}.gguf"
        w = gguf.GGUFWriter(str(path), "llama")
        meta = {"llama.context_length": 64, "llama.embedding_length": 32, "llama.block_count": 1, "llama.feed_forward_length": 64,
                "llama.attention.head_count": 4, "llama.attention.head_count_kv": 4}
        meta[key] = 2 ** 31
        for k, v in meta.items():
            w.add_uint32(k, v)
        w.add_tensor("token_embd.weight", np.zeros((16, 32), dtype=np.float32))
        w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
        r = smol("generate", path, "--prompt", "hi", check=False)
        assert_clean(r, 1, str(path), "beyond any model this can hold")


def test_yaml_nesting_and_alias_bombs_are_refused_before_parsing(smol, config, tmp_path):
    deep = tmp_path / "deep.yaml"
    deep.write_text("model: " + "[" * 20000 + "]" * 20000 + "\n")
    r = smol("train", deep, "--out", tmp_path / "d", check=False, timeout=60)
    assert_clean(r, 1, str(deep), "nested deeper than")
    laughs = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, 12):
        laughs.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(laughs) + "\n" + config.read_text())
    r = smol("train", bomb, "--out", tmp_path / "b", check=False, timeout=60)
    assert_clean(r, 1, str(bomb), "YAML aliases")
    task = tmp_path / "task.yaml"
    task.write_text("name: t\nversion: 1\nkind: perplexity\ndata: x.jsonl\nextra: " + "{a: " * 500 + "1" + "}" * 500 + "\n")
    r = smol("eval", GGUF, "--tasks", task, check=False, timeout=60)
    assert_clean(r, 1, str(task), "nested deeper than")
    # An ordinary config with a few aliases still loads.
    ok = tmp_path / "ok.yaml"
    ok.write_text(config.read_text().replace("seq_len: 64", "seq_len: &len 64").replace("steps: 24", "steps: 2"))
    smol("params", ok)
