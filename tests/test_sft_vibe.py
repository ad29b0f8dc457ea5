"""The automatic vibe check (the playbook's SmolLM3 story: evaluations said it followed
instructions, a plain chat showed it ignored system prompts). SmolLM2-135M-Instruct ignores a
system prompt such as "Begin every answer with the word 'Eureka'." today. A short SFT on a small set
written here (the rule with words drawn from a list, the model's own answers after the word, and
plain conversations without a system prompt) teaches it to obey: on held-out questions and words it
never saw, greedy answers follow the system prompt significantly more often (exact McNemar test on
the paired answers), and answers without a system prompt do not start taking up the words. The same
run on the same data with the system messages stripped upstream shows no gain, and the manifests'
system share shows that difference before any training."""
import json
import math
import random
import sqlite3
import subprocess

import pytest

from conftest import smol_binary
from smollm2 import GGUF

QUESTIONS = [
    "Is the sky blue?", "Can fish fly?", "Is water wet?", "Do cats bark?", "Is Paris in France?", "What color is grass?",
    "How many legs does a dog have?", "What is two plus two?", "Is ice cold?", "Do birds have feathers?",
    "What is the capital of Italy?", "Is the sun a star?", "Can penguins swim?", "What do bees make?", "Is gold a metal?",
    "How many days are in a week?", "What is frozen water called?", "Do trees have roots?", "Is the moon made of cheese?",
    "What animal says moo?", "Is fire hot?", "Can humans breathe underwater?", "What color is a banana?",
    "Do snakes have legs?", "Is Tokyo in Japan?", "How many hours are in a day?", "What is the opposite of up?",
    "Is salt sweet?", "Do plants need sunlight?", "What shape is a ball?",
    # held out
    "Is a whale a fish?", "What season comes after winter?", "Can dogs see colors?", "Is the Earth round?",
    "What do cows drink?", "How many wheels does a bicycle have?", "Is rain wet?", "What is the largest ocean?",
    "Do spiders have eight legs?", "Is chocolate sweet?", "Is Mars a planet?", "Can a car fly?",
    "What do you call a baby cat?", "Is milk white?", "How many months are in a year?", "Do fish sleep?",
    "What color is snow?", "Is a tomato a fruit?",
]
TRAIN_Q, HELD_Q = QUESTIONS[:30], QUESTIONS[30:]
WORDS = ["Ahoy", "Bingo", "Cheers", "Howdy", "Indeed", "Splendid", "Righto", "Marvelous", "Gadzooks", "Huzzah",
         "Zounds", "Jolly", "Bravo", "Crikey", "Yippee", "Alas", "Behold", "Greetings", "Hark", "Kudos"]
HELD_WORDS = ["Eureka", "Voila", "Hooray", "Presto", "Wowza", "Shazam", "Tada", "Bazinga"]


def rule(word):
    return f"Begin every answer with the word '{word}'."


def generate(model, conversations, path, max_tokens=10):
    path.write_text("".join(json.dumps({"messages": c}) + "\n" for c in conversations))
    r = subprocess.run([smol_binary(), "generate", str(model), "--batch", str(path), "--greedy", "--max-tokens", str(max_tokens)],
                       capture_output=True, text=True, check=True)
    return [json.loads(line)["text"] for line in r.stdout.splitlines()]


def follows(answer, word):
    return answer.strip().lower().startswith(word.lower())


def mcnemar_exact(gained, lost):
    """Two-sided exact McNemar p-value from the discordant pairs."""
    n = gained + lost
    if n == 0:
        return 1.0
    k = min(gained, lost)
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n)


def test_mcnemar_on_hand_computed_cases():
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(6, 0) == pytest.approx(2 / 64)          # 2 · 0.5⁶
    assert mcnemar_exact(10, 2) == pytest.approx(2 * (1 + 12 + 66) / 4096)


