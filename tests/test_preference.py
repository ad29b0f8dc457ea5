"""Preference optimisation (DPO, APO-zero, APO-down) as trl defines it: preference shards checked
against Python `jinja2` and HF `tokenizers`; bad records counted by reason with file:line; the
step's loss and every gradient against the NumPy float64 model (whose pair-loss gradient is checked
by finite differences first); reference log-probs cached; and on the real SmolLM2-135M-Instruct a
short DPO run that raises held-out preference accuracy, recomputed with `transformers`."""
import json
import math

import numpy as np
import pytest

import reference_llama as ref
import safetensors_np
from smollm2 import GGUF, hf_tokenizer
from test_chat_template import hf_environment, templates
from test_sft import read_shard


# ---------------------------------------------------------------- trl's objectives, in NumPy
def log_sigmoid(x):
    return -np.logaddexp(0.0, -x)


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def pair_loss(objective, beta, pc, pr, rc, rr):
    """trl's DPOTrainer losses (loss_type sigmoid, apo_zero, apo_down) for arrays of pairs."""
    dw, dl = pc - rc, pr - rr
    if objective == "dpo":
        return -log_sigmoid(beta * (dw - dl))
    if objective == "apo_zero":
        return (1 - sigmoid(beta * dw)) + sigmoid(beta * dl)
    if objective == "apo_down":
        return sigmoid(beta * dw) + (1 - sigmoid(beta * (dw - dl)))
    raise ValueError(objective)


# ---------------------------------------------------------------- data
PAIRS = [
    {"prompt": "What is the capital of France?", "chosen": "The capital of France is Paris.", "rejected": "paris"},
    {"prompt": [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "2 + 2?"}],
     "chosen": [{"role": "assistant", "content": "2 + 2 = 4."}], "rejected": [{"role": "assistant", "content": "5"}]},
    # Multi-turn: the earlier assistant turn belongs to the prompt and carries no loss.
    {"messages": [{"role": "user", "content": "Hi!"}, {"role": "assistant", "content": "Hello, how can I help?"},
                  {"role": "user", "content": "Name a colour."}],
     "chosen": "Blue is a colour.", "rejected": "no"},
]
BAD = [
    ('{"prompt": "Q?", "rejected": "x"}', "missing_chosen"),
    ('{"prompt": "Q?", "chosen": "x"}', "missing_rejected"),
    ('{"prompt": "Only a prompt"}', "prompt_only"),
    ('{"prompt": "Q?", "chosen": "same", "rejected": "same"}', "identical_chosen_rejected"),
    ('{"prompt": "Q?", "chosen": "", "rejected": "x"}', "empty_completion"),
    ('{"chosen": "a", "rejected": "b"}', "no_prompt"),
    ('{"prompt": "Q?", "chosen": 3, "rejected": "b"}', "non_string_completion"),
    ('{not json', "invalid_json"),
]


def completion_mask(text, prompt_text_end, completion, enc, end_of_turn):
    """Tokens overlapping the completion's content (found after the prompt), and the end-of-turn token after it."""
    at = text.find(completion, prompt_text_end)
    assert at >= 0
    end = at + len(completion)
    mask = [1 if s < end and e > at else 0 for s, e in enc.offsets]
    after = next(i for i, (s, _) in enumerate(enc.offsets) if s >= end)
    assert enc.ids[after] == end_of_turn
    mask[after] = 1
    return mask


