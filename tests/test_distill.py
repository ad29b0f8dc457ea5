"""Knowledge distillation (`training.distill`): the mixed loss (1 − α)·CE + α·T²·KL(teacher ‖ student)
and every parameter gradient against the NumPy float64 model, whose head-loss gradient is itself
checked by central differences; the whole and top-k teacher; the teacher cache; the tokenizer check."""
import json

import numpy as np
import pytest

import reference_llama as ref
import safetensors_np
from test_parity import CFG, B, T, OPT, make_batch, rel


def log_softmax(x):
    m = x.max(-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))


def teacher_distribution(teacher_logits, temperature, top_k):
    if top_k is None:
        return np.exp(log_softmax(teacher_logits / temperature))
    p = np.zeros_like(teacher_logits)
    idx = np.argsort(-teacher_logits, axis=-1, kind="stable")[:, :top_k]
    rows = np.arange(len(p))[:, None]
    p[rows, idx] = np.exp(log_softmax(teacher_logits[rows, idx] / temperature))
    return p


def row_losses(z, p, targets, alpha, temperature):
    """Each row's (1 − α)·CE + α·T²·Σ p (log p − log q), q = softmax(z / T)."""
    valid = targets >= 0
    ce = -log_softmax(z)[np.arange(len(z)), np.where(valid, targets, 0)]
    logp = np.log(np.where(p > 0, p, 1))
    kl = (p * (logp - log_softmax(z / temperature))).sum(-1)
    return ((1 - alpha) * ce + alpha * temperature ** 2 * kl) * valid


def head_loss(teacher_logits, targets, alpha, temperature, top_k):
    """The loss over counted targets and its gradient by the closed form, (1 − α)(softmax(z) − onehot)
    + α T (q − p), per counted row / count."""
    p = teacher_distribution(teacher_logits, temperature, top_k)
    valid = targets >= 0
    count = valid.sum()

    def f(z):
        g = np.exp(log_softmax(z)) * (1 - alpha)
        g[np.arange(len(z)), np.where(valid, targets, 0)] -= (1 - alpha)
        g += alpha * temperature * (np.exp(log_softmax(z / temperature)) - p)
        return row_losses(z, p, targets, alpha, temperature).sum() / count, g * valid[:, None] / count
    return f, p


CASES = {"whole": dict(alpha=0.7, temperature=2.0, top_k=None), "top_k": dict(alpha=0.5, temperature=1.0, top_k=5)}


@pytest.fixture(scope="module", params=list(CASES))
def distilled(smol, tmp_path_factory, request):
    case = CASES[request.param]
    d = tmp_path_factory.mktemp("distill")
    tokens, targets, starts = make_batch()
    spec = {"model": CFG, "seed": 7, "batch": B, "seq_len": T, "tokens": tokens.tolist(), "targets": targets.tolist(),
            "document_start": starts.tolist(), "optimizer": OPT, "lrs": [1e-3, 1e-3, 1e-3], "micro_batches": 2, "skip_logits": True,
            "distill": {"teacher_seed": 99, "alpha": case["alpha"], "temperature": case["temperature"], "top_k": case["top_k"]}}
    (d / "spec.json").write_text(json.dumps(spec))
    smol("dev", "parity", "--spec", d / "spec.json", "--out", d / "out")
    out = d / "out"
    return {"case": case, "params": safetensors_np.load(out / "params.safetensors"), "teacher": safetensors_np.load(out / "teacher.safetensors"),
            "grads": safetensors_np.load(out / "grads.safetensors"), "result": json.loads((out / "result.json").read_text()),
            "batch": (tokens, targets, starts)}


def reference(distilled):
    c = distilled["case"]
    tokens, targets, starts = distilled["batch"]
    teacher_logits = ref.Reference(CFG, distilled["teacher"]).forward_backward(tokens, targets, B, T, starts, grad=False)[0]
    f, p = head_loss(teacher_logits, targets, c["alpha"], c["temperature"], c["top_k"])
    return f, p, teacher_logits


def test_head_loss_gradient_matches_central_differences(distilled):
    """The closed-form gradient the reference uses, checked column by column on the student's logits."""
    tokens, targets, starts = distilled["batch"]
    f, p, _ = reference(distilled)
    z = ref.Reference(CFG, distilled["params"]).forward_backward(tokens, targets, B, T, starts, grad=False)[0]
    _, g = f(z)
    c = distilled["case"]
    h = 1e-6
    count = (targets >= 0).sum()
    fd = np.zeros_like(z)
    for j in range(z.shape[1]):   # rows are independent: perturb column j of every row at once
        zp, zm = z.copy(), z.copy()
        zp[:, j] += h; zm[:, j] -= h
        fd[:, j] = (row_losses(zp, p, targets, c["alpha"], c["temperature"]) - row_losses(zm, p, targets, c["alpha"], c["temperature"])) / (2 * h) / count
    np.testing.assert_allclose(g, fd, atol=1e-8)
    if c["top_k"]:
        assert ((p > 0).sum(-1) == c["top_k"]).all()


