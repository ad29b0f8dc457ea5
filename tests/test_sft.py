"""Supervised fine-tuning on conversations: chat shards with loss masks checked against Python
`jinja2` and HF `tokenizers` (their own offsets), {% generation %} blocks, the system-prompt guard,
bad records, best-fit-decreasing packing against a Python implementation, and the first SFT step's
loss against the NumPy float64 model of SmolLM2-135M-Instruct run conversation by conversation."""
import json
import struct

import numpy as np
import pytest

from smollm2 import GGUF, hf_tokenizer, numpy_reference
from test_chat_template import hf_environment, templates

CHATML_GEN = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{% if m.role == 'assistant' %}{% generation %}"
              "{{ m.content }}<|im_end|>{% endgeneration %}{% else %}{{ m.content }}<|im_end|>{% endif %}\n{% endfor %}"
              "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
# The playbook's bug: a template that silently leaves system messages out.
CHATML_DROPS_SYSTEM = ("{% for m in messages if m.role != 'system' %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}")
# A template that always puts its own system prompt first, whatever the conversation says.
CHATML_OWN_SYSTEM = ("<|im_start|>system\nYou are a bot made by ACME.<|im_end|>\n"
                     "{% for m in messages if m.role != 'system' %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}")
CHATML_REJECTS_TOOL = ("{% for m in messages %}{% if m.role not in ['system', 'user', 'assistant'] %}"
                       "{{ raise_exception('unknown role ' + m.role) }}{% endif %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}")

CONVERSATIONS = [
    [{"role": "system", "content": "You are Captain Hook, a pirate."}, {"role": "user", "content": "Who are you?"},
     {"role": "assistant", "content": "Arr, I be Hook."}],
    [{"role": "user", "content": "Add 12345 and 678."}, {"role": "assistant", "content": "12345 + 678 = 13023."},
     {"role": "user", "content": "  And twice that?\n"}, {"role": "assistant", "content": " 26046, with a leading space."}],
    [{"role": "system", "content": "Réponds en français."}, {"role": "user", "content": "مرحبا 👩‍👩‍👧 中文?"},
     {"role": "assistant", "content": "Bonjour ! 👋\nLigne deux."}],
    [{"role": "user", "content": "Say nothing special."}, {"role": "assistant", "content": "Nothing special."}],
]


def read_shard(path):
    """A token shard as docs/FORMATS.md describes it: (documents, masks or None)."""
    b = open(path, "rb").read()
    assert b[:8] == b"SMOLSHRD"
    version, width, n, d, _vocab = struct.unpack_from("<IIQQQ", b, 8)
    flags = struct.unpack_from("<I", b, 40)[0] if version == 2 else 0
    tokens = np.frombuffer(b, dtype=np.uint16 if width == 2 else np.uint32, count=n, offset=64).astype(np.int64)
    starts_at = 64 + (n * width + 7) // 8 * 8
    starts = np.frombuffer(b, dtype=np.uint64, count=d + 1, offset=starts_at).astype(np.int64)
    masks = None
    if flags & 1:
        masks = np.frombuffer(b, dtype=np.uint8, count=n, offset=starts_at + (d + 1) * 8)
    docs = [tokens[starts[i]:starts[i + 1]].tolist() for i in range(d)]
    return docs, (None if masks is None else [masks[starts[i]:starts[i + 1]].tolist() for i in range(d)])


def write_jsonl(path, conversations):
    path.write_text("".join(json.dumps({"messages": c}) + "\n" for c in conversations))
    return path


def reference_mask(text, conversation, enc, end_of_turn):
    """Tokens that overlap an assistant content (found in order), and the end-of-turn token right
    after each."""
    starts = [o[0] for o in enc.offsets]
    mask = [0] * len(enc.ids)
    cursor = 0
    for m in conversation:
        at = text.find(m["content"], cursor)
        assert at >= 0
        cursor = at + len(m["content"])
        if m["role"] != "assistant":
            continue
        for i, (s, e) in enumerate(enc.offsets):
            if s < cursor and e > at:
                mask[i] = 1
        after = next(i for i, s in enumerate(starts) if s >= cursor)
        assert enc.ids[after] == end_of_turn
        mask[after] = 1
    return mask


