"""Infrastructure commands: collectives under Open MPI (nccl-tests conventions, exact checks),
preflight verdicts, the planner against hand computation, and the hardware benchmark's peak."""
import json
import math
import os
import subprocess
import sys

import pytest

from conftest import ROOT, smol_binary

MPI_ENV = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1", "OMPI_MCA_rmaps_base_oversubscribe": "1"}
FACTORS = {  # shared/reference/infrastructure.md
    "all_reduce": lambda n: 2 * (n - 1) / n, "all_gather": lambda n: (n - 1) / n, "reduce_scatter": lambda n: (n - 1) / n,
    "alltoall": lambda n: (n - 1) / n, "broadcast": lambda n: 1.0, "sendrecv": lambda n: 1.0,
}


def mpirun(n, *args, env=None):
    e = dict(os.environ, **MPI_ENV, **(env or {}))
    extra = sum((["-x", k] for k in (env or {})), [])
    return subprocess.run(["mpirun", "-np", str(n), *extra, smol_binary(), *map(str, args)], capture_output=True, text=True,
                          env=e, timeout=300)


@pytest.mark.parametrize("ranks", [2, 3])
def test_collectives_follow_nccl_tests_conventions_and_are_exact(ranks):
    r = mpirun(ranks, "bench", "collectives", "-b", "8", "-e", "256K", "-f", "4", "-n", "5", "-w", "1", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["ranks"] == ranks and out["wrong"] == 0
    assert {row["op"] for row in out["rows"]} == set(FACTORS)
    for row in out["rows"]:
        assert row["wrong"] == 0
        algbw = row["size"] / (row["time_us"] * 1e-6) / 1e9
        assert row["algbw"] == pytest.approx(algbw, rel=1e-6)
        assert row["busbw"] == pytest.approx(row["algbw"] * FACTORS[row["op"]](ranks), rel=1e-9)
        if row["op"] == "all_gather":
            assert row["size"] == row["count"] * 4 * ranks
        else:
            assert row["size"] == row["count"] * 4
    all_reduce_sizes = [row["size"] for row in out["rows"] if row["op"] == "all_reduce"]
    assert all_reduce_sizes == [8 * 4 ** k for k in range(9) if 8 * 4 ** k <= 256 * 1024]
    assert {o["op"] for o in out["overhead"]} == set(FACTORS)
    assert out["avg_busbw"] == pytest.approx(sum(x["busbw"] for x in out["rows"]) / len(out["rows"]))


def test_collectives_detect_a_wrong_value():
    r = mpirun(2, "bench", "collectives", "--op", "all_reduce", "-e", "4K", "--no-overhead", env={"SMOL_FAULT_COLLECTIVE_RANK": "1"})
    assert r.returncode != 0
    assert "FAILED" in r.stdout


def test_preflight_pass_fail_and_slow_rank(smol, tmp_path):
    ok = smol("preflight", "--expect-gemm-gflops", "1", "--disk-dir", tmp_path, "--json")
    assert json.loads(ok.stdout)["pass"] is True
    bad = smol("preflight", "--expect-gemm-gflops", "1000000", "--disk-dir", tmp_path, check=False)
    assert bad.returncode == 1 and "FAIL" in bad.stdout
    r = mpirun(2, "preflight", "--disk-dir", tmp_path, "--json", env={"SMOL_FAULT_SLOW_RANK": "1"})
    assert r.returncode != 0
    checks = {c["name"]: c for c in json.loads(r.stdout)["checks"]}
    assert checks["gemm"]["failing_ranks"] == [1]
    assert "all_reduce 4 MiB busbw" in checks


def test_plan_reproduces_smollm3_worked_example(smol):
    p = json.loads(smol("plan", "configs/smollm3-3b.yaml", "--tokens", "11e12", "--gpu", "h100", "--dp", "192", "--tp", "2",
                        "--micro-batch", "3", "--seq", "4096", "--zero", "1", "--json").stdout)
    n = 128256 * 2048 + 36 * (2048 * 2048 * 2 + 2 * 2048 * 512 + 3 * 2048 * 11008 + 2 * 2048) + 2048
    assert p["parameters"] == n
    fpt = 6 * n + 12 * 36 * 16 * 128 * 4096
    assert p["flops_per_token"] == pytest.approx(fpt)
    days = fpt * 11e12 / (384 * 989e12 * 0.30) / 86400
    assert p["days"] == pytest.approx(days) and 3 <= days / 7 <= 4
    assert p["tokens_per_step"] == 2359296 and p["devices"] == 384
    # Daly with delta = checkpoint write time, M = 50,000 GPU-hours / 384 GPUs
    delta = 12 * n / 1e9 / 5.0
    m = 50000 / 384 * 3600
    r = delta / (2 * m)
    daly = math.sqrt(2 * delta * m) * (1 + math.sqrt(r) / 3 + r / 9) - delta
    assert p["daly_interval_min"] == pytest.approx(daly / 60)
    mem = p["memory_per_device"]
    assert mem["optimizer_gb"] == pytest.approx(12 * n / 2 / 192 / 1e9)   # TP 2, ZeRO-1 over DP 192


def test_plan_fp32_tensor_parallel_terms_are_smols(smol, tmp_path):
    """smol's own tensor parallelism (precision fp32) splits the embedding and head by vocabulary rows when
    the vocabulary divides by tp (else keeps them whole on every rank), and its attention stores no
    scores: the per-rank terms by hand for SmolLM2-135M at TP = 3 (the measured per-rank RSS beside
    them is in bench/RESULTS.md), and for a vocabulary of 49153 that does not divide."""
    p = json.loads(smol("plan", "configs/smollm2-135m.yaml", "--tokens", "1e9", "--tp", "3", "--precision", "fp32",
                        "--micro-batch", "4", "--seq", "512", "--json").stdout)
    V, h, L, F, kv = 49152, 576, 30, 1536, 192
    n = V * h + L * (2 * h * h + 2 * h * kv + 3 * h * F + 2 * h) + h
    assert p["parameters"] == n
    shard = n / 3
    mem = p["memory_per_device"]
    assert mem["weights_gb"] == pytest.approx(4 * shard / 1e9) and mem["optimizer_gb"] == pytest.approx(8 * shard / 1e9)
    act = 2 * 512 * 4 * h * (10 + 24 / 3) * L     # Korthikanti's selective-recompute bytes, in fp32
    assert mem["activations_no_recompute_gb"] == pytest.approx(act / 1e9)
    assert mem["total_no_recompute_gb"] == pytest.approx((16 * shard + act) / 1e9)
    odd = tmp_path / "odd.yaml"
    odd.write_text((ROOT / "configs/smollm2-135m.yaml").read_text().replace("vocab_size: 49152", "vocab_size: 49153"))
    p = json.loads(smol("plan", odd, "--tokens", "1e9", "--tp", "3", "--precision", "fp32", "--json").stdout)
    whole = 49153 * h
    assert p["memory_per_device"]["weights_gb"] == pytest.approx(4 * (whole + (p["parameters"] - whole) / 3) / 1e9)


def test_plan_bad_input(smol):
    r = smol("plan", "--tokens", "1e9", check=False)
    assert r.returncode == 1 and "--params" in r.stderr
    r = smol("plan", "configs/smollm3-3b.yaml", "--tokens", "1e9", "--gpu", "tpu", check=False)
    assert r.returncode == 1 and "tpu" in r.stderr
    small = json.loads(smol("plan", "--params", "1.7e9", "--layers", "24", "--hidden", "2048", "--heads", "32",
                            "--tokens", "1e12", "--json").stdout)
    assert small["parameters"] == 1_700_000_000
    assert small["flops_per_token"] == pytest.approx(6 * 1.7e9 + 12 * 24 * 2048 * 4096)


def test_bench_hw_peak_derivation(smol, tmp_path):
    out = json.loads(smol("bench", "hw", "--stream-mb", "40", "--gemm-n", "512", "--disk-mb", "16", "--disk-dir", tmp_path,
                          "--clock-ghz", "2.0", "--json").stdout)
    peak = out["peak"]
    flags = open("/proc/cpuinfo").read()
    lanes = 16 if " avx512f" in flags else 8 if (" avx2" in flags and " fma" in flags) else 4
    assert peak["lanes"] == lanes and peak["cores"] == os.cpu_count()
    assert peak["gflops"] == pytest.approx(os.cpu_count() * 2.0 * lanes * 2 * 2)
    names = [r["name"] for r in out["results"]]
    assert names[:4] == ["stream copy", "stream scale", "stream add", "stream triad"]
    blas = next(r for r in out["results"] if r["name"] == "sgemm OpenBLAS")
    assert blas["percent_of_theoretical"] == pytest.approx(100 * blas["value"] / peak["gflops"])
    assert all(r["value"] > 0 for r in out["results"])


OPENBLAS_PROBE = """
import ctypes
lib = ctypes.CDLL("libopenblas.so.0")
lib.openblas_get_corename.restype = ctypes.c_char_p
print(lib.openblas_get_corename().decode())
"""


@pytest.mark.parametrize("pin", [None, "Haswell", "Prescott"])
def test_bench_reports_the_openblas_kernels_and_warns_when_pinned_narrow(smol, tmp_path, pin):
    """The kernel set smol reports is the one Debian's OpenBLAS loads in the same environment (asked
    through ctypes), and the warning appears exactly when OPENBLAS_CORETYPE holds a non-AVX-512 set
    on a CPU that lists AVX-512."""
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
    if pin:
        env["OPENBLAS_CORETYPE"] = pin
    expected = subprocess.run([sys.executable, "-c", OPENBLAS_PROBE], env=env, capture_output=True, text=True,
                              check=True).stdout.strip()
    out = json.loads(smol("bench", "hw", "--stream-mb", "8", "--gemm-n", "256", "--disk-mb", "8", "--disk-dir", tmp_path,
                          "--json", env={"OPENBLAS_CORETYPE": pin} if pin else None,
                          unset=() if pin else ("OPENBLAS_CORETYPE",)).stdout)
    assert out["blas_core"] == expected
    blas = next(r for r in out["results"] if r["name"] == "sgemm OpenBLAS")
    assert blas["note"].endswith(f"{expected} kernels")
    flags = set(next(line for line in open("/proc/cpuinfo") if line.startswith("flags")).split(":", 1)[1].split())
    avx512_cpu = {"avx512f", "avx512dq", "avx512bw", "avx512vl"} <= flags
    narrow = expected.lower() not in ("skylakex", "cooperlake", "sapphirerapids")
    assert (out.get("blas_warning") is not None) == bool(pin and avx512_cpu and narrow)
    if out.get("blas_warning"):
        assert f"OPENBLAS_CORETYPE={pin}" in out["blas_warning"]
