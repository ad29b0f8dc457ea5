"""Small random models of the architectures people fine-tune from, built in Hugging Face
`transformers` itself (the reference), saved as HF directories, and converted to GGUF with the
`gguf` package the way llama.cpp's converter lays them out (independently of smol)."""
import json
import shutil

import numpy as np

from conftest import ROOT

# model_type -> (transformers config class, model class, extra config keys)
ARCHS = {
    "llama": ("LlamaConfig", "LlamaForCausalLM", {"tie_word_embeddings": False}),
    # llama.cpp runs a smollm3 GGUF with NoPE in every 4th layer (its converter stores no pattern).
    "smollm3": ("SmolLM3Config", "SmolLM3ForCausalLM", {"tie_word_embeddings": True, "no_rope_layer_interval": 4,
                                                        "no_rope_layers": [1, 1, 1, 0]}),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", {"tie_word_embeddings": True}),
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM", {"tie_word_embeddings": False}),
}
SIZE = dict(hidden_size=64, intermediate_size=96, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
            head_dim=16, max_position_embeddings=128, rms_norm_eps=1e-6, rope_theta=10000.0, hidden_act="silu")


def tiny_tokenizer(path):
    """A 320-token byte-level BPE trained by HF `tokenizers` on the bundled prose."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=320, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train([str(ROOT / "data/corpus/prose.txt")], trainer)
    tok.save(str(path))
    return tok


def make_hf_model(arch, out, tokenizer_json, seed=0):
    """A random model of `arch` in transformers, every parameter (norms and biases too) drawn away
    from its default so that a skipped or misplaced term changes the logits."""
    import torch
    import transformers
    cfg_cls, model_cls, extra = ARCHS[arch]
    vocab = json.loads(tokenizer_json.read_text())["model"]["vocab"]
    size = dict(SIZE)
    theta = size.pop("rope_theta")
    cfg = getattr(transformers, cfg_cls)(vocab_size=len(vocab) + 1, pad_token_id=None, bos_token_id=None, eos_token_id=None,
                                         **size, **extra)
    cfg.rope_parameters = {"rope_type": "default", "rope_theta": theta}
    if arch == "qwen2":
        cfg.use_sliding_window = False
    torch.manual_seed(seed)
    model = getattr(transformers, model_cls)(cfg).float().eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1 + 0.2 * torch.randn_like(p))
            elif name.endswith(".bias"):
                p.copy_(0.2 * torch.randn_like(p))
            else:
                p.copy_(0.15 * torch.randn_like(p))
    model.save_pretrained(out, safe_serialization=True)
    shutil.copy(tokenizer_json, out / "tokenizer.json")
    (out / "tokenizer_config.json").write_text(json.dumps({"eos_token": "<|endoftext|>", "tokenizer_class": "PreTrainedTokenizerFast"}))
    return model


def permute(w, n_head):
    """llama.cpp's converter: rows of each head reordered so RoPE rotates adjacent pairs."""
    rows, cols = w.shape
    return w.reshape(n_head, 2, rows // n_head // 2, cols).swapaxes(1, 2).reshape(rows, cols)


GGUF_NAMES = {"input_layernorm.weight": "attn_norm.weight", "post_attention_layernorm.weight": "ffn_norm.weight",
              "self_attn.q_proj.weight": "attn_q.weight", "self_attn.k_proj.weight": "attn_k.weight",
              "self_attn.v_proj.weight": "attn_v.weight", "self_attn.o_proj.weight": "attn_output.weight",
              "self_attn.q_proj.bias": "attn_q.bias", "self_attn.k_proj.bias": "attn_k.bias", "self_attn.v_proj.bias": "attn_v.bias",
              "self_attn.q_norm.weight": "attn_q_norm.weight", "self_attn.k_norm.weight": "attn_k_norm.weight",
              "mlp.gate_proj.weight": "ffn_gate.weight", "mlp.up_proj.weight": "ffn_up.weight", "mlp.down_proj.weight": "ffn_down.weight"}


def to_gguf(arch, model, tokenizer_json, out, dtype="f32"):
    """Writes `model` as llama.cpp's converter would: ARCH.* keys, GGUF tensor names, Q/K rows
    permuted for Llama-style RoPE (llama, smollm3; Qwen keeps HF order), the BPE tokenizer."""
    import gguf
    cfg = model.config
    w = gguf.GGUFWriter(str(out), arch)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_key_length(cfg.head_dim)
    w.add_value_length(cfg.head_dim)
    w.add_rope_dimension_count(cfg.head_dim)
    w.add_rope_freq_base(cfg.rope_parameters["rope_theta"])
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_vocab_size(cfg.vocab_size)
    tj = json.loads(tokenizer_json.read_text())
    vocab = dict(tj["model"]["vocab"])
    for a in tj["added_tokens"]:
        vocab[a["content"]] = a["id"]
    tokens = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    tokens += [f"[PAD{i}]" for i in range(cfg.vocab_size - len(tokens))]
    specials = {a["content"] for a in tj["added_tokens"]}
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt2")
    w.add_token_list(tokens)
    w.add_token_types([3 if t in specials else (4 if t.startswith("[PAD") else 1) for t in tokens])
    w.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in tj["model"]["merges"]])
    w.add_eos_token_id(vocab["<|endoftext|>"])
    permuted = arch in ("llama", "smollm3")
    for name, p in model.state_dict().items():
        if name == "lm_head.weight" and cfg.tie_word_embeddings:
            continue
        t = p.detach().float().numpy()
        if name == "model.embed_tokens.weight":
            gname = "token_embd.weight"
        elif name == "model.norm.weight":
            gname = "output_norm.weight"
        elif name == "lm_head.weight":
            gname = "output.weight"
        else:
            _, _, layer, rest = name.split(".", 3)
            gname = f"blk.{layer}.{GGUF_NAMES[rest]}"
            if permuted and rest == "self_attn.q_proj.weight":
                t = permute(t, cfg.num_attention_heads)
            elif permuted and rest == "self_attn.k_proj.weight":
                t = permute(t, cfg.num_key_value_heads)
        if dtype == "f16" and t.ndim == 2:
            t = t.astype(np.float16)
        w.add_tensor(gname, np.ascontiguousarray(t))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