@pytest.fixture(scope="module")
def tok():
    return hf_tokenizer()


def test_chat_masks_match_jinja2_and_hf_tokenizers(smol, tmp_path, tok):
    src = write_jsonl(tmp_path / "chat.jsonl", CONVERSATIONS)
    smol("data", "prepare", src, "--format", "chat", "--tokenizer", GGUF, "--out", tmp_path / "chat.bin")
    docs, masks = read_shard(tmp_path / "chat.bin")
    template = hf_environment().from_string(templates()["smollm2"])
    end_of_turn = tok.token_to_id("<|im_end|>")
    assert len(docs) == len(CONVERSATIONS)
    for conv, ids, mask in zip(CONVERSATIONS, docs, masks):
        text = template.render(messages=conv, add_generation_prompt=False)
        enc = tok.encode(text, add_special_tokens=False)
        assert ids == enc.ids
        assert mask == reference_mask(text, conv, enc, end_of_turn)
    m = json.loads((tmp_path / "chat.manifest.json").read_text())
    assert m["format"] == "smol-shards/2"
    chat = m["chat"]
    assert chat["conversations"] == 4 and chat["with_system"] == 2 and chat["system_share"] == 0.5
    assert chat["messages_by_role"] == {"system": 2, "user": 5, "assistant": 5}
    assert chat["loss_tokens"] == sum(map(sum, masks)) and chat["tokens"] == sum(map(len, docs))
    # SmolLM2's template puts its own persona into conversations without a system message: reported.
    assert chat["default_system_injected"]["reasons"]["default_system_injected"]["count"] == 2
    assert "SmolLM" in chat["default_system_prompt"] and chat["guard_failures"]["reasons"] == {}
    # --train-on all: every token but the first is a target.
    smol("data", "prepare", src, "--format", "chat", "--tokenizer", GGUF, "--out", tmp_path / "all.bin", "--train-on", "all")
    _, all_masks = read_shard(tmp_path / "all.bin")
    assert all(all(x == 1 for x in mk) for mk in all_masks)


def test_template_check_and_prepare_share_the_masks(smol, tmp_path):
    src = write_jsonl(tmp_path / "chat.jsonl", CONVERSATIONS[:1])
    smol("data", "prepare", src, "--format", "chat", "--tokenizer", GGUF, "--out", tmp_path / "c.bin")
    _, masks = read_shard(tmp_path / "c.bin")
    audit = json.loads(smol("template", "check", GGUF, "--messages", src, "--json").stdout)
    runs = [[i, i + 1] for i, x in enumerate(masks[0]) if x]
    merged = []
    for a, b in runs:
        if merged and merged[-1][1] == a:
            merged[-1][1] = b
        else:
            merged.append([a, b])
    assert audit["loss_tokens"] == merged and audit["loss_token_count"] == sum(masks[0])


def test_generation_blocks_mark_the_loss(smol, tmp_path, tok):
    (tmp_path / "gen.jinja").write_text(CHATML_GEN)
    src = write_jsonl(tmp_path / "chat.jsonl", CONVERSATIONS)
    smol("data", "prepare", src, "--format", "chat", "--tokenizer", GGUF, "--chat-template", tmp_path / "gen.jinja",
         "--out", tmp_path / "gen.bin")
    docs, masks = read_shard(tmp_path / "gen.bin")
    # jinja2 renders the template with the generation tags turned into markers: the text between
    # them is what carries loss.
    marked = hf_environment().from_string(CHATML_GEN.replace("{% generation %}", "\x01").replace("{% endgeneration %}", "\x02"))
    for conv, ids, mask in zip(CONVERSATIONS, docs, masks):
        raw = marked.render(messages=conv, add_generation_prompt=False)
        text, spans, start = "", [], None
        for ch in raw:
            if ch == "\x01":
                start = len(text)
            elif ch == "\x02":
                spans.append((start, len(text)))
            else:
                text += ch
        enc = tok.encode(text, add_special_tokens=False)
        assert ids == enc.ids
        assert mask == [int(any(s < b and e > a for a, b in spans)) for s, e in enc.offsets]