def test_preference_shards_match_jinja2_and_tokenizers_and_bad_records_are_counted(smol, tmp_path):
    lines = [json.dumps(p) for p in PAIRS[:2]] + [b for b, _ in BAD] + [json.dumps(PAIRS[2])]
    src = tmp_path / "pairs.jsonl"
    src.write_text("\n".join(lines) + "\n")
    r = smol("data", "prepare", src, "--format", "preference", "--tokenizer", GGUF, "--out", tmp_path / "pairs.bin", "--seq-len", 512)
    assert "3 preference pairs" in r.stdout
    m = json.loads((tmp_path / "pairs.manifest.json").read_text())
    assert m["chat"]["pairs"] == 3 and m["chat"]["conversations"] == 6
    reasons = m["rejected"]["reasons"]
    for line, (_, reason) in enumerate(BAD, start=3):
        assert reasons[reason]["count"] == 1, (reason, reasons)
        assert reasons[reason]["first"][0].startswith(f"{src}:{line}"), reasons[reason]
    assert sum(v["count"] for v in reasons.values()) == len(BAD)

    docs, masks = read_shard(tmp_path / "pairs.bin")
    assert len(docs) == 6
    tok = hf_tokenizer()
    end_of_turn = tok.token_to_id("<|im_end|>")
    template = hf_environment().from_string(templates()["smollm2"])
    for k, pair in enumerate(PAIRS):
        prompt = pair.get("prompt", pair.get("messages"))
        prompt = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
        prompt_end = len(template.render(messages=prompt, add_generation_prompt=False))
        for j, key in enumerate(["chosen", "rejected"]):
            c = pair[key]
            c = [{"role": "assistant", "content": c}] if isinstance(c, str) else c
            text = template.render(messages=prompt + c, add_generation_prompt=False)
            enc = tok.encode(text, add_special_tokens=False)
            assert docs[2 * k + j] == enc.ids
            assert masks[2 * k + j] == completion_mask(text, prompt_end - 1, c[-1]["content"], enc, end_of_turn), (k, key)


def test_pairs_over_seq_len_are_dropped_and_sft_refuses_pairs(smol, tmp_path):
    src = tmp_path / "pairs.jsonl"
    src.write_text("\n".join(json.dumps(p) for p in PAIRS) + "\n" + json.dumps(
        {"prompt": "long " * 300, "chosen": "Yes indeed.", "rejected": "Nope."}) + "\n")
    smol("data", "prepare", src, "--format", "preference", "--tokenizer", GGUF, "--out", tmp_path / "pairs.bin", "--seq-len", 256)
    m = json.loads((tmp_path / "pairs.manifest.json").read_text())
    assert m["chat"]["pairs"] == 3 and m["rejected"]["reasons"]["pair_over_seq_len"]["first"][0].startswith(f"{src}:4")
    (tmp_path / "sft.yaml").write_text(f"model: {{init_from: {GGUF}}}\ndata: {{train: [pairs.bin]}}\n"
                                       "training: {objective: sft, seq_len: 256, micro_batch: 1, steps: 1, eval_every: 0, checkpoint_every: 0, sample_tokens: 0, peak_gflops: 100}\n")
    r = smol("train", tmp_path / "sft.yaml", "--out", tmp_path / "run", check=False)
    assert r.returncode == 1 and "pairs.bin holds preference pairs" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())
    bad = smol("data", "prepare", src, "--format", "preference", "--tokenizer", GGUF, "--out", tmp_path / "x.bin", "--overflow", "drop", check=False)
    assert bad.returncode != 0 and "--overflow" in bad.stderr


# ---------------------------------------------------------------- the step against NumPy
CFG = {
    "vocab_size": 97, "hidden_size": 48, "num_hidden_layers": 3, "num_attention_heads": 6,
    "num_key_value_heads": 2, "intermediate_size": 80, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
    "tie_word_embeddings": True, "max_position_embeddings": 64, "intra_document_masking": True, "initializer_range": 0.1,
}
B, T = 4, 40
OPT = {"lr": 0.0, "beta1": 0.9, "beta2": 0.95, "eps": 1e-8, "weight_decay": 0.0, "no_decay": [], "grad_clip": 0.0}