def test_distillation_loss_and_gradients_match_numpy(distilled):
    tokens, targets, starts = distilled["batch"]
    f, _, teacher_logits = reference(distilled)
    model = ref.Reference(CFG, distilled["params"])
    _, loss, grads = model.forward_backward(tokens, targets, B, T, starts, head_loss=f)
    ce = model.forward_backward(tokens, targets, B, T, starts, grad=False)[1]
    assert abs(loss - ce) > 0.05 * ce, "the teacher term should change the loss"
    assert abs(distilled["result"]["losses"][0] - loss) / loss <= 1e-5
    for name, g in grads.items():
        assert rel(distilled["grads"][name], g) <= 1e-4, (name, rel(distilled["grads"][name], g))


def test_three_adamw_steps_follow_the_reference(distilled):
    tokens, targets, starts = distilled["batch"]
    f, _, _ = reference(distilled)
    model = ref.Reference(CFG, distilled["params"])
    state, losses = {}, []
    for step in range(1, 4):
        _, loss, grads = model.forward_backward(tokens, targets, B, T, starts, head_loss=f)
        losses.append(loss)
        ref.adamw_step(model.p, grads, state, 1e-3, OPT, step)
    np.testing.assert_allclose(distilled["result"]["losses"], losses, rtol=1e-4)


def small_config(shards, path, extra=""):
    from conftest import SMALL
    text = SMALL.replace("SHARDS", str(shards)).replace("  steps: 24", "  steps: 6").replace("checkpoint_every: 5", "checkpoint_every: 6")
    path.write_text(text + extra)
    return path


def train_losses(run):
    rows = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if r["kind"] == "train"]


@pytest.fixture(scope="module")
def teacher(smol, shards, tmp_path_factory):
    d = tmp_path_factory.mktemp("teacher")
    smol("train", small_config(shards, d / "t.yaml"), "--out", d / "run")
    return d / "run"


def test_a_student_started_from_its_teacher_has_zero_kl(smol, shards, teacher, tmp_path):
    """Same weights on both sides: the KL of the first step is 0 (up to float32), the CE the teacher's own."""
    cfg = small_config(shards, tmp_path / "s.yaml").read_text()
    cfg = cfg.replace("model:\n", f"model:\n  init_from: {teacher}\n", 1)
    (tmp_path / "s.yaml").write_text(cfg + f"  distill: {{teacher: {teacher}, alpha: 1.0, temperature: 1.0}}\n")
    smol("train", tmp_path / "s.yaml", "--out", tmp_path / "run")
    first = train_losses(tmp_path / "run")[0]
    assert abs(first["distill"]["kl"]) < 1e-4 and first["loss"] == pytest.approx(first["distill"]["kl"], abs=1e-9)
    assert 1.0 < first["distill"]["ce"] < 6


def test_top_k_teacher_cache_is_reused_bit_for_bit(smol, shards, teacher, tmp_path):
    extra = f"  distill: {{teacher: {teacher}, alpha: 0.5, temperature: 2.0, top_k: 8, cache: {tmp_path / 'cache'}}}\n"
    cfg = small_config(shards, tmp_path / "s.yaml", extra)
    first = smol("train", cfg, "--out", tmp_path / "a")
    assert "teacher cache: 0 micro-batch(es) read, 12 computed" in first.stdout + first.stderr
    entries = list((tmp_path / "cache").glob("*.topk"))
    assert len(entries) == 12 and all(e.stat().st_size == 24 + 4 * 64 * 8 * 8 for e in entries)
    second = smol("train", cfg, "--out", tmp_path / "b")
    assert "teacher cache: 12 micro-batch(es) read, 0 computed" in second.stdout + second.stderr
    a, b = train_losses(tmp_path / "a"), train_losses(tmp_path / "b")
    assert [r["loss"] for r in a] == [r["loss"] for r in b]
    # The mix as logged: loss = (1 − α)·CE + α·T²·KL.
    for r in a:
        assert r["loss"] == pytest.approx(0.5 * r["distill"]["ce"] + 0.5 * 4 * r["distill"]["kl"], rel=1e-6)


