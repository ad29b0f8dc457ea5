"""`smol export MODEL OUT.gguf --type f32|f16|q8_0`: the file read by the `gguf` package (tensors
against the source's own, dequantised by `gguf`; tokenizer, chat template, special tokens) and run
by llama.cpp through `llama-cpp-python`: greedy tokens equal smol's on the same file for f32 and
f16; for q8_0, llama.cpp's logits differ from smol's float32 ones by no more than llama.cpp's own
q8_0 differs from its f32."""
import json
import subprocess

import numpy as np
import pytest

from conftest import smol_binary
from smollm2 import GGUF

PROMPTS = ["What is the capital of France?", "Write a haiku about the sea.", "List three prime numbers."]


def field(reader, key):
    f = reader.fields[key]
    if len(f.data) == 1 and f.types[0].name != "ARRAY":
        v = f.parts[f.data[0]]
        return bytes(v).decode() if f.types[0].name == "STRING" else v[0].item()
    return [bytes(f.parts[i]).decode() if f.types[-1].name == "STRING" else f.parts[i][0].item() for i in f.data]


@pytest.fixture(scope="module")
def exported(smol, tmp_path_factory):
    d = tmp_path_factory.mktemp("gguf")
    for t in ["f32", "f16", "q8_0"]:
        smol("export", GGUF, d / f"m.{t}.gguf", "--type", t)
    return d


def test_the_gguf_package_reads_what_was_written(exported):
    import gguf
    src = gguf.GGUFReader(str(GGUF))
    source = {t.name: gguf.quants.dequantize(t.data, t.tensor_type) for t in src.tensors}
    for t in ["f32", "f16", "q8_0"]:
        r = gguf.GGUFReader(str(exported / f"m.{t}.gguf"))
        assert field(r, "general.architecture") == "llama"
        for key in ["llama.embedding_length", "llama.block_count", "llama.attention.head_count", "llama.attention.head_count_kv",
                    "llama.feed_forward_length", "llama.context_length", "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
                    "tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.chat_template"]:
            assert field(r, key) == field(src, key), key
        assert field(r, "tokenizer.ggml.tokens") == field(src, "tokenizer.ggml.tokens")
        assert field(r, "tokenizer.ggml.merges") == field(src, "tokenizer.ggml.merges")
        assert field(r, "tokenizer.ggml.token_type") == field(src, "tokenizer.ggml.token_type")
        assert {x.name for x in r.tensors} == set(source)
        for x in r.tensors:
            w = gguf.quants.dequantize(x.data, x.tensor_type)
            s = source[x.name]
            assert w.shape == s.shape, x.name
            if t == "f32" or x.tensor_type.name == "F32":
                assert np.array_equal(w, s), x.name   # q/k rows permuted back exactly as the source has them
            elif t == "f16":
                assert np.allclose(w, s.astype(np.float16).astype(np.float32), rtol=0, atol=0), x.name
            else:
                # Half a step, plus the f16 rounding of the scale (relative 2⁻¹¹) over up to 127 steps.
                step = np.abs(s.reshape(-1, 32)).max(1, keepdims=True) / 127
                assert (np.abs(w.reshape(-1, 32) - s.reshape(-1, 32)) <= step * (0.5 + 127 * 2 ** -11) + 1e-6).all(), x.name


def llama(path):
    from llama_cpp import Llama
    return Llama(model_path=str(path), n_ctx=256, n_threads=2, logits_all=True, verbose=False)


def chat_prompt(question):
    return ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
            f"<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n")


def llama_greedy(llm, ids, n):
    llm.reset()
    llm.eval(ids)
    out = []
    for _ in range(n):
        nxt = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        if nxt == llm.token_eos():
            break
        out.append(nxt)
        llm.eval([nxt])
    return out


@pytest.mark.parametrize("type_", ["f32", "f16"])
def test_llama_cpp_decodes_the_same_tokens_as_smol(exported, type_):
    path = exported / f"m.{type_}.gguf"
    llm = llama(path)
    for q in PROMPTS:
        r = subprocess.run([smol_binary(), "generate", str(path), "--chat", "--prompt", q, "--greedy", "--max-tokens", "24", "--json"],
                           capture_output=True, text=True, check=True)
        ours = json.loads(r.stdout)
        ids = llm.tokenize(chat_prompt(q).encode(), add_bos=False, special=True)
        assert ids == ours["prompt_ids"]   # llama.cpp tokenises the chat prompt as smol does
        assert llama_greedy(llm, ids, 24) == ours["generated_ids"], q


def test_q8_0_logits_are_within_quantisation_error(exported):
    ids = [1, 9690, 198, 2683, 359, 253, 5356, 5646, 28, 2]
    r = subprocess.run([smol_binary(), "dev", "logits", str(exported / "m.f32.gguf"), "--ids", ",".join(map(str, ids))],
                       capture_output=True, text=True, check=True)
    ours = np.array(json.loads(r.stdout)["logits"], dtype=np.float64)
    last = {}
    for t in ["f32", "q8_0"]:
        llm = llama(exported / f"m.{t}.gguf")
        llm.eval(ids)
        last[t] = np.array(llm.scores[len(ids) - 1], dtype=np.float64)
    rms = lambda x: float(np.sqrt((x ** 2).mean()))
    quantisation = rms(last["q8_0"] - last["f32"])
    against_ours = rms(last["q8_0"] - ours)
    print(f"q8_0 logits: rms {against_ours:.4f} from smol's f32, llama.cpp's own f32 -> q8_0 rms {quantisation:.4f}, "
          f"f32: rms {rms(last['f32'] - ours):.4f}, logits rms {rms(ours):.3f}")
    assert rms(last["f32"] - ours) < 0.02
    assert against_ours <= 1.2 * quantisation + 0.01 and against_ours < 0.1 * rms(ours)


def test_bad_types_and_existing_files_are_clear_errors(smol, exported, tmp_path):
    r = smol("export", GGUF, tmp_path / "x.gguf", "--type", "q3_k", check=False)
    assert r.returncode != 0 and "'q3_k' is invalid for '--type" in r.stderr and not (tmp_path / "x.gguf").exists()
    r = smol("export", GGUF, exported / "m.f32.gguf", "--type", "f32", check=False)
    assert r.returncode == 1 and "already exists" in r.stderr
    r = smol("export", GGUF, tmp_path / "dir", "--type", "f16", check=False)
    assert r.returncode != 0 and "--type applies to a .gguf output" in r.stderr
