"""Every architecture smol reads (Llama/SmolLM2, SmolLM3, Qwen2, Qwen3), checked against
`transformers` itself: a small random model built and run in transformers, saved as a Hugging
Face directory and converted to GGUF with the `gguf` package, then loaded by smol. Logits (full
prefill and the single-token KV-cache path), the first step's loss and every gradient (against
torch autograd), and the losses of several AdamW steps (against torch.optim.AdamW)."""
import fnmatch
import json

import numpy as np
import pytest

import hf_models
import safetensors_np

import torch  # installed by scripts/install.sh

B, T = 2, 24
OPT = {"lr": 0.0, "beta1": 0.9, "beta2": 0.95, "eps": 1e-8, "weight_decay": 0.1,
       "no_decay": ["*embed_tokens*", "*norm*", "*.bias"], "grad_clip": 1.0}
LRS = [2e-3, 2e-3, 1e-3, 1e-3, 5e-4]


@pytest.fixture(scope="module")
def tokenizer_json(tmp_path_factory):
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    hf_models.tiny_tokenizer(path)
    return path


@pytest.fixture(scope="module", params=list(hf_models.ARCHS))
def model(request, tokenizer_json, tmp_path_factory):
    arch = request.param
    d = tmp_path_factory.mktemp(arch)
    hf = hf_models.make_hf_model(arch, d / "hf", tokenizer_json, seed=3)
    hf_models.to_gguf(arch, hf, tokenizer_json, d / "model.gguf")
    return arch, hf, d


def batch(vocab, seed=1):
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, vocab, size=B * T)
    targets = np.roll(tokens, -1)
    targets[3] = -1                 # targets that carry no loss (as an SFT mask leaves them)
    targets[T + 5: T + 11] = -1
    return tokens, targets


def max_rel(a, b):
    return float(np.abs(np.asarray(a, np.float64) - b).max() / max(np.abs(b).max(), 1.0))


def torch_steps(hf, tokens, targets, lrs):
    """Loss of each step, and the first step's gradients, with PyTorch AdamW and clipping."""
    import copy
    m = copy.deepcopy(hf).double().train()
    x = torch.tensor(tokens).reshape(B, T)
    y = torch.tensor(targets).reshape(B, T)
    decay = [p for n, p in m.named_parameters() if not any(fnmatch.fnmatchcase(n, pat) for pat in OPT["no_decay"])]
    keep = [p for n, p in m.named_parameters() if any(fnmatch.fnmatchcase(n, pat) for pat in OPT["no_decay"])]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": OPT["weight_decay"]}, {"params": keep, "weight_decay": 0.0}],
                            lr=lrs[0], betas=(OPT["beta1"], OPT["beta2"]), eps=OPT["eps"])
    losses, grads = [], None
    for i, lr in enumerate(lrs):
        for g in opt.param_groups:
            g["lr"] = lr
        opt.zero_grad()
        logits = m(input_ids=x).logits.reshape(B * T, -1)
        loss = torch.nn.functional.cross_entropy(logits, y.reshape(-1), ignore_index=-1)
        loss.backward()
        losses.append(loss.item())
        if i == 0:
            grads = {n: p.grad.detach().numpy().copy() for n, p in m.named_parameters()}
        torch.nn.utils.clip_grad_norm_(m.parameters(), OPT["grad_clip"])
        opt.step()
    return losses, grads


def smol_steps(smol, source, tmp, tokens, targets, lrs, micro_batches=1):
    tmp.mkdir(parents=True, exist_ok=True)
    spec = {"init_from": str(source), "seed": 0, "batch": B, "seq_len": T, "micro_batches": micro_batches,
            "tokens": tokens.tolist(), "targets": targets.tolist(), "optimizer": OPT, "lrs": lrs}
    (tmp / "spec.json").write_text(json.dumps(spec))
    smol("dev", "parity", "--spec", tmp / "spec.json", "--out", tmp / "out")
    return (json.loads((tmp / "out/result.json").read_text()), safetensors_np.load(tmp / "out/grads.safetensors"),
            safetensors_np.load(tmp / "out/logits.safetensors")["logits"])


