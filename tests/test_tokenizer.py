"""Our byte-level BPE against Hugging Face `tokenizers` on tokenizers trained by `tokenizers` itself,
over English, code, Arabic with diacritics, CJK, emoji and ZWJ sequences, runs of whitespace,
digits, contractions and special tokens inside text."""
import json
import subprocess

import pytest

tokenizers = pytest.importorskip("tokenizers", reason="the test command installs tokenizers")
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers  # noqa: E402

from conftest import ROOT, smol_binary

SAMPLES = [
    "Hello world! It's a test; they're here, we've gone, I'm fine, you'll see, he'd go.",
    "def f(x):\n    return x ** 2  # square\n\n\tif x>0:\n\t\tpass\n",
    "كَتَبَ الطَّالِبُ الدَّرْسَ في 12 دقيقة.",
    "日本語のテキストと中文文本，混合English。",
    "Emoji 👍🏽 and family 👨‍👩‍👧‍👦 and flags 🇫🇷!",
    "Spaces:   three,\t\ttabs,\n\n\nnewlines   \n  trailing   ",
    "Numbers 1234567890 and 3.14159 and ١٢٣ and ⅫⅣ",
    "Special <|endoftext|> inside<|im_start|>text <|im_end|> ok",
    "'s 's 'S don't DON'T ''quoted''",
    "  leading spaces and a final space ",
    "",
    "\u00a0non-breaking\u2003em space\u3000ideographic",
]


def train(tmp_path, digits):
    tok = Tokenizer(models.BPE())
    pres = [pre_tokenizers.ByteLevel(add_prefix_space=False)]
    if digits:
        pres.insert(0, pre_tokenizers.Digits(individual_digits=True))
    tok.pre_tokenizer = pre_tokenizers.Sequence(pres) if digits else pres[0]
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=1200, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    files = [str(ROOT / "data/corpus/prose.txt"), str(ROOT / "data/corpus/code.txt")]
    tok.train(files, trainer)
    path = tmp_path / f"tok-{digits}.json"
    tok.save(str(path))
    return tok, path


@pytest.mark.parametrize("digits", [False, True])
def test_encode_matches_hf_tokenizers(tmp_path, digits):
    hf, path = train(tmp_path, digits)
    corpus = SAMPLES + [(ROOT / "data/corpus/code.txt").read_text()[:20000], (ROOT / "data/corpus/prose.txt").read_text()[:20000]]
    for text in corpus:
        expected = hf.encode(text).ids
        r = subprocess.run([smol_binary(), "tokenizer", "encode", "--tokenizer", str(path), "--json"], input=text.encode(),
                           capture_output=True, timeout=60)
        assert r.returncode == 0, r.stderr
        ours = json.loads(r.stdout)
        assert ours == expected, (text[:80], ours[:40], expected[:40])
        d = subprocess.run([smol_binary(), "tokenizer", "decode", "--tokenizer", str(path), "--json"], input=json.dumps(ours).encode(),
                           capture_output=True, timeout=60)
        assert json.loads(d.stdout)["text"] == text


def test_bad_tokenizer_file_is_a_clean_error(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text('{"model": {"type": "Unigram"}}')
    r = subprocess.run([smol_binary(), "tokenizer", "encode", "--tokenizer", str(p)], input=b"x", capture_output=True, text=False)
    assert r.returncode == 1 and b"bad.json" in r.stderr


def test_trained_tokenizer_loads_in_hf_and_encodes_identically(smol, tmp_path):
    out = tmp_path / "ours.json"
    stats = json.loads(smol("tokenizer", "train", ROOT / "data/corpus/prose.txt", ROOT / "data/corpus/code.txt",
                            "--vocab-size", "2048", "--special", "<|endoftext|>", "--special", "<|im_start|>",
                            "--special", "<|im_end|>", "--out", out, "--json").stdout)
    assert stats["vocab_size"] == 2048
    hf = Tokenizer.from_file(str(out))
    assert hf.get_vocab_size() == 2048
    assert [hf.token_to_id(t) for t in ("<|endoftext|>", "<|im_start|>", "<|im_end|>")] == [0, 1, 2]
    corpus = SAMPLES + [(ROOT / "data/corpus/code.txt").read_text()[:20000]]
    for text in corpus:
        expected = hf.encode(text).ids
        r = smol("tokenizer", "encode", "--tokenizer", out, "--json", "--file", _write(tmp_path, text))
        assert json.loads(r.stdout) == expected, text[:60]
    # merges learned from the corpus compress it: well under one token per byte
    prose = (ROOT / "data/corpus/prose.txt").read_text()[:50000]
    assert len(hf.encode(prose).ids) < 0.45 * len(prose.encode())
    bad = smol("tokenizer", "train", ROOT / "data/corpus/prose.txt", "--vocab-size", "100", "--out", tmp_path / "x.json", check=False)
    assert bad.returncode == 1 and "vocab-size" in bad.stderr


def _write(tmp_path, text):
    p = tmp_path / "input.txt"
    p.write_text(text)
    return p
