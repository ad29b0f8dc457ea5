"""training.precision: bf16. The GEMM kernels (AMX, AVX512-BF16) against NumPy on bf16-rounded
inputs; a training step's logits, loss and every gradient against the NumPy float64 reference,
both the one whose products take bf16 inputs (tight) and the exact one (bf16 tolerance); the same
seed giving the same bits; and the forced fallback (SMOL_BF16=off) training exactly as fp32.

Which kernel runs depends on the CPU: the tests read /proc/cpuinfo and expect AMX where it lists
amx_bf16; where it lists avx512_bf16 without AMX, float32 FMAs on bf16-rounded inputs on Intel and
AVX512-BF16 (vdpbf16ps) elsewhere; and the fp32 fallback with its notice where it lists neither.
SMOL_BF16=avx512 and SMOL_BF16=fma force the two AVX-512 kernels, so both run on any CPU with
avx512_bf16."""
import json

import numpy as np
import pytest

import reference_llama as ref
import safetensors_np
from conftest import SMALL
from test_parity import B, CFG, OPT, T, make_batch, rel


def cpuinfo(key):
    for line in open("/proc/cpuinfo"):
        if line.startswith(key):
            return line.split(":", 1)[1].strip()
    return ""


FLAGS = set(cpuinfo("flags").split())
HAS_BF16 = "avx512_bf16" in FLAGS
HAS_AMX = HAS_BF16 and {"amx_bf16", "amx_tile"} <= FLAGS
INTEL = cpuinfo("vendor_id") == "GenuineIntel"
DEFAULT = "amx" if HAS_AMX else ("avx512-fma" if INTEL else "avx512-bf16") if HAS_BF16 else None
KERNELS = {"default": (DEFAULT, {}),
           "avx512": ("avx512-bf16" if HAS_BF16 else None, {"SMOL_BF16": "avx512"}),
           "fma": ("avx512-fma" if HAS_BF16 else None, {"SMOL_BF16": "fma"})}


def write_safetensors(path, tensors):
    header, blobs, offset = {}, [], 0
    for name, a in tensors.items():
        a = np.ascontiguousarray(a, np.float32)
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [offset, offset + a.nbytes]}
        blobs.append(a.tobytes())
        offset += a.nbytes
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    path.write_bytes(len(h).to_bytes(8, "little") + h + b"".join(blobs))


@pytest.mark.parametrize("kernel", list(KERNELS))
def test_gemm_kernels_against_numpy(smol, tmp_path, kernel):
    expected, env = KERNELS[kernel]
    rng = np.random.default_rng(3)
    # Odd sizes, partial tiles, k past one k-block of each kernel (256, 1024; FMA: 128), n past a
    # column block (AMX: 1 MiB of packed B, 512 columns at k ≥ 1024; FMA: 768 columns); whole 32×32 blocks with alpha 1 and beta 0
    # or 1, which AMX sums straight in C across k-blocks, and the other alpha, beta; taller than wide
    # (rows split over the workers).
    shapes = [(1, 1, 1), (7, 33, 5), (37, 70, 257), (130, 45, 1100), (65, 2100, 31), (64, 600, 1100), (600, 70, 1100)]
    for i, (m, n, k) in enumerate(shapes):
        for ta in (False, True):
            for tb in (False, True):
                a = rng.standard_normal((k, m) if ta else (m, k)).astype(np.float32)
                b = rng.standard_normal((n, k) if tb else (k, n)).astype(np.float32)
                c0 = rng.standard_normal((m, n)).astype(np.float32)
                alpha, beta = [(1.0, 0.0), (0.5, 1.0), (1.0, -0.7), (2.0, 0.0), (1.0, 1.0), (1.0, 0.0), (1.0, 1.0)][i]
                write_safetensors(tmp_path / "in.safetensors", {"a": a, "b": b, "c": c0})
                args = ["dev", "gemm", "--input", tmp_path / "in.safetensors", "--out", tmp_path / "c.safetensors",
                        "--precision", "bf16", f"--alpha={alpha}", f"--beta={beta}"] + (["--trans-a"] if ta else []) + (["--trans-b"] if tb else [])
                ran = json.loads(smol(*args, env=env).stdout)
                c = safetensors_np.load(tmp_path / "c.safetensors")["c"].astype(np.float64)
                A, Bm = (a.T if ta else a).astype(np.float64), (b.T if tb else b).astype(np.float64)
                if expected is None:   # no bf16 on this CPU: the fp32 GEMM, said so
                    assert ran == {"precision": "fp32", "kernel": "openblas-sgemm"}
                    assert np.allclose(c, alpha * A @ Bm + beta * c0, rtol=1e-4, atol=1e-4)
                    continue
                assert ran == {"precision": "bf16", "kernel": expected}
                rounded = alpha * (ref.round_bf16(A) @ ref.round_bf16(Bm)) + beta * c0
                scale = abs(alpha) * (np.abs(ref.round_bf16(A)) @ np.abs(ref.round_bf16(Bm))) + abs(beta * c0) + 1e-30
                err = np.abs(c - rounded) / scale
                assert err.max() < 1e-6 * max(k, 8), (m, n, k, ta, tb, err.max())   # float32 sums of k products
                if k >= 31:   # and the inputs were rounded: far from the float32 product
                    exact = alpha * A @ Bm + beta * c0
                    assert (np.abs(c - exact) / scale).max() > 1e-4