@pytest.mark.parametrize("source", ["hf", "model.gguf"])
def test_logits_match_transformers(smol, model, source):
    arch, hf, d = model
    ids = list(np.random.default_rng(5).integers(0, hf.config.vocab_size, size=20))
    with torch.no_grad():
        ref = hf(input_ids=torch.tensor([ids])).logits[0].double().numpy()
    prefill = json.loads(smol("dev", "logits", d / source, "--ids", ",".join(map(str, ids))).stdout)
    assert max_rel(prefill["logits"], ref[-1]) <= 1e-4, arch
    decoded = json.loads(smol("dev", "logits", d / source, "--ids", ",".join(map(str, ids)), "--decode", "6").stdout)
    assert max_rel(decoded["logits"], ref[-1]) <= 1e-4, arch
    # The training forward (every position) agrees too.
    tokens, targets = batch(hf.config.vocab_size)
    with torch.no_grad():
        full = hf(input_ids=torch.tensor(tokens).reshape(B, T)).logits.reshape(B * T, -1).double().numpy()
    _, _, logits = smol_steps(smol, d / source, d / f"fwd-{source}", tokens, targets, [0.0])
    assert max_rel(logits, full) <= 1e-4, arch


def test_fine_tuning_steps_match_torch(smol, model):
    arch, hf, d = model
    tokens, targets = batch(hf.config.vocab_size)
    ref_losses, ref_grads = torch_steps(hf, tokens, targets, LRS)
    # Two accumulated micro-batches with unequal counted targets: the loss is still the mean over counted tokens.
    result, grads, _ = smol_steps(smol, d / "hf", d / "steps", tokens, targets, LRS, micro_batches=2)
    names = set(ref_grads) - ({"lm_head.weight"} if hf.config.tie_word_embeddings else set())
    assert names == set(grads), arch
    for name in names:
        g = ref_grads[name]
        err = np.linalg.norm(grads[name] - g) / max(np.linalg.norm(g), 1e-12)
        assert err <= 1e-4, (arch, name, err)
    np.testing.assert_allclose(result["losses"], ref_losses, rtol=1e-4)
    assert result["losses"][-1] < result["losses"][0]


def test_fine_tune_from_the_hf_directory_then_from_the_run(smol, model, tmp_path):
    """smol train with model.init_from an HF directory; the checkpoint is itself an HF directory of
    the same architecture that transformers loads and computes alike; a second run starts from it."""
    import transformers
    arch, hf, d = model
    smol("data", "prepare", hf_models.ROOT / "data/corpus/prose.txt", "--tokenizer", d / "hf", "--out", tmp_path / "prose.bin")
    cfg = tmp_path / "ft.yaml"
    cfg.write_text(f"model: {{init_from: {d / 'hf'}}}\n"
                   "optimizer: {lr: 1.0e-3}\ndata: {train: [prose.bin]}\n"
                   "training: {steps: 4, seq_len: 32, micro_batch: 2, eval_every: 2, checkpoint_every: 4, sample_tokens: 0, peak_gflops: 10}\n")
    smol("train", cfg, "--out", tmp_path / "run", "--no-store")
    ck = tmp_path / "run" / "checkpoints" / "step_00000004"
    assert json.loads((ck / "config.json").read_text())["model_type"] == arch
    tuned = transformers.AutoModelForCausalLM.from_pretrained(str(ck), dtype=torch.float32).eval()
    assert type(tuned).__name__ == hf_models.ARCHS[arch][1]
    ids = list(np.random.default_rng(9).integers(0, hf.config.vocab_size, size=16))
    with torch.no_grad():
        ref = tuned(input_ids=torch.tensor([ids])).logits[0, -1].double().numpy()
        before = hf(input_ids=torch.tensor([ids])).logits[0, -1].double().numpy()
    ours = json.loads(smol("dev", "logits", tmp_path / "run", "--ids", ",".join(map(str, ids))).stdout)["logits"]
    assert max_rel(ours, ref) <= 1e-4 and max_rel(before, ref) > 1e-3    # trained, and read back alike
    assert (ck / "tokenizer.json").exists()
    cfg.write_text(cfg.read_text().replace(str(d / "hf"), str(tmp_path / "run")))
    r = smol("train", cfg, "--out", tmp_path / "run2", "--no-store", "--json")
    first = [json.loads(l) for l in r.stdout.splitlines() if l.startswith("{") and '"kind":"train"' in l][0]
    assert np.isfinite(first["loss"])
    smol("generate", tmp_path / "run2", "--prompt", "The", "--greedy", "--max-tokens", "4")