def test_a_template_that_drops_system_messages_stops_the_prepare(smol, tmp_path):
    (tmp_path / "drops.jinja").write_text(CHATML_DROPS_SYSTEM)
    src = write_jsonl(tmp_path / "chat.jsonl", CONVERSATIONS)
    out = tmp_path / "out"
    r = smol("data", "prepare", src, "--format", "chat", "--tokenizer", GGUF, "--chat-template", tmp_path / "drops.jinja",
             "--out", out / "d.bin", check=False)
    assert r.returncode == 1
    assert "system_dropped" in r.stderr and f"{src}:1" in r.stderr and "--allow-system-mismatch" in r.stderr
    assert not list(out.glob("*")) if out.exists() else True
    # Allowed: those conversations are kept as the template renders them, and counted.
    smol("data", "prepare", src, "--format", "chat", "--tokenizer", GGUF, "--chat-template", tmp_path / "drops.jinja",
         "--out", out / "d.bin", "--allow-system-mismatch")
    chat = json.loads((out / "d.manifest.json").read_text())["chat"]
    assert chat["guard_failures"]["reasons"]["system_dropped"]["count"] == 2
    assert chat["conversations"] == 4 and chat["system_mismatch_allowed"] is True
    # --strict: the first failure is the error.
    r = smol("data", "prepare", src, "--format", "chat", "--tokenizer", GGUF, "--chat-template", tmp_path / "drops.jinja",
             "--out", out / "s.bin", "--strict", check=False)
    assert r.returncode == 1 and f"{src}:1: system-prompt guard: system_dropped" in r.stderr


def test_a_template_that_replaces_the_system_prompt_is_named(smol, tmp_path):
    (tmp_path / "own.jinja").write_text(CHATML_OWN_SYSTEM)
    src = write_jsonl(tmp_path / "chat.jsonl", CONVERSATIONS)
    r = smol("data", "prepare", src, "--format", "chat", "--tokenizer", GGUF, "--chat-template", tmp_path / "own.jinja",
             "--out", tmp_path / "o.bin", check=False)
    assert r.returncode == 1 and "system_replaced" in r.stderr
    smol("data", "prepare", src, "--format", "chat", "--tokenizer", GGUF, "--chat-template", tmp_path / "own.jinja",
         "--out", tmp_path / "o.bin", "--allow-system-mismatch")
    chat = json.loads((tmp_path / "o.manifest.json").read_text())["chat"]
    assert chat["guard_failures"]["reasons"] == {"system_replaced": chat["guard_failures"]["reasons"]["system_replaced"]}
    assert chat["guard_failures"]["reasons"]["system_replaced"]["count"] == 2


