"""YaRN context extension (`rope_scaling: {rope_type: yarn, ...}`): the inverse frequencies and
attention factor against a NumPy port of transformers' `_compute_yarn_parameters` and against that
function itself; a small model with YaRN built in transformers gives the same logits in smol past
its original context (prefill and the KV-cache path), read from config.json and from the GGUF smol
exports, which llama.cpp (llama-cpp-python) runs to the same logits."""
import json
import math

import numpy as np
import pytest
import torch

import hf_models

ORIGINAL, FACTOR = 32, 4.0


def yarn_numpy(dim, base, factor, original, beta_fast=32, beta_slow=1, truncate=True, attention_factor=None):
    """transformers' _compute_yarn_parameters, ported to NumPy (float32 where it computes in float32)."""
    def get_mscale(scale, m=1):
        return 1.0 if scale <= 1 else 0.1 * m * math.log(scale) + 1.0
    if attention_factor is None:
        attention_factor = get_mscale(factor)

    def correction_dim(rot):
        return (dim * math.log(original / (rot * 2 * math.pi))) / (2 * math.log(base))
    low, high = correction_dim(beta_fast), correction_dim(beta_slow)
    if truncate:
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001
    pos_freqs = np.float32(base) ** (np.arange(0, dim, 2, dtype=np.float32) / np.float32(dim))
    extrapolation, interpolation = 1.0 / pos_freqs, 1.0 / (factor * pos_freqs)
    ramp = np.clip((np.arange(dim // 2, dtype=np.float32) - low) / (high - low), 0, 1)
    keep = 1 - ramp
    return interpolation * (1 - keep) + extrapolation * keep, attention_factor


@pytest.fixture(scope="module")
def yarn_model(tmp_path_factory):
    import transformers
    d = tmp_path_factory.mktemp("yarn")
    tok = d / "tokenizer.json"
    hf_models.tiny_tokenizer(tok)
    vocab = json.loads(tok.read_text())["model"]["vocab"]
    size = dict(hf_models.SIZE)
    size.pop("rope_theta")
    size["max_position_embeddings"] = int(ORIGINAL * FACTOR)
    cfg = transformers.LlamaConfig(vocab_size=len(vocab), pad_token_id=None, bos_token_id=None, eos_token_id=None,
                                   tie_word_embeddings=False, **size)
    cfg.rope_parameters = {"rope_type": "yarn", "rope_theta": 10000.0, "factor": FACTOR,
                           "original_max_position_embeddings": ORIGINAL, "beta_fast": 32.0, "beta_slow": 1.0}
    torch.manual_seed(7)
    model = transformers.LlamaForCausalLM(cfg).float().eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_((1 + 0.2 * torch.randn_like(p)) if name.endswith("norm.weight") else 0.15 * torch.randn_like(p))
    model.save_pretrained(d / "hf", safe_serialization=True)
    (d / "hf/tokenizer.json").write_text(tok.read_text())
    (d / "hf/tokenizer_config.json").write_text(json.dumps({"eos_token": "<|endoftext|>"}))
    return model, d


def test_frequencies_match_transformers_and_a_numpy_port(smol, yarn_model):
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
    model, d = yarn_model
    ours = json.loads(smol("dev", "rope", d / "hf").stdout)
    theirs, their_factor = ROPE_INIT_FUNCTIONS["yarn"](model.config, "cpu")
    port, port_factor = yarn_numpy(16, 10000.0, FACTOR, ORIGINAL)
    np.testing.assert_allclose(port, theirs.numpy(), rtol=1e-6)
    np.testing.assert_allclose(ours["inv_freq"], port, rtol=2e-6)
    assert ours["attention_factor"] == pytest.approx(their_factor, rel=1e-12) == port_factor
    # The ramp is really in play: some pairs interpolated, some kept, some between.
    base = 1.0 / (10000.0 ** (np.arange(0, 16, 2) / 16))
    ratio = np.array(ours["inv_freq"]) / base
    assert ratio.max() == pytest.approx(1, rel=1e-6) and ratio.min() == pytest.approx(1 / FACTOR, rel=1e-6)
    assert ((ratio < 0.99) & (ratio > 1 / FACTOR + 0.01)).any()
    # Other settings, against the port (and transformers' own function).
    for kw in ({"beta_fast": 16.0, "beta_slow": 2.0}, {"truncate": False}, {"attention_factor": 1.3}):
        cfg = json.loads((d / "hf/config.json").read_text())
        cfg["rope_scaling"] = {"rope_type": "yarn", "factor": 8.0, "original_max_position_embeddings": 16, **kw}
        cfg.pop("rope_parameters", None)
        cfg["rope_theta"] = 500.0
        alt = d / f"alt-{len(kw)}-{list(kw)[0]}"
        alt.mkdir()
        (alt / "config.json").write_text(json.dumps(cfg))
        got = json.loads(smol("dev", "rope", alt).stdout)
        inv, att = yarn_numpy(16, 500.0, 8.0, 16, **kw)
        np.testing.assert_allclose(got["inv_freq"], inv, rtol=2e-6, err_msg=str(kw))
        assert got["attention_factor"] == pytest.approx(att, rel=1e-12)


def test_logits_past_the_original_context_match_transformers(smol, yarn_model):
    model, d = yarn_model
    ids = list(np.random.default_rng(3).integers(0, model.config.vocab_size, size=110))   # 3.4× the original 32
    with torch.no_grad():
        ref = model(input_ids=torch.tensor([ids])).logits[0].double().numpy()
    scale = max(np.abs(ref[-1]).max(), 1.0)
    prefill = json.loads(smol("dev", "logits", d / "hf", "--ids", ",".join(map(str, ids))).stdout)
    assert np.abs(np.array(prefill["logits"]) - ref[-1]).max() / scale <= 1e-4
    decoded = json.loads(smol("dev", "logits", d / "hf", "--ids", ",".join(map(str, ids)), "--decode", "20").stdout)
    assert np.abs(np.array(decoded["logits"]) - ref[-1]).max() / scale <= 1e-4
    # Without YaRN the same weights give other logits there: the test can tell.
    plain = d / "plain"
    plain.mkdir()
    cfg = json.loads((d / "hf/config.json").read_text())
    cfg["rope_parameters"] = {"rope_type": "default", "rope_theta": 10000.0}
    cfg.pop("rope_scaling", None)
    (plain / "config.json").write_text(json.dumps(cfg))
    for f in ("model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        (plain / f).write_bytes((d / "hf" / f).read_bytes())
    other = json.loads(smol("dev", "logits", plain, "--ids", ",".join(map(str, ids))).stdout)
    assert np.abs(np.array(other["logits"]) - ref[-1]).max() / scale > 1e-2


def test_gguf_export_keeps_yarn_and_llama_cpp_agrees(smol, yarn_model, tmp_path):
    from llama_cpp import Llama
    model, d = yarn_model
    smol("export", d / "hf", tmp_path / "yarn.gguf", "--type", "f32")
    meta = json.loads(smol("dev", "gguf", tmp_path / "yarn.gguf").stdout)["metadata"]
    assert meta["llama.rope.scaling.type"] == "yarn" and float(meta["llama.rope.scaling.factor"]) == FACTOR
    assert int(meta["llama.rope.scaling.original_context_length"]) == ORIGINAL
    ids = list(np.random.default_rng(4).integers(0, model.config.vocab_size, size=100))
    with torch.no_grad():
        ref = model(input_ids=torch.tensor([ids])).logits[0].double().numpy()
    scale = max(np.abs(ref[-1]).max(), 1.0)
    ours = json.loads(smol("dev", "logits", tmp_path / "yarn.gguf", "--ids", ",".join(map(str, ids))).stdout)
    assert np.abs(np.array(ours["logits"]) - ref[-1]).max() / scale <= 1e-4
    # float32 KV cache: llama.cpp's default f16 cache alone moves these logits by ~4e-3
    llm = Llama(model_path=str(tmp_path / "yarn.gguf"), n_ctx=128, n_threads=2, logits_all=True, verbose=False, type_k=0, type_v=0)
    llm.eval([int(i) for i in ids])
    theirs = np.array(llm.scores[len(ids) - 1])
    err = np.abs(theirs - ref[-1]).max() / scale
    print(f"llama.cpp vs transformers, YaRN at position 99 of an original 32: {err:.2e}")
    assert err <= 1e-4
