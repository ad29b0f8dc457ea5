"""Parity of SmolTrain's model with an independent NumPy (float64) reference: logits, loss, every
parameter gradient, and the losses of 10 AdamW steps. The reference's own backward is checked
against central finite differences first, so the comparison rests on something independent."""
import json

import numpy as np
import pytest

import reference_llama as ref
import safetensors_np

CFG = {
    "vocab_size": 97, "hidden_size": 48, "num_hidden_layers": 4, "num_attention_heads": 6,
    "num_key_value_heads": 2, "intermediate_size": 80, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
    "tie_word_embeddings": True, "max_position_embeddings": 64, "no_rope_layer_interval": 2,
    "intra_document_masking": True, "initializer_range": 0.1,
}
B, T = 2, 40
OPT = {"lr": 0.0, "beta1": 0.9, "beta2": 0.95, "eps": 1e-8, "weight_decay": 0.1,
       "no_decay": ["*embed_tokens*", "*norm*"], "grad_clip": 1.0}
LRS = [1e-3 * min(1, (i + 1) / 3) for i in range(10)]


def make_batch(seed=0):
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, CFG["vocab_size"], size=B * T)
    targets = rng.integers(0, CFG["vocab_size"], size=B * T)
    targets[5] = -1  # an ignored target
    targets[T + 3: T + 25] = -1  # a masked span (an SFT prompt): row 1 counts far fewer targets than row 0
    # documents: row 0 splits at 13 and 29, row 1 at 7 (row-local start of each token's document)
    starts = []
    for row, cuts in enumerate([[0, 13, 29], [0, 7]]):
        for t in range(T):
            starts.append(max(c for c in cuts if c <= t))
    return tokens, targets, np.array(starts)


def rel(a, b):
    return np.linalg.norm(np.asarray(a, np.float64) - b) / max(np.linalg.norm(b), 1e-30)


# OpenBLAS's kernels as this environment configures them, and OpenBLAS's own pick for the CPU
# (OPENBLAS_CORETYPE removed): on an AVX-512 machine pinned to AVX2 these are different GEMM code.
@pytest.fixture(scope="module", params=["configured", "openblas-own-pick"])
def swift_run(smol, tmp_path_factory, request):
    unset = ("OPENBLAS_CORETYPE",) if request.param == "openblas-own-pick" else ()
    d = tmp_path_factory.mktemp("parity")
    tokens, targets, starts = make_batch()
    spec = {"model": CFG, "seed": 7, "batch": B, "seq_len": T, "tokens": tokens.tolist(), "targets": targets.tolist(),
            "document_start": starts.tolist(), "optimizer": OPT, "lrs": LRS,
            # One row per micro-batch: the step's loss is the mean over the counted targets of both
            # together, as the reference computes it over the whole batch (not a mean of row means).
            "micro_batches": 2}
    (d / "spec.json").write_text(json.dumps(spec))
    smol("dev", "parity", "--spec", d / "spec.json", "--out", d / "out", unset=unset)
    out = d / "out"
    return {
        "params": safetensors_np.load(out / "params.safetensors"),
        "grads": safetensors_np.load(out / "grads.safetensors"),
        "logits": safetensors_np.load(out / "logits.safetensors")["logits"],
        "result": json.loads((out / "result.json").read_text()),
        "batch": (tokens, targets, starts),
    }


def test_reference_backward_matches_finite_differences(swift_run):
    """The NumPy reference's hand-written gradient agrees with central differences (float64)."""
    params = swift_run["params"]
    tokens, targets, starts = swift_run["batch"]
    model = ref.Reference(CFG, params)
    _, _, grads = model.forward_backward(tokens, targets, B, T, starts)
    rng = np.random.default_rng(1)
    names = ["model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight", "model.layers.1.self_attn.k_proj.weight",
             "model.layers.2.self_attn.v_proj.weight", "model.layers.3.mlp.down_proj.weight", "model.layers.0.input_layernorm.weight",
             "model.layers.1.post_attention_layernorm.weight", "model.norm.weight", "model.layers.3.self_attn.o_proj.weight",
             "model.layers.2.mlp.gate_proj.weight", "model.layers.1.mlp.up_proj.weight"]
    h = 1e-5
    for name in names:
        for _ in range(3):
            idx = tuple(rng.integers(0, s) for s in model.p[name].shape)
            old = model.p[name][idx]
            model.p[name][idx] = old + h
            lp = model.forward_backward(tokens, targets, B, T, starts, grad=False)[1]
            model.p[name][idx] = old - h
            lm = model.forward_backward(tokens, targets, B, T, starts, grad=False)[1]
            model.p[name][idx] = old
            fd = (lp - lm) / (2 * h)
            assert abs(fd - grads[name][idx]) <= 1e-7 + 1e-5 * abs(fd), (name, idx, fd, grads[name][idx])


def test_logits_loss_and_gradients_match_reference(swift_run):
    tokens, targets, starts = swift_run["batch"]
    model = ref.Reference(CFG, swift_run["params"])
    logits, loss, grads = model.forward_backward(tokens, targets, B, T, starts)
    assert rel(swift_run["logits"], logits) <= 1e-4
    assert abs(swift_run["result"]["losses"][0] - loss) / loss <= 1e-4
    assert set(swift_run["grads"]) == set(grads)
    for name, g in grads.items():
        assert rel(swift_run["grads"][name], g) <= 1e-4, (name, rel(swift_run["grads"][name], g))


def test_ten_adamw_steps_match_reference(swift_run):
    tokens, targets, starts = swift_run["batch"]
    model = ref.Reference(CFG, swift_run["params"])
    state, losses, norms = {}, [], []
    for step, lr in enumerate(LRS, start=1):
        _, loss, grads = model.forward_backward(tokens, targets, B, T, starts)
        losses.append(loss)
        norms.append(ref.adamw_step(model.p, grads, state, lr, OPT, step))
    ours = np.array(swift_run["result"]["losses"])
    assert losses[-1] < losses[0] - 0.01, "the reference itself should learn"
    np.testing.assert_allclose(ours, losses, rtol=1e-4)
    np.testing.assert_allclose(swift_run["result"]["grad_norms"], norms, rtol=1e-3)


def test_document_masking_changes_the_function(swift_run):
    """Guard against a mask that is silently ignored: without it the reference logits differ."""
    tokens, targets, starts = swift_run["batch"]
    masked = ref.Reference(CFG, swift_run["params"]).forward_backward(tokens, targets, B, T, starts, grad=False)[0]
    plain = ref.Reference({**CFG, "intra_document_masking": False}, swift_run["params"]).forward_backward(
        tokens, targets, B, T, starts, grad=False)[0]
    assert rel(plain, masked) > 1e-3
    assert rel(swift_run["logits"], masked) < rel(swift_run["logits"], plain)