def test_bad_records_are_counted_with_their_lines(smol, tmp_path):
    (tmp_path / "t.jinja").write_text(CHATML_REJECTS_TOOL)
    good = json.dumps({"messages": CONVERSATIONS[3]})
    lines = [good,
             json.dumps({"messages": [{"content": "no role"}, {"role": "assistant", "content": "x"}]}),
             json.dumps({"messages": [{"role": "user", "content": ["a", "list"]}, {"role": "assistant", "content": "x"}]}),
             json.dumps({"messages": []}),
             json.dumps({"messages": [{"role": "tool", "content": "{}"}, {"role": "assistant", "content": "x"}]}),
             "{not json",
             json.dumps({"messages": [{"role": "user", "content": "only a question"}]}),
             good]
    src = tmp_path / "bad.jsonl"
    src.write_text("\n".join(lines) + "\n")
    smol("data", "prepare", src, "--format", "chat", "--tokenizer", GGUF, "--chat-template", tmp_path / "t.jinja",
         "--out", tmp_path / "b.bin")
    m = json.loads((tmp_path / "b.manifest.json").read_text())
    rejected = m["rejected"]["reasons"]
    assert {k: (v["count"], v["first"][0].split(" ")[0]) for k, v in rejected.items()} == {
        "missing_role": (1, f"{src}:2"), "non_string_content": (1, f"{src}:3"), "empty_conversation": (1, f"{src}:4"),
        "template_error": (1, f"{src}:5"), "invalid_json": (1, f"{src}:6"), "no_loss_tokens": (1, f"{src}:7")}
    assert "unknown role tool" in rejected["template_error"]["first"][0]
    assert m["chat"]["conversations"] == 2
    r = smol("data", "prepare", src, "--format", "chat", "--tokenizer", GGUF, "--chat-template", tmp_path / "t.jinja",
             "--out", tmp_path / "strict.bin", "--strict", check=False)
    assert r.returncode == 1 and f"{src}:2: missing_role" in r.stderr
    assert not (tmp_path / "strict.bin").exists() and not (tmp_path / "strict.manifest.json").exists()


def best_fit_decreasing(lengths, capacity):
    bins = []   # [room, items]
    for i in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        fits = [b for b in bins if b[0] >= lengths[i]]
        if fits:
            b = min(fits, key=lambda b: b[0])
        else:
            b = [capacity, []]
            bins.append(b)
        b[0] -= lengths[i]
        b[1].append(i)
    return bins


def test_packing_is_best_fit_decreasing_and_overflow_is_counted(smol, tmp_path, tok):
    rng = np.random.default_rng(3)
    words = "alpha beta gamma delta epsilon zeta eta theta iota kappa".split()
    convs = []
    for _ in range(40):
        q = " ".join(rng.choice(words, rng.integers(1, 12)))
        a = " ".join(rng.choice(words, rng.integers(1, 40)))
        convs.append([{"role": "user", "content": q}, {"role": "assistant", "content": a}])
    src = write_jsonl(tmp_path / "p.jsonl", convs)
    T = 64
    smol("data", "prepare", src, "--format", "chat", "--tokenizer", GGUF, "--out", tmp_path / "p.bin", "--seq-len", T)
    docs, masks = read_shard(tmp_path / "p.bin")
    template = hf_environment().from_string(templates()["smollm2"])
    over = sum(len(tok.encode(template.render(messages=c), add_special_tokens=False).ids) > T + 1 for c in convs)
    assert over > 0
    packing = json.loads((tmp_path / "p.manifest.json").read_text())["chat"]["packing"]
    assert packing["truncated"] == over and all(len(d) <= T + 1 for d in docs)
    lengths = [len(d) - 1 for d in docs]
    bins = best_fit_decreasing(lengths, T)
    assert packing["sequences"] == len(bins)
    assert packing["efficiency"] == pytest.approx(sum(lengths) / (len(bins) * T), abs=1e-4)
    smol("data", "prepare", src, "--format", "chat", "--tokenizer", GGUF, "--out", tmp_path / "d.bin", "--seq-len", T,
         "--overflow", "drop")
    dropped = json.loads((tmp_path / "d.manifest.json").read_text())["chat"]
    assert dropped["packing"]["dropped"] == over and dropped["conversations"] == len(convs) - over