@pytest.fixture(scope="module", params=list(KERNELS))
def bf16_parity(smol, tmp_path_factory, request):
    expected, env = KERNELS[request.param]
    d = tmp_path_factory.mktemp("bf16parity")
    tokens, targets, starts = make_batch()
    spec = {"model": CFG, "seed": 7, "batch": B, "seq_len": T, "tokens": tokens.tolist(), "targets": targets.tolist(),
            "document_start": starts.tolist(), "optimizer": OPT, "lrs": [1e-3], "micro_batches": 2, "precision": "bf16"}
    (d / "spec.json").write_text(json.dumps(spec))
    smol("dev", "parity", "--spec", d / "spec.json", "--out", d / "out", env=env)
    out = d / "out"
    return {"kernel": expected, "params": safetensors_np.load(out / "params.safetensors"), "grads": safetensors_np.load(out / "grads.safetensors"),
            "logits": safetensors_np.load(out / "logits.safetensors")["logits"], "result": json.loads((out / "result.json").read_text()),
            "batch": (tokens, targets, starts)}


def test_bf16_step_against_the_numpy_reference(bf16_parity):
    r = bf16_parity
    if r["kernel"] is None:
        assert r["result"]["precision"] == "fp32" and r["result"]["kernel"] is None
        return
    assert r["result"] == {**r["result"], "precision": "bf16", "kernel": r["kernel"]}
    tokens, targets, starts = r["batch"]
    emulated = ref.Reference(CFG, r["params"], bf16=True)
    exact = ref.Reference(CFG, r["params"])
    logits_b, _, _ = emulated.forward_backward(tokens, targets, B, T, starts, grad=False)
    logits_x, _, _ = exact.forward_backward(tokens, targets, B, T, starts, grad=False)
    _, loss_b, grads_b = emulated.forward_backward(tokens, targets, B, T, starts)
    _, loss_x, grads_x = exact.forward_backward(tokens, targets, B, T, starts)
    # Ours and the reference that rounds each product's inputs to bf16 round float32 and float64
    # values: where one lands on the other side of a bf16 rounding boundary, the two part by a bf16
    # step, and everything downstream (later positions, later layers) carries it. Upstream of the
    # first such flip they agree to float32 noise: many whole rows of logits do.
    rows = lambda a, b: np.linalg.norm(a - b, axis=1) / np.linalg.norm(b, axis=1)
    same = rows(r["logits"], logits_b) < 1e-5
    assert same.mean() > 0.4, same.mean()
    assert (rows(r["logits"], logits_x)[same] > 1e-4).all()   # and those rows are not float32 arithmetic
    loss = r["result"]["losses"][0]
    assert abs(loss - loss_b) < 2e-5 * loss_b and abs(loss - loss_x) > 5e-5 * loss_x, (loss, loss_b, loss_x)
    # Gradients: bf16 tolerance (8 significant bits: 2⁻⁹ relative per rounded input, over 4 layers
    # with this config's large weights), nearer the emulation than exact arithmetic overall.
    to_b = {k: rel(r["grads"][k], grads_b[k]) for k in grads_b}
    to_x = {k: rel(r["grads"][k], grads_x[k]) for k in grads_x}
    assert max(to_x.values()) < 5e-2 and max(to_b.values()) < 2.5e-2, (max(to_x.values()), max(to_b.values()))
    assert sum(to_b.values()) < 0.6 * sum(to_x.values())
    assert min(to_x.values()) > 1e-4   # bf16 did run

def train(smol, config_path, out, env=None):
    r = smol("train", config_path, "--out", out, "--json", "--no-store", env=env)
    rows = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    return r, [x["loss"] for x in rows if x["kind"] == "train"]


@pytest.fixture(scope="module")
def runs(smol, shards, tmp_path_factory):
    d = tmp_path_factory.mktemp("bf16runs")
    out = {}
    for name, precision, env in [("fp32", "fp32", None), ("bf16", "bf16", None), ("bf16-again", "bf16", None),
                                 ("bf16-off", "bf16", {"SMOL_BF16": "off"})]:
        cfg = d / f"{name}.yaml"
        cfg.write_text(SMALL.replace("SHARDS", str(shards)).replace("  seed: 11\n", f"  seed: 11\n  precision: {precision}\n")
                       .replace("steps: 24", "steps: 12"))
        out[name] = train(smol, cfg, d / name, env)
    return out


def test_same_seed_same_bits_and_close_to_fp32(runs):
    _, fp32 = runs["fp32"]
    _, bf16 = runs["bf16"]
    _, again = runs["bf16-again"]
    assert len(bf16) == 12 and bf16 == again   # bit-identical losses at the same thread count
    if HAS_BF16:
        assert bf16 != fp32
        assert max(abs(a - b) / b for a, b in zip(bf16, fp32)) < 0.02
    else:
        assert bf16 == fp32


def test_forced_fallback_is_fp32_with_a_notice(runs):
    r, off = runs["bf16-off"]
    _, fp32 = runs["fp32"]
    assert "precision bf16 requested, but SMOL_BF16=off: the GEMMs run in fp32" in r.stderr
    assert off == fp32


def test_a_bad_precision_names_the_key(smol, config, tmp_path):
    config.write_text(config.read_text().replace("  seed: 11\n", "  seed: 11\n  precision: fp8\n"))
    r = smol("train", config, "--out", tmp_path / "run", check=False)
    assert r.returncode != 0 and "training.precision" in r.stderr and "fp8" in r.stderr, r.stderr
    assert not (tmp_path / "run").exists()