def make_pairs(seed=0):
    """B rows, each a pair: chosen (prompt + completion) from position 0, rejected after it, then padding."""
    rng = np.random.default_rng(seed)
    tokens, targets, starts = [], [], []
    for row in range(B):
        prompt = list(rng.integers(0, CFG["vocab_size"], size=5 + row))
        row_t, row_y, row_s = [], [], []
        for completion_len in (6 + 2 * row, 4 + row):
            doc = prompt + list(rng.integers(0, CFG["vocab_size"], size=completion_len))
            start = len(row_t)
            for i in range(len(doc) - 1):
                row_t.append(doc[i])
                row_y.append(doc[i + 1] if i + 1 >= len(prompt) else -1)   # loss on the completion only
                row_s.append(start)
        while len(row_t) < T:
            row_s.append(len(row_t)); row_t.append(0); row_y.append(-1)
        tokens += row_t; targets += row_y; starts += row_s
    return np.array(tokens), np.array(targets), np.array(starts)


def pair_logps(token_losses, targets, starts):
    lp = -(token_losses * (targets >= 0)).reshape(B, T)
    chosen = (np.asarray(starts).reshape(B, T) == 0)
    return (lp * chosen).sum(1), (lp * ~chosen).sum(1)


def numpy_preference(model, tokens, targets, starts, reference, objective, beta, grad=True):
    """The mean pair loss and its gradient: per-token weights −∂L/∂log π of each completion through
    the reference model's weighted backward."""
    _, _, tl = model.forward_backward(tokens, targets, B, T, starts, grad=False)
    pc, pr = pair_logps(tl, targets, starts)
    rc, rr = reference[0::2], reference[1::2]
    losses = pair_loss(objective, beta, pc, pr, rc, rr)
    if not grad:
        return losses.mean(), None
    h = 1e-6   # ∂L/∂log π by central differences of the closed form (independent of the Swift derivative)
    dc = (pair_loss(objective, beta, pc + h, pr, rc, rr) - pair_loss(objective, beta, pc - h, pr, rc, rr)) / (2 * h)
    dr = (pair_loss(objective, beta, pc, pr + h, rc, rr) - pair_loss(objective, beta, pc, pr - h, rc, rr)) / (2 * h)
    chosen = np.asarray(starts).reshape(B, T) == 0
    weights = np.where(chosen, -dc[:, None], -dr[:, None]).reshape(-1)
    _, _, grads = model.forward_backward(tokens, targets, B, T, starts, weights=weights, scale=1.0 / B)
    return losses.mean(), grads


@pytest.fixture(scope="module")
def pair_batch():
    tokens, targets, starts = make_pairs()
    rng = np.random.default_rng(3)
    return tokens, targets, starts, rng


@pytest.mark.parametrize("objective", ["dpo", "apo_zero", "apo_down"])
def test_preference_step_matches_numpy_float64(smol, tmp_path, pair_batch, objective):
    tokens, targets, starts, _ = pair_batch
    beta = 0.7
    # Reference log-probs a little off the policy's, so every pair has Δ ≠ 0 and the objectives differ.
    spec = {"model": CFG, "seed": 11, "batch": B, "seq_len": T, "tokens": tokens.tolist(), "targets": targets.tolist(),
            "document_start": starts.tolist(), "optimizer": OPT, "lrs": [0.0], "micro_batches": 2,
            "objective": objective, "beta": beta, "skip_logits": True, "reference_logps": [0.0] * (2 * B)}
    (tmp_path / "probe.json").write_text(json.dumps(spec))
    smol("dev", "parity", "--spec", tmp_path / "probe.json", "--out", tmp_path / "probe")
    params = safetensors_np.load(tmp_path / "probe" / "params.safetensors")
    model = ref.Reference(CFG, params)
    _, _, tl = model.forward_backward(tokens, targets, B, T, starts, grad=False)
    pc, pr = pair_logps(tl, targets, starts)
    reference = np.stack([pc + np.linspace(-2, 1.5, B), pr + np.linspace(1, -1, B)], 1).reshape(-1)
    spec["reference_logps"] = reference.tolist()
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    smol("dev", "parity", "--spec", tmp_path / "spec.json", "--out", tmp_path / "out")
    ours = json.loads((tmp_path / "out" / "result.json").read_text())["losses"][0]
    grads_ours = safetensors_np.load(tmp_path / "out" / "grads.safetensors")

    loss, grads = numpy_preference(model, tokens, targets, starts, reference, objective, beta)
    assert abs(ours - loss) <= 1e-4 * abs(loss), (ours, loss)
    for name, g in grads.items():
        rel = np.linalg.norm(grads_ours[name] - g) / np.linalg.norm(g)
        assert rel <= 1e-4, (name, rel)
    # The NumPy gradient itself against central differences of the NumPy pair loss.
    rng = np.random.default_rng(5)
    for name in ["model.embed_tokens.weight", "model.layers.1.self_attn.q_proj.weight", "model.layers.2.mlp.down_proj.weight", "model.norm.weight"]:
        for _ in range(2):
            idx = tuple(rng.integers(0, s) for s in model.p[name].shape)
            old = model.p[name][idx]
            model.p[name][idx] = old + 1e-5
            lp = numpy_preference(model, tokens, targets, starts, reference, objective, beta, grad=False)[0]
            model.p[name][idx] = old - 1e-5
            lm = numpy_preference(model, tokens, targets, starts, reference, objective, beta, grad=False)[0]
            model.p[name][idx] = old
            fd = (lp - lm) / 2e-5
            assert abs(fd - grads[name][idx]) <= 1e-7 + 1e-4 * abs(fd), (name, idx, fd, grads[name][idx])