def test_first_sft_step_matches_numpy_conversation_by_conversation(smol, tmp_path, tok):
    """Packed rows with intra-document masking and restarted positions must give exactly the loss of
    each conversation run alone, over its assistant tokens only: their mean per token, or (with
    loss_normalization: sequence) the mean of the conversations' means."""
    src = write_jsonl(tmp_path / "chat.jsonl", CONVERSATIONS)
    T = 128
    smol("data", "prepare", src, "--format", "chat", "--tokenizer", GGUF, "--out", tmp_path / "chat.bin", "--seq-len", T)
    docs, masks = read_shard(tmp_path / "chat.bin")
    rows = json.loads((tmp_path / "chat.manifest.json").read_text())["chat"]["packing"]["sequences"]
    assert rows < len(docs)   # several conversations share a row
    ours = {}
    for norm in ["token", "sequence"]:
        (tmp_path / f"{norm}.yaml").write_text(f"""
model: {{init_from: {GGUF}}}
optimizer: {{lr: 0.0, weight_decay: 0.0, grad_clip: 0.0}}
schedule: {{type: constant, warmup_steps: 0}}
data: {{train: [chat.bin], validation_fraction: 0.0}}
training: {{objective: sft, loss_normalization: {norm}, seq_len: {T}, micro_batch: 1, tokens_per_batch: {rows * T}, steps: 1,
           eval_every: 0, checkpoint_every: 0, seed: 1, peak_gflops: 100, sample_tokens: 0}}
""")
        smol("train", tmp_path / f"{norm}.yaml", "--out", tmp_path / f"run-{norm}")
        ours[norm] = json.loads((tmp_path / f"run-{norm}/metrics.jsonl").read_text().splitlines()[0])["loss"]
    ref = numpy_reference()
    losses, counts = [], []
    for ids, mask in zip(docs, masks):
        targets = [t if m else -1 for t, m in zip(ids[1:], mask[1:])]
        _, loss, _ = ref.forward_backward(np.array(ids[:-1]), np.array(targets), 1, len(ids) - 1, grad=False)
        losses.append(loss)
        counts.append(sum(t >= 0 for t in targets))
    per_token = sum(l * n for l, n in zip(losses, counts)) / sum(counts)
    per_sequence = sum(losses) / len(losses)
    assert abs(ours["token"] - per_token) <= 1e-3, (ours, per_token)
    assert abs(ours["sequence"] - per_sequence) <= 1e-3, (ours, per_sequence)
    assert abs(per_token - per_sequence) > 1e-2   # the two means differ on this data


def test_sft_refuses_data_that_is_not_chat_and_pretraining_refuses_chat(smol, tmp_path):
    src = write_jsonl(tmp_path / "chat.jsonl", CONVERSATIONS)
    smol("data", "prepare", src, "--format", "chat", "--tokenizer", GGUF, "--out", tmp_path / "chat.bin", "--seq-len", 128)
    (tmp_path / "text.txt").write_text("plain text for pretraining. " * 40)
    smol("data", "prepare", tmp_path / "text.txt", "--tokenizer", GGUF, "--out", tmp_path / "text.bin")
    base = f"model: {{init_from: {GGUF}}}\ndata: {{train: [DATA]}}\ntraining: {{objective: OBJ, seq_len: 64, micro_batch: 1, steps: 1, eval_every: 0, checkpoint_every: 0, sample_tokens: 0, peak_gflops: 100}}\n"
    (tmp_path / "a.yaml").write_text(base.replace("DATA", "text.bin").replace("OBJ", "sft"))
    r = smol("train", tmp_path / "a.yaml", "--out", tmp_path / "ra", check=False)
    assert r.returncode == 1 and "text.bin has no loss mask" in r.stderr
    (tmp_path / "b.yaml").write_text(base.replace("DATA", "chat.bin").replace("OBJ", "pretrain"))
    r = smol("train", tmp_path / "b.yaml", "--out", tmp_path / "rb", check=False)
    assert r.returncode == 1 and "training.objective: sft" in r.stderr
    # Data rendered through another template than the model's is refused at train start.
    (tmp_path / "gen.jinja").write_text(CHATML_GEN)
    smol("data", "prepare", src, "--format", "chat", "--tokenizer", GGUF, "--chat-template", tmp_path / "gen.jinja",
         "--out", tmp_path / "other.bin")
    (tmp_path / "c.yaml").write_text(base.replace("DATA", "other.bin").replace("OBJ", "sft"))
    r = smol("train", tmp_path / "c.yaml", "--out", tmp_path / "rc", check=False)
    assert r.returncode == 1 and "another chat template" in r.stderr