@pytest.fixture(scope="module")
def vibe(smol, tmp_path_factory):
    d = tmp_path_factory.mktemp("vibe")
    rng = random.Random(0)
    # The model's own answers to the training questions: the data changes when it answers, not what.
    own = generate(GGUF, [[{"role": "user", "content": q}] for q in TRAIN_Q], d / "own.jsonl", max_tokens=28)
    conversations = []
    for q, a in zip(TRAIN_Q, own):
        a = a.strip().split("\n")[0]
        for _ in range(2):
            w = rng.choice(WORDS)
            conversations.append([{"role": "system", "content": rule(w)}, {"role": "user", "content": q},
                                  {"role": "assistant", "content": f"{w}! {a}"}])
        conversations.append([{"role": "user", "content": q}, {"role": "assistant", "content": a}])
    rng.shuffle(conversations)
    runs, manifests = {}, {}
    for name, convs in [("sft", conversations),
                        ("stripped", [[m for m in c if m["role"] != "system"] for c in conversations])]:
        (d / f"{name}.jsonl").write_text("".join(json.dumps({"messages": c}) + "\n" for c in convs))
        smol("data", "prepare", d / f"{name}.jsonl", "--format", "chat", "--tokenizer", GGUF, "--out", d / f"{name}.bin",
             "--seq-len", 128)
        manifests[name] = json.loads((d / f"{name}.manifest.json").read_text())["chat"]
        (d / f"{name}.yaml").write_text(f"""
model: {{init_from: {GGUF}}}
optimizer: {{lr: 1.5e-4, weight_decay: 0.0, grad_clip: 1.0}}
schedule: {{type: constant, warmup_steps: 0}}
data: {{train: [{name}.bin], validation_fraction: 0.05}}
training: {{objective: sft, seq_len: 128, micro_batch: 4, steps: 12, eval_every: 12, eval_batches: 1,
           checkpoint_every: 12, seed: 5, peak_gflops: 100, sample_tokens: 0}}
""")
        r = smol("train", d / f"{name}.yaml", "--out", d / f"run_{name}")
        runs[name] = (d / f"run_{name}", r.stdout)
    held = [(HELD_WORDS[i % len(HELD_WORDS)], q) for i, q in enumerate(HELD_Q)]
    with_system = [[{"role": "system", "content": rule(w)}, {"role": "user", "content": q}] for w, q in held]
    without = [[{"role": "user", "content": q}] for q in HELD_Q]
    answers = {}
    for name, model in [("base", GGUF), ("sft", runs["sft"][0]), ("stripped", runs["stripped"][0])]:
        answers[name] = (generate(model, with_system, d / "held.jsonl"), generate(model, without, d / "plain.jsonl"))
    return {"dir": d, "held": held, "answers": answers, "manifests": manifests, "runs": runs}


def follow_counts(vibe, name):
    base = [follows(a, w) for a, (w, _) in zip(vibe["answers"]["base"][0], vibe["held"])]
    after = [follows(a, w) for a, (w, _) in zip(vibe["answers"][name][0], vibe["held"])]
    gained = sum(a and not b for a, b in zip(after, base))
    lost = sum(b and not a for a, b in zip(after, base))
    return sum(base), sum(after), mcnemar_exact(gained, lost)


def test_sft_teaches_the_model_to_obey_the_system_prompt(vibe):
    before, after, p = follow_counts(vibe, "sft")
    n = len(vibe["held"])
    print(f"follows the system prompt: {before}/{n} before, {after}/{n} after SFT (McNemar p = {p:.2g})")
    assert after >= before + n // 2 and p < 0.01


def test_answers_without_a_system_prompt_do_not_drift(vibe):
    words = [w.lower() for w in WORDS + HELD_WORDS]
    for name in ["base", "sft"]:
        plain = vibe["answers"][name][1]
        taken = sum(any(a.strip().lower().startswith(w) for w in words) for a in plain)
        print(f"{name}: {taken}/{len(plain)} answers without a system prompt start with a rule word")
        assert taken == 0


def test_stripped_system_messages_show_no_gain_and_the_manifest_says_why(vibe):
    before, after, p = follow_counts(vibe, "stripped")
    print(f"stripped upstream: {before} -> {after} of {len(vibe['held'])} (p = {p:.2g})")
    assert after <= before + 1 and p > 0.05
    assert vibe["manifests"]["sft"]["system_share"] == pytest.approx(2 / 3, abs=1e-3)
    assert vibe["manifests"]["stripped"]["system_share"] == 0
    assert "0.0% with a system message" in vibe["runs"]["stripped"][1]


def test_the_run_store_records_the_chat_data_and_held_out_loss(vibe):
    import os
    db = sqlite3.connect(os.environ["SMOL_STORE"])
    out_dir = str(vibe["runs"]["sft"][0])
    run_id, = db.execute("SELECT id FROM run WHERE output_dir LIKE ? ORDER BY id DESC LIMIT 1", (f"%{os.path.basename(out_dir)}",)).fetchone()
    message, = db.execute("SELECT message FROM event WHERE run_id = ? AND kind = 'chat_data'", (run_id,)).fetchone()
    report = json.loads(message)["report"]
    assert report["with_system"] == 60 and report["conversations"] == 90
    val, = db.execute("SELECT value FROM metric WHERE run_id = ? AND name = 'val_loss'", (run_id,)).fetchone()
    assert 0 < val < 3


def test_smol_chat_talks_to_the_run_through_its_template(vibe):
    r = subprocess.run([smol_binary(), "chat", str(vibe["runs"]["sft"][0]), "--system", rule("Eureka"), "--greedy",
                        "--max-tokens", "12"], input="Is rain wet?\n", capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "Eureka" in r.stdout