# ---------------------------------------------------------------- SmolLM2-135M-Instruct
COUNTRIES = ["France", "Germany", "Italy", "Spain", "Portugal", "Japan", "China", "India", "Egypt", "Kenya", "Peru",
             "Chile", "Canada", "Mexico", "Brazil", "Norway", "Sweden", "Finland", "Poland", "Greece", "Turkey", "Russia",
             "Austria", "Ireland"]
CAPITALS = ["Paris", "Berlin", "Rome", "Madrid", "Lisbon", "Tokyo", "Beijing", "New Delhi", "Cairo", "Nairobi", "Lima",
            "Santiago", "Ottawa", "Mexico City", "Brasilia", "Oslo", "Stockholm", "Helsinki", "Warsaw", "Athens", "Ankara",
            "Moscow", "Vienna", "Dublin"]


def preference_pairs():
    """A style preference that carries over to unseen prompts: a full, polite sentence over a bare word."""
    pairs = []
    rng = np.random.default_rng(0)
    for country, capital in zip(COUNTRIES, CAPITALS):
        pairs.append({"prompt": f"What is the capital of {country}?",
                      "chosen": f"The capital of {country} is {capital}. Happy to help!", "rejected": capital.lower()})
    for _ in range(24):
        a, b = (int(x) for x in rng.integers(2, 60, size=2))
        pairs.append({"prompt": f"What is {a} plus {b}?", "chosen": f"{a} plus {b} equals {a + b}. Happy to help!", "rejected": str(a + b)})
    order = rng.permutation(len(pairs))
    return [pairs[i] for i in order]


@pytest.fixture(scope="module")
def dpo_run(smol, tmp_path_factory):
    d = tmp_path_factory.mktemp("dpo")
    (d / "pairs.jsonl").write_text("".join(json.dumps(p) + "\n" for p in preference_pairs()))
    smol("data", "prepare", d / "pairs.jsonl", "--format", "preference", "--tokenizer", GGUF, "--out", d / "pairs.bin", "--seq-len", 128)
    cache = d / "cache"

    def config(objective, beta, steps):
        return f"""
model: {{init_from: {GGUF}}}
optimizer: {{lr: 1.0e-5, weight_decay: 0.0, grad_clip: 1.0}}
schedule: {{type: constant, warmup_steps: 0}}
data: {{train: [pairs.bin], validation_fraction: 0.25}}
training: {{objective: {objective}, beta: {beta}, seq_len: 128, micro_batch: 4, steps: {steps}, eval_every: {steps},
           eval_batches: 3, checkpoint_every: {steps}, seed: 3, peak_gflops: 100, sample_tokens: 0}}
"""
    (d / "dpo.yaml").write_text(config("dpo", 0.1, 6))
    r = smol("train", d / "dpo.yaml", "--out", d / "run", "--json", "--no-store", env={"SMOL_CACHE_DIR": str(cache)})
    (d / "apo.yaml").write_text(config("apo_zero", 0.5, 1))
    r2 = smol("train", d / "apo.yaml", "--out", d / "run-apo", "--json", "--no-store", env={"SMOL_CACHE_DIR": str(cache)})
    return {"dir": d, "out": r.stdout + r.stderr, "out_apo": r2.stdout + r2.stderr}


