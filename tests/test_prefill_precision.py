"""`--prefill-precision bf16` on the real SmolLM2-135M-Instruct: the prompt's projections take
bf16-rounded inputs (AMX / AVX512-BF16) with float32 sums; attention, the last row's head and
single-token decoding stay as they are. Checked against the NumPy float64 forward that rounds the
same products' inputs (reference_llama: bf16=True, bf16_attention=False, bf16_head=False) and the
exact one, and the error `smol bench generate` reports against fp32 (its speed: bench/RESULTS.md).
`smol eval --precision bf16` scores through the same GEMMs (the head too): its log-likelihoods are
checked against the float64 reference with and without that rounding, and across batch sizes. On a
CPU without AVX512-BF16 the options fall back to fp32 with a notice, which is what the tests then
expect."""
import json

import numpy as np
import pytest

from smollm2 import GGUF, hf_tokenizer, numpy_reference, ref_logits
from test_bf16 import HAS_BF16
from test_eval import TASKS, lm_eval_split, log_softmax, run_eval
from test_kv_cache import PROMPT, rel


def logits(smol, precision):
    r = smol("dev", "logits", GGUF, "--prompt", PROMPT, "--prefill-precision", precision)
    out = json.loads(r.stdout)
    return out["ids"], np.array(out["logits"], np.float64), r.stderr


def test_bf16_prefill_is_the_rounded_reference(smol):
    ids, ours, notice = logits(smol, "bf16")
    _, ours32, _ = logits(smol, "fp32")
    if not HAS_BF16:
        assert "notice: precision bf16 requested" in notice and np.array_equal(ours, ours32)
        return
    assert notice == ""
    exact = numpy_reference()
    rounded = numpy_reference(bf16=True, bf16_attention=False, bf16_head=False)
    ref_r, ref_x = ref_logits(rounded, ids)[-1], ref_logits(exact, ids)[-1]
    ours_r, ours_x, emulated = rel(ours, ref_r), rel(ours, ref_x), rel(ref_r, ref_x)
    print("bf16 prefill vs rounded", ours_r, "vs exact", ours_x, "rounded vs exact", emulated, "fp32 vs exact", rel(ours32, ref_x))
    assert rel(ours32, ref_x) < 1e-4
    # Rounding the projections' inputs moves the last logits by what the emulation's rounding moves
    # them (30 layers amplify where a value lands on either side of a bf16 rounding boundary, so ours
    # and the emulation do not follow each other: each is that far from exact arithmetic).
    assert 1e-3 < ours_x < 3e-2 and emulated / 3 < ours_x < 3 * emulated
    assert int(ours.argmax()) == int(ref_r.argmax()) == int(ref_x.argmax())


def test_bench_generate_reports_the_bf16_prefill_error(smol):
    r = json.loads(smol("bench", "generate", GGUF, "--prompt-tokens", 96, "--decode-tokens", 4, "--repeats", 1,
                        "--prefill-precision", "bf16", "--json").stdout)
    assert r["prefill_precision"] == ("bf16" if HAS_BF16 else "fp32")
    if HAS_BF16:
        assert 0 < r["logit_relative_rms_vs_f32"] < 3e-2 and r["logit_max_abs_vs_f32"] > 0
    else:
        assert r["logit_relative_rms_vs_f32"] is None


def test_eval_bf16_scores_against_the_reference_and_across_batch_sizes(smol, tmp_path):
    task, limit = [TASKS / "smol_facts_en.yaml"], ("--limit", "6")
    res16, d16 = run_eval(smol, tmp_path / "bf16", task, *limit, "--precision", "bf16")
    lm16, d16_one = run_eval(smol, tmp_path / "bf16-1", task, *limit, "--precision", "bf16", "--batch-size", "1",
                             "--output-format", "lm-eval")
    res32, d32 = run_eval(smol, tmp_path / "fp32", task, *limit)
    _, d_off = run_eval(smol, tmp_path / "off", task, *limit, "--precision", "bf16", env={"SMOL_BF16": "off"})
    assert res16["config"]["precision"] == ("bf16" if HAS_BF16 else "fp32") and res32["config"]["precision"] == "fp32"
    assert lm16["config"]["model_args"].endswith(",dtype=" + ("bfloat16" if HAS_BF16 else "float32"))
    # Each row's sums run in the same order whatever shares the pass: the same bits at batch size 1.
    assert d16_one == d16
    # The forced fallback scores exactly as fp32 does.
    assert d_off == d32
    items16, items32 = d16["smol_facts_en"], d32["smol_facts_en"]
    ll16 = np.array([x for d in items16 for x in d["loglikelihoods"]])
    ll32 = np.array([x for d in items32 for x in d["loglikelihoods"]])
    if not HAS_BF16:
        assert np.array_equal(ll16, ll32)
        return
    assert not np.array_equal(ll16, ll32)
    exact = numpy_reference()
    rounded = numpy_reference(bf16=True, bf16_attention=False, bf16_head=True)
    tok = hf_tokenizer()
    errors = []
    for d16_, d32_ in zip(items16[:2], items32[:2]):
        for cont, ours16, ours32, ntok in zip(d16_["continuations"], d16_["loglikelihoods"], d32_["loglikelihoods"], d16_["tokens"]):
            ctx, ids = lm_eval_split(tok, d16_["context"], cont)
            assert ntok == len(ids)

            def ll(ref):
                lp = log_softmax(ref_logits(ref, ctx + ids))
                return sum(lp[len(ctx) - 1 + i, t] for i, t in enumerate(ids))
            want, emulated = ll(exact), ll(rounded)
            assert ours32 == pytest.approx(want, abs=2e-3 * ntok, rel=1e-3)
            # bf16 moves a log-likelihood by what the emulation's rounding moves it (each is that far
            # from exact arithmetic; a value landing on the other side of a rounding boundary parts
            # ours from the emulation).
            errors.append((abs(ours16 - want), abs(emulated - want)))
            assert abs(ours16 - want) < 0.05 * ntok + 0.02 * abs(want), (cont, ours16, want, emulated)
    ours_err, emulated_err = np.mean(errors, axis=0)
    print("mean |bf16 - exact|", ours_err, "emulation", emulated_err)
    assert emulated_err / 4 < ours_err < 4 * emulated_err
    # The choices keep their order on most items (a bf16 run picks the same answer almost always).
    picks16 = [int(np.argmax(d["loglikelihoods"])) for d in items16]
    picks32 = [int(np.argmax(d["loglikelihoods"])) for d in items32]
    assert sum(a == b for a, b in zip(picks16, picks32)) >= len(picks32) - 1
