"""`smol merge` against a NumPy port of mergekit's definitions: linear Σwᵢθᵢ/Σwᵢ, SLERP with its
linear fallback for nearly parallel tensors (|cos| > 0.9995), on small trained models in three
formats (run directory, checkpoint, GGUF); a model merged with itself is returned bit for bit; other
shapes or tokenizers are a clear error."""
import json
import shutil

import numpy as np
import pytest
from safetensors.numpy import save_file

from safetensors_np import load

DOT_THRESHOLD = 0.9995


def mergekit_lerp(t, v0, v1):
    return (1 - t) * v0 + t * v1


def mergekit_slerp(t, v0, v1, eps=1e-8):
    """mergekit's slerp (merge_methods/slerp.py), in float64 on the flattened tensors."""
    a, b = v0.astype(np.float64), v1.astype(np.float64)
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    u = a / na if na > eps else a
    w = b / nb if nb > eps else b
    dot = np.sum(u * w)
    if np.abs(dot) > DOT_THRESHOLD:
        return mergekit_lerp(t, a, b), "lerp"
    theta_0 = np.arccos(dot)
    theta_t = theta_0 * t
    s0 = np.sin(theta_0 - theta_t) / np.sin(theta_0)
    s1 = np.sin(theta_t) / np.sin(theta_0)
    return s0 * a + s1 * b, "slerp"


def weights_of(path):
    return load(path / "model.safetensors")


@pytest.fixture(scope="module")
def runs(smol, shards, tmp_path_factory):
    from conftest import SMALL
    d = tmp_path_factory.mktemp("merge")
    cfg = d / "small.yaml"
    # RoPE in every layer (a plain llama), so the models also export to GGUF.
    cfg.write_text(SMALL.replace("SHARDS", str(shards)).replace("  no_rope_layer_interval: 2\n", ""))
    out = {}
    for name, seed in (("a", 11), ("b", 12), ("c", 13)):
        smol("train", cfg, "--out", d / name, "--no-store", "--set", "training.steps=10", "--set", f"training.seed={seed}",
             "--set", "training.checkpoint_every=10")
        out[name] = d / name
    return d, out


def checkpoint(run):
    return sorted((run / "checkpoints").iterdir())[-1]


def test_linear_merge_of_three_models_in_three_formats(smol, runs):
    d, r = runs
    smol("export", r["c"], d / "c.gguf", "--type", "f32")
    out = d / "linear"
    res = smol("merge", r["a"], checkpoint(r["b"]), d / "c.gguf", "--weights", "0.5,0.3,0.2", "--out", out)
    # The GGUF does not record the training-only intra-document masking: said, and the first's kept.
    assert "intra_document_masking" in res.stderr and "which the merge keeps" in res.stderr
    a, b, c, m = (weights_of(checkpoint(r["a"])), weights_of(checkpoint(r["b"])), weights_of(checkpoint(r["c"])), weights_of(out))
    assert set(m) == set(a)
    for name in a:
        x, y, z = (v[name].astype(np.float64) for v in (a, b, c))
        expected = (0.5 * x + 0.3 * y + 0.2 * z) / 1.0
        np.testing.assert_allclose(m[name], expected.astype(np.float32), rtol=0, atol=0, err_msg=name)
    recipe = json.loads((out / "smol_merge.json").read_text())
    assert recipe["method"] == "linear" and recipe["weights"] == [0.5, 0.3, 0.2] and len(recipe["models"]) == 3
    # Unnormalised weights are divided by their sum, as mergekit's normalize: true does.
    smol("merge", r["a"], r["b"], "--weights", "3,1", "--out", d / "linear31")
    m = weights_of(d / "linear31")
    for name in a:
        np.testing.assert_allclose(m[name], ((3 * a[name].astype(np.float64) + b[name].astype(np.float64)) / 4).astype(np.float32), rtol=0, atol=0)


def test_slerp_matches_mergekit(smol, runs):
    d, r = runs
    out = d / "slerp"
    smol("merge", r["a"], r["b"], "--method", "slerp", "--t", "0.3", "--out", out)
    a, b, m = weights_of(checkpoint(r["a"])), weights_of(checkpoint(r["b"])), weights_of(out)
    branches = set()
    for name in a:
        expected, branch = mergekit_slerp(0.3, a[name].ravel(), b[name].ravel())
        branches.add(branch)
        np.testing.assert_allclose(m[name].ravel(), expected.astype(np.float32), rtol=2e-7, atol=1e-9, err_msg=name)
    assert "slerp" in branches        # trained from different seeds: most tensors are far from parallel
    # t = 0 and t = 1 give the ends exactly.
    for t, end in (("0", a), ("1", b)):
        smol("merge", r["a"], r["b"], "--method", "slerp", "--t", t, "--out", d / f"slerp{t}")
        m = weights_of(d / f"slerp{t}")
        for name in a:
            assert np.array_equal(m[name], end[name]), (t, name)