def metrics(path):
    return [json.loads(l) for l in path.read_text().splitlines()]


def test_reference_log_probs_are_cached_for_another_beta(dpo_run):
    d = dpo_run["dir"]
    assert "scored by the initial model" in dpo_run["out"] and "cached at" in dpo_run["out"]
    assert "read from the cache" in dpo_run["out_apo"]
    a = json.loads((d / "run" / "reference_logps.json").read_text())
    b = json.loads((d / "run-apo" / "reference_logps.json").read_text())
    assert a == b and len(a["sets"][0]) == 2 * 36 and len(a["sets"][1]) == 2 * 12
    steps = [m for m in metrics(d / "run" / "metrics.jsonl") if m["kind"] == "train"]
    assert set(steps[0]["preference"]) == {"rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies",
                                           "logps/chosen", "logps/rejected"}
    # Step 1 runs at the reference weights: Δ = 0, so the DPO loss is log 2 and every reward 0.
    assert abs(steps[0]["loss"] - math.log(2)) < 1e-3 and abs(steps[0]["preference"]["rewards/margins"]) < 1e-3
    assert steps[-1]["preference"]["rewards/margins"] > steps[0]["preference"]["rewards/margins"]
    apo = [m for m in metrics(d / "run-apo" / "metrics.jsonl") if m["kind"] == "train"]
    assert abs(apo[0]["loss"] - 1.0) < 1e-3      # APO-zero at Δ = 0: (1 − ½) + ½


def test_dpo_raises_held_out_preference_accuracy_in_transformers(smol, dpo_run):
    """The held-out pairs' implicit reward accuracy, recomputed in transformers from the exported
    reference and the trained checkpoint (a tie counts ½: at the start every pair ties, 0.5)."""
    import torch
    import transformers
    from scipy.stats import binomtest
    d = dpo_run["dir"]
    smol("export", GGUF, d / "reference")
    ck = sorted((d / "run" / "checkpoints").iterdir())[-1]
    docs, masks = read_shard(d / "pairs.bin")
    n = len(docs) // 2
    held = range(n - 12, n)                   # validation_fraction 0.25: the last quarter of the pairs

    def logps(path):
        model = transformers.AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32).eval()
        out = []
        with torch.no_grad():
            for k in held:
                pair = []
                for doc, mask in ((docs[2 * k], masks[2 * k]), (docs[2 * k + 1], masks[2 * k + 1])):
                    logits = model(input_ids=torch.tensor([doc])).logits[0, :-1].double()
                    lp = torch.log_softmax(logits, -1)[torch.arange(len(doc) - 1), torch.tensor(doc[1:])]
                    pair.append(float((lp * torch.tensor(mask[1:], dtype=torch.float64)).sum()))
                out.append(pair)
        return np.array(out)
    reference, policy = logps(d / "reference"), logps(ck)
    margin = (policy[:, 0] - reference[:, 0]) - (policy[:, 1] - reference[:, 1])
    wins = int((margin > 1e-6).sum()) + 0.5 * int((abs(margin) <= 1e-6).sum())
    p = binomtest(int(wins), len(held), 0.5, alternative="greater").pvalue
    evals = [m for m in metrics(d / "run" / "metrics.jsonl") if m["kind"] == "eval"]
    ours = evals[-1]["preference"]["rewards/accuracies"]
    print(f"held-out preference accuracy: 0.5 at the start, {wins / len(held):.3f} after 6 DPO steps "
          f"(transformers), {ours:.3f} (smol's eval); binomial p = {p:.2g}")
    assert wins / len(held) >= 0.8 and p < 0.01, (wins, p)
    assert abs(ours - (margin > 0).mean()) <= 1 / len(held) + 1e-9
    # The reference as smol scored it agrees with transformers on the held-out pairs.
    ref_ours = np.array(json.loads((d / "run" / "reference_logps.json").read_text())["sets"][1]).reshape(-1, 2)
    np.testing.assert_allclose(ref_ours, reference, rtol=2e-3, atol=2e-2)


