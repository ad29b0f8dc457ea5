"""Mutation fuzzing from the hostile test pass: small valid files (a GGUF and a safetensors checkpoint
of a tiny model, tokenizer.json, a training YAML, a corpus JSONL, chat JSONL, a task YAML and its
items) mutated at random (bytes flipped, runs overwritten with extreme integers, truncated, spliced),
each fed to the command that reads it. Whatever the input, `smol` must end with an exit code, never
a signal (a Swift trap is SIGILL / SIGTRAP, a crash SIGSEGV). The mutations come from a fixed seed."""
import json
import random
import shutil
import subprocess

import pytest

from conftest import ROOT, SMALL, smol_binary

CASES = 50


def mutate(data: bytes, rng: random.Random) -> bytes:
    b = bytearray(data)
    kind = rng.randrange(5)
    if kind == 0:                                     # flip a few bytes
        for _ in range(rng.randint(1, 8)):
            b[rng.randrange(len(b))] = rng.randrange(256)
    elif kind == 1:                                   # an extreme integer somewhere
        at = rng.randrange(max(1, len(b) - 8))
        b[at:at + 8] = rng.choice([b"\xff" * 8, b"\x00" * 8, (2 ** 31).to_bytes(8, "little"), (2 ** 63 - 1).to_bytes(8, "little")])
    elif kind == 2:                                   # truncated
        b = b[:rng.randrange(len(b))]
    elif kind == 3:                                   # a run duplicated elsewhere
        a = rng.randrange(len(b)); n = rng.randint(1, 64)
        at = rng.randrange(len(b))
        b[at:at] = b[a:a + n]
    else:                                             # text-level: a digit or bracket changed
        text_positions = [i for i, c in enumerate(b) if chr(c) in "0123456789[]{}:,\"-"]
        for _ in range(rng.randint(1, 4)):
            if text_positions:
                b[rng.choice(text_positions)] = ord(rng.choice("9[]{}:,\"-0e."))
    return bytes(b)


@pytest.fixture(scope="module")
def seeds(smol, tmp_path_factory):
    d = tmp_path_factory.mktemp("fuzz")
    smol("data", "prepare", ROOT / "data/corpus/prose.txt", "--out", d / "prose.bin")
    cfg = d / "tiny.yaml"
    cfg.write_text(SMALL.replace("SHARDS/prose.bin, SHARDS/code.bin", str(d / "prose.bin")).replace("steps: 24", "steps: 2")
                   .replace("checkpoint_every: 5", "checkpoint_every: 2").replace("  no_rope_layer_interval: 2\n", ""))
    smol("train", cfg, "--out", d / "run", "--no-store")
    ckpt = d / "run/checkpoints/step_00000002"
    smol("export", d / "run", d / "tiny.gguf", "--type", "f32")
    smol("tokenizer", "train", ROOT / "data/corpus/prose.txt", "--vocab-size", "300", "--special", "<|endoftext|>",
         "--out", d / "tok.json")
    (d / "corpus.jsonl").write_text("".join(json.dumps({"text": f"document {i} with some text"}) + "\n" for i in range(20)))
    (d / "chat.jsonl").write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"q{i}"},
                                                                   {"role": "assistant", "content": f"a{i}"}]}) + "\n"
                                          for i in range(10)))
    (d / "chat.jinja").write_text("{% for m in messages %}<|endoftext|>{{ m.role }}\n{{ m.content }}<|endoftext|>\n{% endfor %}")
    (d / "items.jsonl").write_text("".join(json.dumps({"query": f"{i} plus one is", "choices": [str(i + 1), str(i + 2)], "gold": 0}) + "\n"
                                           for i in range(6)))
    (d / "task.yaml").write_text("name: fuzz\nversion: 1\nkind: multiple_choice\ndata: items.jsonl\nformulation: cloze\n"
                                 "metrics: [acc, acc_norm]\nnum_fewshot: 1\n")
    return {"dir": d, "cfg": cfg, "ckpt": ckpt}


def run(args, cwd):
    try:
        return subprocess.run([smol_binary(), *map(str, args)], capture_output=True, text=True, timeout=60, cwd=cwd).returncode
    except subprocess.TimeoutExpired:
        return "timeout"