def test_a_teacher_with_another_tokenizer_or_vocabulary_is_refused_before_anything_is_written(smol, shards, teacher, tmp_path):
    from smollm2 import GGUF
    cfg = small_config(shards, tmp_path / "s.yaml", f"  distill: {{teacher: {GGUF}}}\n")
    r = smol("train", cfg, "--out", tmp_path / "run", check=False)
    assert r.returncode != 0 and "training.distill.teacher" in r.stderr and "another tokenizer" in r.stderr, r.stderr
    assert not (tmp_path / "run").exists()
    wide = small_config(shards, tmp_path / "w.yaml").read_text().replace("vocab_size: 264", "vocab_size: 300")
    (tmp_path / "w.yaml").write_text(wide)
    smol("train", tmp_path / "w.yaml", "--out", tmp_path / "wide")
    cfg = small_config(shards, tmp_path / "s2.yaml", f"  distill: {{teacher: {tmp_path / 'wide'}}}\n")
    r = smol("train", cfg, "--out", tmp_path / "run2", check=False)
    assert r.returncode != 0 and "vocab_size 300" in r.stderr, r.stderr
    cfg = small_config(shards, tmp_path / "s3.yaml", f"  distill: {{teacher: {teacher}, cache: x}}\n")
    r = smol("train", cfg, "--out", tmp_path / "run3", check=False)
    assert r.returncode != 0 and "training.distill.cache" in r.stderr and "s3.yaml" in r.stderr, r.stderr


def test_a_quantised_gguf_teacher_distils_into_its_own_dequantised_weights(smol, tmp_path):
    """SmolLM2-135M-Instruct Q4_1 as teacher and as the student's init: the teacher's weights are
    dequantised on load, so the first step's KL (whole distribution) is 0 and its CE the model's own."""
    from smollm2 import GGUF
    from conftest import ROOT
    text = (ROOT / "data/corpus/prose.txt").read_text()[:20000]
    (tmp_path / "p.txt").write_text(text)
    smol("data", "prepare", tmp_path / "p.txt", "--tokenizer", GGUF, "--out", tmp_path / "p.bin")
    (tmp_path / "d.yaml").write_text(f"""
model:
  init_from: {GGUF}
optimizer: {{lr: 1.0e-5, weight_decay: 0.0, grad_clip: 1.0}}
schedule: {{type: constant, warmup_steps: 0}}
data:
  train: [p.bin]
  validation_fraction: 0.05
training:
  seq_len: 64
  micro_batch: 2
  steps: 2
  eval_every: 0
  checkpoint_every: 0
  sample_tokens: 0
  peak_gflops: 100
  distill: {{teacher: {GGUF}, alpha: 0.5, temperature: 1.0}}
""")
    r = smol("train", tmp_path / "d.yaml", "--out", tmp_path / "run")
    assert "distilling from" in r.stdout + r.stderr
    first = train_losses(tmp_path / "run")[0]
    assert abs(first["distill"]["kl"]) < 1e-4, first
    assert 1.0 < first["distill"]["ce"] < 6 and first["loss"] == pytest.approx(0.5 * first["distill"]["ce"] + 0.5 * first["distill"]["kl"], rel=1e-6)
    prov = json.loads((tmp_path / "run" / "provenance.json").read_text())
    assert prov["teacher"]["fingerprint"] == prov["init_from"]["fingerprint"] and prov["teacher"].get("provenance") is None
    assert prov["data"][0]["unchecked"] == [str(tmp_path / "p.txt")]


def test_data_parallel_distillation_trains_the_losses_of_one_process(smol, shards, teacher, tmp_path):
    """Each rank runs the teacher on its own micro-batches; the loss and its parts are summed over ranks."""
    from test_parallel import mpi
    extra = f"  distill: {{teacher: {teacher}, alpha: 0.5, temperature: 2.0, top_k: 8}}\n"
    cfg = small_config(shards, tmp_path / "s.yaml", extra)
    smol("train", cfg, "--out", tmp_path / "one")
    mpi(2, "train", cfg, "--out", tmp_path / "two")
    one, two = train_losses(tmp_path / "one"), train_losses(tmp_path / "two")
    for key in ["loss"]:
        np.testing.assert_allclose([r[key] for r in two], [r[key] for r in one], rtol=1e-5)
    for part in ["ce", "kl"]:
        np.testing.assert_allclose([r["distill"][part] for r in two], [r["distill"][part] for r in one], rtol=1e-5)
