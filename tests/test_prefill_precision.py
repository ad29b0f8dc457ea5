"""`--prefill-precision bf16` on the real SmolLM2-135M-Instruct: the prompt's projections take
bf16-rounded inputs (AMX / AVX512-BF16) with float32 sums; attention, the last row's head and
single-token decoding stay as they are. Checked against the NumPy float64 forward that rounds the
same products' inputs (reference_llama: bf16=True, bf16_attention=False, bf16_head=False) and the
exact one, and the error `smol bench generate` reports against fp32 (its speed: bench/RESULTS.md). On a CPU without AVX512-BF16
the option falls back to fp32 with a notice, which is what the tests then expect."""
import json

import numpy as np

from smollm2 import GGUF, numpy_reference, ref_logits
from test_bf16 import HAS_BF16
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