def fuzz(seeds, name, source, command, tmp_path, copy_dir=False, cases=None):
    rng = random.Random(name)
    original = source.read_bytes()
    signals = []
    for case in range(cases or CASES):
        target = tmp_path / f"{case}-{source.name}"
        if copy_dir:
            shutil.copytree(source.parent, target)
            path = target / source.name
        else:
            path = target
        path.write_bytes(mutate(original, rng))
        code = run(command(target if copy_dir else path), seeds["dir"])
        if code == "timeout" or code < 0:
            signals.append((case, code))
        if copy_dir:
            shutil.rmtree(target)
        else:
            path.unlink()
    assert not signals, f"{name}: cases ended by a signal or a hang: {signals}"


def test_gguf(seeds, tmp_path):
    fuzz(seeds, "gguf", seeds["dir"] / "tiny.gguf", lambda p: ["generate", p, "--prompt", "the", "--max-tokens", "2"], tmp_path)


def test_safetensors_checkpoint(seeds, tmp_path):
    fuzz(seeds, "safetensors", seeds["ckpt"] / "model.safetensors", lambda d: ["generate", d, "--prompt", "the", "--max-tokens", "2"],
         tmp_path, copy_dir=True)


def test_tokenizer_json(seeds, tmp_path):
    fuzz(seeds, "tokenizer", seeds["dir"] / "tok.json", lambda p: ["data", "prepare", seeds["dir"] / "corpus.jsonl", "--tokenizer", p,
                                                                 "--out", tmp_path / "t.bin", "--force"], tmp_path)


def test_training_yaml(seeds, tmp_path):
    fuzz(seeds, "yaml", seeds["cfg"], lambda p: ["params", p], tmp_path)


def test_corpus_jsonl(seeds, tmp_path):
    fuzz(seeds, "jsonl", seeds["dir"] / "corpus.jsonl", lambda p: ["data", "prepare", p, "--out", tmp_path / "c.bin", "--force"], tmp_path)


def test_chat_jsonl(seeds, tmp_path):
    fuzz(seeds, "chat", seeds["dir"] / "chat.jsonl",
         lambda p: ["data", "prepare", p, "--format", "chat", "--tokenizer", seeds["dir"] / "tiny.gguf",
                    "--chat-template", seeds["dir"] / "chat.jinja", "--out", tmp_path / "chat.bin", "--force"], tmp_path)


def test_task_files(seeds, tmp_path):
    shutil.copy(seeds["dir"] / "items.jsonl", tmp_path / "items.jsonl")   # what the mutated task files name
    fuzz(seeds, "task", seeds["dir"] / "task.yaml", lambda p: ["eval", seeds["dir"] / "tiny.gguf", "--tasks", p,
                                                            "--output", tmp_path / "e"], tmp_path)

    def with_task(items):
        task = items.with_suffix(".yaml")
        task.write_text((seeds["dir"] / "task.yaml").read_text().replace("items.jsonl", items.name))
        return ["eval", seeds["dir"] / "tiny.gguf", "--tasks", task, "--output", tmp_path / "e2"]
    fuzz(seeds, "items", seeds["dir"] / "items.jsonl", with_task, tmp_path)


def test_lm_eval_and_needle_task_files(seeds, tmp_path):
    d = seeds["dir"]
    (d / "lm.jsonl").write_text("".join(json.dumps({"q": f"{i} plus one is", "c": [str(i + 1), str(i + 2)], "l": 0}) + "\n" for i in range(4)))
    (d / "lm.yaml").write_text("task: lm\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: lm.jsonl\ntest_split: test\n"
                               "output_type: multiple_choice\ndescription: \"{{q}}\\n\"\ndoc_to_text: \"{{q}}\"\n"
                               "doc_to_choice: \"{{c}}\"\ndoc_to_target: l\nmetric_list:\n  - metric: acc\nmetadata: {version: 1.0}\n")
    (d / "needle.yaml").write_text("name: needle\nkind: needle\ndata: corpus.jsonl\nlengths: [40, 64]\ndepths: [0, 100]\n"
                                   "needles_per_cell: 1\nmax_tokens: 2\n")
    for name in ("lm.jsonl", "corpus.jsonl"):
        shutil.copy(d / name, tmp_path / name)
    for name in ("lm", "needle"):
        fuzz(seeds, name, d / f"{name}.yaml", lambda p: ["eval", d / "tiny.gguf", "--tasks", p, "--output", tmp_path / "o"], tmp_path, cases=30)