def test_nearly_parallel_tensors_fall_back_to_linear(smol, runs):
    """A model whose tensors are the first's scaled by 1.0002 (one of them negated): every pair is
    nearly parallel, so SLERP interpolates linearly, as mergekit does."""
    d, r = runs
    src = checkpoint(r["a"])
    near = d / "near"
    shutil.copytree(src, near)
    a = weights_of(src)
    rng = np.random.default_rng(0)
    scaled = {}
    for i, (name, v) in enumerate(a.items()):
        w = v.astype(np.float64) * 1.0002 + 1e-6 * np.abs(v).mean() * rng.standard_normal(v.shape)
        scaled[name] = (-w if i == 3 else w).astype(np.float32)
    save_file(scaled, str(near / "model.safetensors"), metadata={"format": "pt"})
    out = d / "near-slerp"
    smol("merge", src, near, "--method", "slerp", "--t", "0.25", "--out", out)
    m = weights_of(out)
    for name in a:
        expected, branch = mergekit_slerp(0.25, a[name].ravel(), scaled[name].ravel())
        assert branch == "lerp", name
        np.testing.assert_array_equal(m[name].ravel(), expected.astype(np.float32), err_msg=name)


def test_a_model_merged_with_itself_comes_back_bit_for_bit(smol, runs):
    d, r = runs
    a = weights_of(checkpoint(r["a"]))
    for i, args in enumerate((["--weights", "0.9,0.1"], ["--method", "slerp", "--t", "0.7"], ["--weights", "0.3,0.3"])):
        out = d / f"self{i}"
        smol("merge", r["a"], r["a"], *args, "--out", out)
        m = weights_of(out)
        for name in a:
            assert m[name].tobytes() == a[name].tobytes(), (args, name)


def test_gguf_output(smol, runs):
    import gguf
    d, r = runs
    smol("merge", r["a"], r["b"], "--method", "slerp", "--t", "0.5", "--gguf", d / "merged.gguf", "--type", "f32")
    smol("merge", r["a"], r["b"], "--method", "slerp", "--t", "0.5", "--out", d / "merged-hf")
    hf = weights_of(d / "merged-hf")
    g = {t.name: np.array(t.data) for t in gguf.GGUFReader(str(d / "merged.gguf")).tensors}
    # Tensors GGUF stores unpermuted: the embedding and the MLP.
    assert np.array_equal(g["token_embd.weight"].reshape(hf["model.embed_tokens.weight"].shape), hf["model.embed_tokens.weight"])
    assert np.array_equal(g["blk.1.ffn_down.weight"].reshape(hf["model.layers.1.mlp.down_proj.weight"].shape),
                          hf["model.layers.1.mlp.down_proj.weight"])


def test_models_that_cannot_merge_are_refused(smol, runs, tmp_path):
    d, r = runs
    # Another shape.
    smol("train", d / "small.yaml", "--out", tmp_path / "wide", "--no-store", "--set", "training.steps=2",
         "--set", "model.intermediate_size=96")
    res = smol("merge", r["a"], tmp_path / "wide", "--out", tmp_path / "x", check=False)
    assert res.returncode == 1 and "intermediate_size: 128 vs 96" in res.stderr and "other tensors" in res.stderr, res.stderr
    # Another tokenizer with the same vocabulary size: the same shapes, different tokens.
    other = tmp_path / "other-tok"
    shutil.copytree(checkpoint(r["a"]), other)
    from conftest import ROOT
    smol("tokenizer", "train", ROOT / "data/corpus/prose.txt", "--vocab-size", "264", "--out", other / "tokenizer.json")
    res = smol("merge", r["a"], other, "--out", tmp_path / "y", check=False)
    assert res.returncode == 1 and "another tokenizer" in res.stderr and str(other) in res.stderr, res.stderr
    for args, needle in ((["--weights", "1,2,3"], "3 weights for 2 models"), (["--method", "slerp", "--t", "1.5"], "--t"),
                         (["--weights", "1,-1"], "sum to zero"), (["--weights", "a,b"], "--weights")):
        res = smol("merge", r["a"], r["b"], *args, "--out", tmp_path / "z", check=False)
        assert res.returncode != 0 and needle in res.stderr, (args, res.stderr)
    res = smol("merge", r["a"], r["b"], r["c"], "--method", "slerp", "--out", tmp_path / "z", check=False)
    assert res.returncode != 0 and "exactly two" in res.stderr
    res = smol("merge", r["a"], r["b"], "--out", d / "linear", check=False)      # exists
    assert res.returncode != 0 and "already exists" in res.stderr
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists() and not (tmp_path / "z").exists()
