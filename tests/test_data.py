"""`smol data prepare` and `smol data decontaminate` against independent references: shards read
with NumPy from the documented format, ids from Hugging Face `tokenizers`, hand-written bad records
with their expected reasons and line numbers, and n-gram overlap computed here in Python."""
import json
import signal
import subprocess
import time
import unicodedata

import numpy as np
import pytest

from conftest import ROOT, smol_binary


def read_shard(path):
    raw = open(path, "rb").read()
    assert raw[:8] == b"SMOLSHRD"
    width, n, d = int.from_bytes(raw[12:16], "little"), int.from_bytes(raw[16:24], "little"), int.from_bytes(raw[24:32], "little")
    tokens = np.frombuffer(raw, dtype=np.uint16 if width == 2 else np.uint32, count=n, offset=64)
    start = 64 + ((n * width + 7) // 8) * 8
    starts = np.frombuffer(raw, dtype=np.uint64, count=d + 1, offset=start)
    return [tokens[starts[i]:starts[i + 1]].tolist() for i in range(d)]


BAD = [
    '{"text": "first good document"}', '{"text": 5}', '{"body": "no text"}', "not json {", "",
    '{"text": "   "}', b'{"text": "caf\xe9"}', '{"text": "second \\u00e9 good"}', "[1, 2]",
]


def write_lines(path, lines):
    with open(path, "wb") as f:
        for l in lines:
            f.write((l if isinstance(l, bytes) else l.encode()) + b"\n")


def test_bad_records_are_counted_by_reason_with_their_lines(smol, tmp_path):
    src = tmp_path / "bad.jsonl"
    write_lines(src, BAD)
    m = json.loads(smol("data", "prepare", src, "--out", tmp_path / "out", "--json").stdout)
    reasons = {k: v for k, v in m["rejected"]["reasons"].items()}
    where = lambda k: [int(x.rsplit(":", 1)[1]) for x in reasons[k]["first"]]
    assert where("text field 'text' is not a string") == [2]
    assert where("missing text field 'text'") == [3, 9]
    assert where("malformed JSON") == [4]
    assert where("blank line") == [5]
    assert where("empty document") == [6]
    assert where("invalid UTF-8") == [7]
    assert m["documents"] == 2 and sum(v["count"] for v in reasons.values()) == 7
    docs = read_shard(tmp_path / "out" / "bad-00000.bin")
    assert [bytes(d[:-1]).decode() for d in docs] == ["first good document", "second é good"]
    assert all(d[-1] == 256 for d in docs)
    # Strict: the first bad record is an error naming file and line; nothing is written.
    r = smol("data", "prepare", src, "--out", tmp_path / "strict", "--strict", check=False)
    assert r.returncode == 1 and "bad.jsonl:2" in r.stderr
    assert not list((tmp_path / "strict").glob("*.bin")) and not list((tmp_path / "strict").glob("*.json"))
    # An existing dataset is not replaced without --force.
    r = smol("data", "prepare", src, "--out", tmp_path / "out", check=False)
    assert r.returncode == 1 and "already exists" in r.stderr and (tmp_path / "out" / "bad-00000.bin").exists()


def test_prepare_matches_hf_tokenizers_over_dirs_globs_and_shards(smol, tmp_path):
    import tokenizers  # installed by scripts/install.sh
    tok = tmp_path / "tok.json"
    smol("tokenizer", "train", ROOT / "data/corpus/prose.txt", "--vocab-size", "600", "--special", "<|endoftext|>", "--out", tok)
    hf = tokenizers.Tokenizer.from_file(str(tok))
    corpus = tmp_path / "corpus"
    (corpus / "sub").mkdir(parents=True)
    paragraphs = (ROOT / "data/corpus/prose.txt").read_text().split("\n\n")[:300]
    (corpus / "a.txt").write_text("\n\n".join(paragraphs[:150]))
    write_lines(corpus / "sub" / "b.jsonl", [json.dumps({"content": p}) for p in paragraphs[150:]])
    outs = {}
    for threads in ("1", "2"):
        out = tmp_path / f"out{threads}"
        m = json.loads(smol("data", "prepare", corpus, "--tokenizer", tok, "--text-field", "content", "--out", out,
                            "--name", "mix", "--shard-tokens", "5000", "--json", env={"SMOL_THREADS": threads}).stdout)
        outs[threads] = [open(p, "rb").read() for p in sorted(out.glob("mix-*.bin"))]
        assert len(m["shards"]) == len(outs[threads]) > 1
    assert outs["1"] == outs["2"], "output depends on the thread count"
    docs = [d for p in sorted((tmp_path / "out2").glob("mix-*.bin")) for d in read_shard(p)]
    # .txt blocks lose their surrounding newlines; .jsonl texts are kept as they are.
    expected_texts = [p.strip("\n") for p in paragraphs[:150] if p.strip()] + [p for p in paragraphs[150:] if p.strip()]
    eos = hf.token_to_id("<|endoftext|>")
    assert len(docs) == len(expected_texts) == m["documents"]
    for d, text in zip(docs, expected_texts):
        assert d == hf.encode(text).ids + [eos]
    assert m["tokens"] == sum(map(len, docs)) and m["tokenizer_hash"]
    # A glob names the same files.
    g = json.loads(smol("data", "prepare", str(corpus / "*.txt"), "--tokenizer", tok, "--out", tmp_path / "g.bin", "--json").stdout)
    assert g["documents"] == len([p for p in paragraphs[:150] if p.strip()])


def test_killed_prepare_leaves_no_complete_looking_shard(tmp_path):
    big = tmp_path / "big.txt"
    big.write_text(((ROOT / "data/corpus/prose.txt").read_text() + "\n\n") * 6)
    out = tmp_path / "out"
    p = subprocess.Popen([smol_binary(), "data", "prepare", str(big), "--out", str(out), "--shard-tokens", "20000"])
    time.sleep(0.4)
    p.send_signal(signal.SIGKILL)
    p.wait()
    if not (out / "big.manifest.json").exists():
        assert not list(out.glob("*.bin")), "a killed prepare left shards named as complete"


def words(text):
    text = unicodedata.normalize("NFKC", text).lower()
    out, cur = [], []
    for ch in text:
        cat = unicodedata.category(ch)
        if cat in ("Mn", "Me", "Mc", "Cf"):
            continue
        if cat[0] in "LN":
            cur.append(ch)
        elif cur:
            out.append("".join(cur)); cur = []
    if cur:
        out.append("".join(cur))
    return out


def test_decontaminate_finds_the_documents_that_share_13_grams(smol, tmp_path):
    paragraphs = [p for p in (ROOT / "data/corpus/prose.txt").read_text().split("\n\n") if len(p.split()) > 40][:60]
    corpus = tmp_path / "train.txt"
    corpus.write_text("\n\n".join(paragraphs))
    leaked = " ".join(paragraphs[7].split()[5:25]).upper()            # 20 words, case changed: still a hit
    arabic = "كَتَبَ الطَّالِبُ الدَّرْسَ في الصباح ثم ذهب إلى المدرسة مع أصدقائه الكثيرين جدا اليوم"
    (tmp_path / "extra.txt").write_text(arabic.replace("َ", "").replace("ُ", "").replace("ّ", "").replace("ْ", ""))
    task = tmp_path / "qa.jsonl"
    write_lines(task, [json.dumps({"query": leaked, "choices": ["a", "b"], "gold": 0}),
                       json.dumps({"query": "an item that appears nowhere in the training text at all, not even close", "choices": ["x"]}),
                       json.dumps({"query": "too short"}), json.dumps({"query": arabic})])
    r = json.loads(smol("data", "decontaminate", corpus, tmp_path / "extra.txt", "--tasks", task, "--n", "13",
                        "--clean", tmp_path / "clean.jsonl", "--json").stdout)
    # Reference: which documents share a 13-gram with which item, computed here.
    docs = paragraphs + [(tmp_path / "extra.txt").read_text()]
    items = [leaked + " a b", "an item that appears nowhere in the training text at all, not even close x", "too short", arabic]
    def grams(w, n):
        return {tuple(w[i:i + n]) for i in range(len(w) - n + 1)}
    expected = set()
    for k, item in enumerate(items):
        iw = words(item)
        if len(iw) < 8:
            continue
        ig = grams(iw, min(13, len(iw)))
        for j, d in enumerate(docs):
            if ig & grams(words(d), min(13, len(iw))):
                expected.add((k, j))
    assert (0, 7) in expected and (3, len(docs) - 1) in expected
    task_report = r["tasks"][0]
    assert task_report["items"] == 4 and task_report["too_short"] == 1
    assert sorted(task_report["touched_items"]) == sorted({k for k, _ in expected})
    assert r["contaminated_documents"] == len({j for _, j in expected})
    kept = [json.loads(l)["text"] for l in (tmp_path / "clean.jsonl").read_text().splitlines()]
    assert len(kept) == len(docs) - r["contaminated_documents"] and paragraphs[7] not in kept


def test_training_checks_the_datas_tokenizer_by_fingerprint(smol, tmp_path):
    """The trainer refuses shards whose manifest names another tokenizer, and accepts the same
    tokenizer whatever its file's layout: by the fingerprint new manifests hold (vocabulary in id
    order, milliseconds), and by the key-sorted one manifests held until 2026-12 (the fixture, made
    by that version), though the tokenizer file's bytes here match neither."""
    import shutil
    from conftest import SMALL
    fixture = ROOT / "tests/fixtures/legacy_manifest"
    tok = json.loads((fixture / "tok.json").read_text())
    (tmp_path / "tok").mkdir()
    (tmp_path / "tok/tokenizer.json").write_text(json.dumps(tok, indent=1, ensure_ascii=True))   # same tokenizer, other bytes
    for name in ("legacy", "fresh", "other"):
        (tmp_path / name).mkdir()
    for f in ("doc.bin", "doc.manifest.json"):
        shutil.copy(fixture / f, tmp_path / "legacy" / f)
    (tmp_path / "doc.txt").write_text((ROOT / "data/corpus/prose.txt").read_text()[:3000])
    fresh = json.loads(smol("data", "prepare", tmp_path / "doc.txt", "--tokenizer", tmp_path / "tok/tokenizer.json",
                            "--out", tmp_path / "fresh/doc.bin", "--json").stdout)
    legacy = json.loads((tmp_path / "legacy/doc.manifest.json").read_text())
    assert fresh["tokenizer_hash"] != legacy["tokenizer_hash"]
    assert (tmp_path / "fresh/doc.bin").read_bytes() == (tmp_path / "legacy/doc.bin").read_bytes()
    m = dict(legacy, tokenizer_hash="0123456789abcdef")
    shutil.copy(fixture / "doc.bin", tmp_path / "other/doc.bin")
    (tmp_path / "other/doc.manifest.json").write_text(json.dumps(m))
    for name, ok in (("legacy", True), ("fresh", True), ("other", False)):
        cfg = tmp_path / f"{name}.yaml"
        cfg.write_text(SMALL.replace("vocab_size: 264", "vocab_size: 320").replace("validation_fraction: 0.02", "validation_fraction: 0.1")
                       .replace("train: [SHARDS/prose.bin, SHARDS/code.bin]", f"train: [{tmp_path / name / 'doc.bin'}]\n  tokenizer: {tmp_path / 'tok'}")
                       .replace("steps: 24", "steps: 1"))
        r = smol("train", cfg, "--out", tmp_path / f"run-{name}", "--no-store", check=False)
        if ok:
            assert r.returncode == 0, r.stderr
        else:
            assert r.returncode == 1 and "was tokenised with" in r.stderr and "0123456789abcdef" in r.stderr, r.stderr