# ---------------------------------------------------------------- data parallel
TEMPLATE = "{% for m in messages %}{{ m.role }}: {{ m.content }}<|endoftext|>\n{% endfor %}{% if add_generation_prompt %}assistant: {% endif %}"


def test_two_ranks_train_the_pairs_one_process_trains(smol, tmp_path):
    """mpirun -np 2: the ranks score the reference's share each and exchange it, and every step's
    loss, pair figures and the final weights agree with one process."""
    import hf_models
    from test_parallel import mpi
    hf = tmp_path / "hf"
    hf.mkdir()
    hf_models.tiny_tokenizer(tmp_path / "tok.json")
    hf_models.make_hf_model("llama", hf, tmp_path / "tok.json")
    tc = json.loads((hf / "tokenizer_config.json").read_text())
    (hf / "tokenizer_config.json").write_text(json.dumps({**tc, "chat_template": TEMPLATE}))
    rng = np.random.default_rng(4)
    words = "the river runs past a quiet town where people read and write".split()
    pairs = [{"prompt": " ".join(rng.choice(words, 5)), "chosen": " ".join(rng.choice(words, 4)) + ".",
              "rejected": " ".join(rng.choice(words, 3)) + "!"} for _ in range(60)]
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps(p) + "\n" for p in pairs))
    smol("data", "prepare", tmp_path / "pairs.jsonl", "--format", "preference", "--tokenizer", hf, "--out", tmp_path / "pairs.bin", "--seq-len", 96)
    (tmp_path / "dpo.yaml").write_text(f"""
model: {{init_from: hf}}
optimizer: {{lr: 5.0e-4, weight_decay: 0.0, grad_clip: 1.0}}
schedule: {{type: constant, warmup_steps: 0}}
data: {{train: [pairs.bin], validation_fraction: 0.2}}
training: {{objective: dpo, beta: 0.1, seq_len: 96, micro_batch: 2, tokens_per_batch: 768, steps: 4, eval_every: 4,
           eval_batches: 2, checkpoint_every: 4, seed: 2, peak_gflops: 100, sample_tokens: 0}}
""")
    env = {"SMOL_CACHE_DIR": str(tmp_path / "cache")}
    smol("train", tmp_path / "dpo.yaml", "--out", tmp_path / "one", "--no-store", env={"SMOL_CACHE_DIR": str(tmp_path / "cache1")})
    mpi(2, "train", tmp_path / "dpo.yaml", "--out", tmp_path / "two", "--no-store", env=env)
    one, two = metrics(tmp_path / "one" / "metrics.jsonl"), metrics(tmp_path / "two" / "metrics.jsonl")
    assert [r["kind"] for r in one] == [r["kind"] for r in two] and len(one) == 5
    for a, b in zip(one, two):
        key = "loss" if a["kind"] == "train" else "val_loss"
        assert a[key] == pytest.approx(b[key], rel=1e-5)
        for k, v in a["preference"].items():
            assert v == pytest.approx(b["preference"][k], rel=1e-4, abs=1e-6), k
    ref1 = json.loads((tmp_path / "one" / "reference_logps.json").read_text())
    ref2 = json.loads((tmp_path / "two" / "reference_logps.json").read_text())
    # 4 steps of 8 pairs stay inside the first epoch (at an epoch's end each rank moves on by itself).
    assert ref1["key"] == ref2["key"] and len(ref1["sets"][0]) >= 2 * 32
    np.testing.assert_allclose(np.concatenate(ref1["sets"]), np.concatenate(ref2["sets"]), rtol=1e-6)
    assert one[-2]["preference"]["rewards/margins"] > 0
