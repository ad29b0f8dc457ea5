"""Training across processes on Open MPI (mpirun --oversubscribe, as root --allow-run-as-root):
data parallel and ZeRO-1 against one process accumulating the same global batch, checkpoints that
resume on another topology, a rank killed (no hang), SIGTERM (checkpoint, then stop), and runs that
must not start (sizes that do not divide, ranks with different configs, a rank without its data)."""
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, SMALL, smol_binary

MPIRUN = ["mpirun", *(["--allow-run-as-root"] if os.geteuid() == 0 else []), "--oversubscribe"]


def mpi(np_, *args, env=None, check=True, timeout=300):
    e = dict(os.environ, **(env or {}))
    r = subprocess.run([*MPIRUN, "-np", str(np_), smol_binary(), *map(str, args)], capture_output=True, text=True, env=e,
                       timeout=timeout, cwd=ROOT)
    if check and r.returncode != 0:
        raise AssertionError(f"mpirun -np {np_} smol {' '.join(map(str, args))} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return r


def train_rows(run_dir, kind="train"):
    return [json.loads(l) for l in (Path(run_dir) / "metrics.jsonl").read_text().splitlines() if json.loads(l)["kind"] == kind]


def losses(run_dir):
    return [r["loss"] for r in train_rows(run_dir)]


@pytest.fixture
def cfg(shards, tmp_path):
    """The small config with one micro-batch of one sequence per rank: 384 tokens per step = 6 sequences,
    so 1 process accumulates 6, DP=2 3 each, DP=3 2 each. Constant LR, so a shorter run is a prefix."""
    text = SMALL.replace("SHARDS", str(shards)).replace("micro_batch: 4", "micro_batch: 1").replace("tokens_per_batch: 512", "tokens_per_batch: 384")
    text = text.replace("schedule: {type: wsd, warmup_steps: 3, decay_fraction: 0.25}", "schedule: {type: constant, warmup_steps: 3}")
    text = text.replace("steps: 24", "steps: 12").replace("checkpoint_every: 5", "checkpoint_every: 6").replace("eval_every: 8", "eval_every: 6")
    p = tmp_path / "dp.yaml"
    p.write_text(text)
    return p


def test_data_parallel_and_zero1_train_the_losses_of_one_process(smol, cfg, tmp_path):
    smol("train", cfg, "--out", tmp_path / "one", "--no-store")
    one = losses(tmp_path / "one")
    assert len(one) == 12 and one[-1] < one[0] - 0.5
    runs = {"dp2": (2, []), "dp3": (3, []), "dp2-zero1": (2, ["--set", "parallel.zero=1"]), "dp3-zero1": (3, ["--set", "parallel.zero=1"])}
    for name, (n, extra) in runs.items():
        # Tiny MPI messages for one of them: the buffers then go in many pieces.
        env = {"SMOL_MPI_MAX_COUNT": "1000"} if name == "dp3-zero1" else None
        r = mpi(n, "train", cfg, "--out", tmp_path / name, "--no-store", "--json", *extra, env=env)
        summary = json.loads(r.stdout.strip().splitlines()[-1])["summary"]
        assert (summary["world_size"], summary["dp"], summary["tp"]) == (n, n, 1)
        ours = losses(tmp_path / name)
        assert len(ours) == 12
        np.testing.assert_allclose(ours, one, rtol=1e-5, err_msg=name)
        ev = [e["val_loss"] for e in train_rows(tmp_path / name, "eval")]
        np.testing.assert_allclose(ev, [e["val_loss"] for e in train_rows(tmp_path / "one", "eval")], rtol=1e-5)
    # ZeRO-1 shards the optimizer, not the arithmetic: the same losses as ZeRO-0, up to the clipping
    # norm's sum of squares, added shard by shard (its last bits may differ).
    np.testing.assert_allclose(losses(tmp_path / "dp2-zero1"), losses(tmp_path / "dp2"), rtol=1e-7)
    # Only rank 0 writes: one metrics line per step, one checkpoint per checkpoint step.
    assert sorted(os.listdir(tmp_path / "dp2" / "checkpoints")) == ["step_00000006", "step_00000012"]


def test_a_checkpoint_resumes_on_any_topology(smol, cfg, tmp_path):
    full = tmp_path / "full"
    mpi(2, "train", cfg, "--out", full, "--no-store", "--set", "parallel.zero=1")
    part = tmp_path / "part"
    mpi(2, "train", cfg, "--out", part, "--no-store", "--set", "parallel.zero=1", "--set", "training.steps=6")
    state = json.loads((part / "checkpoints/step_00000006/state.json").read_text())
    assert len(state["rank_data"]) == 2
    import shutil
    for name, n in (("same", 2), ("one", 1), ("three", 3)):
        d = tmp_path / name
        shutil.copytree(part, d)
        args = ["train", cfg, "--out", d, "--no-store", "--resume", "--set", "parallel.zero=1"]
        smol(*args) if n == 1 else mpi(n, *args)
        ours = losses(d)
        assert len(ours) == 12
        if name == "same":
            assert ours == losses(full)                 # same topology: bit-identical
        else:
            # Re-sharded moments and data positions: the same function of the same data.
            np.testing.assert_allclose(ours, losses(full), rtol=1e-5, err_msg=name)


def start(cfg, out, n, *extra):
    return subprocess.Popen([*MPIRUN, "-np", str(n), smol_binary(), "train", str(cfg), "--out", str(out), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)


def proc_stat(pid):
    """(command name, state, parent pid) of a process from /proc, or None once it is gone."""
    try:
        stat = open(f"/proc/{pid}/stat").read()
    except OSError:
        return None
    close = stat.rindex(")")
    state, ppid = stat[close + 2:].split()[:2]
    return stat[stat.index("(") + 1:close], state, int(ppid)


def ranks(job):
    """The ranks of `job` (the mpirun Popen): the smol processes below it in the process tree, not
    any other smol on the machine."""
    name = Path(smol_binary()).name[:15]          # /proc's command name holds 15 characters
    children = {}
    for d in os.listdir("/proc"):
        st = proc_stat(d) if d.isdigit() else None
        if st:
            children.setdefault(st[2], []).append((int(d), st[0]))
    found, todo = [], [job.pid]
    while todo:
        for pid, comm in children.get(todo.pop(), []):
            todo.append(pid)
            if comm == name:
                found.append(pid)
    return found


def running(pids):
    """Those of `pids` that still exist (a zombie too: until it is reaped its pid answers kill 0,
    which is how the run store tells a live run)."""
    return [pid for pid in pids if proc_stat(pid)]


def wait_for_steps(out, n, p, deadline=120):
    t0 = time.time()
    while time.time() - t0 < deadline and p.poll() is None:
        m = out / "metrics.jsonl"
        if m.exists() and sum(1 for l in m.read_text().splitlines() if '"train"' in l) >= n:
            return
        time.sleep(0.02)
    raise AssertionError("the run did not reach step %d" % n)


def long_run(cfg, tmp_path, steps, checkpoint_every, running_steps):
    """A 2-rank run long enough to be signalled, returned once it has logged `running_steps` steps."""
    long = tmp_path / "long.yaml"
    long.write_text(cfg.read_text().replace("steps: 12", f"steps: {steps}")
                    .replace("checkpoint_every: 6", f"checkpoint_every: {checkpoint_every}").replace("eval_every: 6", "eval_every: 1000"))
    store, out = tmp_path / "runs.sqlite", tmp_path / "run"
    p = start(long, out, 2, "--store", store, "--no-samples")
    wait_for_steps(out, running_steps, p)
    return long, store, out, p


def test_a_killed_rank_ends_the_job_and_the_run_resumes(smol, cfg, tmp_path):
    long, store, out, p = long_run(cfg, tmp_path, 4000, 50, 60)
    job = ranks(p)
    assert len(job) == 2, job
    os.kill(max(job), signal.SIGKILL)
    t0 = time.time()
    _, err = p.communicate(timeout=60)
    while running(job) and time.time() - t0 < 60:
        time.sleep(0.1)
    assert not running(job), "the other rank did not exit within 60 s"
    assert p.returncode != 0 and re.search(r"process rank \d+ .* exited on signal 9", err), err
    show = smol("runs", "list", "--store", store).stdout
    assert "crashed" in show, show
    # The job may have passed more checkpoints than the first before the kill landed (a loaded machine).
    latest = max(int(c.split("_")[1]) for c in os.listdir(out / "checkpoints") if c.startswith("step_"))
    assert latest >= 50
    r = smol("train", long, "--out", out, "--store", store, "--resume", "--no-samples", "--set", f"training.steps={latest + 10}")
    assert f"resumed from step {latest}" in r.stdout


def test_sigterm_checkpoints_at_the_next_step_and_stops(smol, cfg, tmp_path):
    long, store, out, p = long_run(cfg, tmp_path, 400, 1000, 40)
    job = ranks(p)
    assert len(job) == 2, job
    for pid in job:                      # what Slurm does before preemption: SIGTERM to every task
        os.kill(pid, signal.SIGTERM)
    p.communicate(timeout=60)
    cks = sorted(os.listdir(out / "checkpoints"))
    assert len(cks) == 1
    stopped_at = int(cks[0].split("_")[1])
    assert 40 <= stopped_at < 400 and len(losses(out)) == stopped_at
    show = smol("runs", "show", out, "--store", store).stdout
    assert "stopped" in show and "world 2 = dp 2" in show, show
    mpi(2, "train", long, "--out", out, "--store", store, "--resume", "--no-samples")
    full = tmp_path / "full"
    mpi(2, "train", long, "--out", full, "--no-store", "--no-samples")
    assert losses(out) == losses(full)


def one_error_line(r, *needles):
    assert r.returncode != 0, r.stderr
    ours = [l for l in r.stderr.splitlines() if l.startswith("error:")]
    assert len(ours) == 1, r.stderr          # rank 0 alone reports
    for n in needles:
        assert n in ours[0], (n, ours[0])


def test_runs_that_must_not_start(smol, cfg, tmp_path):
    out = tmp_path / "run"
    smol("train", cfg, "--out", out, "--no-store", "--set", "training.steps=2")
    before = {f: (out / f).read_bytes() for f in ["metrics.jsonl"]}
    # A fresh run into it is refused (it holds a run), before any rank checks: each case resumes it.
    one_error_line(mpi(2, "train", cfg, "--out", out, "--no-store", check=False), "already holds a run", "--force")
    # 384 tokens per step do not split over 5 ranks of 64-token sequences.
    one_error_line(mpi(5, "train", cfg, "--out", out, "--no-store", "--resume", check=False), "training.tokens_per_batch", "parallel.dp")
    one_error_line(mpi(2, "train", cfg, "--out", out, "--no-store", "--resume", "--set", "parallel.dp=3", check=False), "parallel.dp", "2 processes")
    one_error_line(mpi(3, "train", cfg, "--out", out, "--no-store", "--resume", "--set", "parallel.tp=2", check=False), "parallel.tp", "3 processes")
    # Ranks started with different configs (Open MPI's MPMD syntax), and a rank without its data.
    def rank1_with(text):
        second = tmp_path / "second.yaml"
        second.write_text(text)
        fresh = tmp_path / "mpmd"
        return subprocess.run([*MPIRUN, "-np", "1", smol_binary(), "train", str(cfg), "--out", str(fresh), "--no-store", ":",
                               "-np", "1", smol_binary(), "train", str(second), "--out", str(fresh), "--no-store"],
                              capture_output=True, text=True, timeout=120)
    one_error_line(rank1_with(cfg.read_text().replace("lr: 3.0e-3", "lr: 1.0e-3")), "rank 1", "different config")
    one_error_line(rank1_with(cfg.read_text().replace("code.bin", "gone.bin")), "rank 1", "gone.bin")
    assert {f: (out / f).read_bytes() for f in before} == before
    assert sorted(os.listdir(out / "checkpoints")) == ["step_00000002"]


def test_training_preflight_runs_first_and_stops_on_a_fail(smol, cfg, tmp_path):
    # One process: no rank to compare with, no expectation, a PASS (two ranks on two busy cores may
    # legitimately differ by more than preflight's 20%).
    r = smol("train", cfg, "--out", tmp_path / "ok", "--no-store", "--set", "training.preflight=true", "--set", "training.steps=2")
    assert "preflight PASS" in r.stdout and (tmp_path / "ok" / "checkpoints").exists()
    r = mpi(2, "train", cfg, "--out", tmp_path / "fail", "--no-store", "--set", "training.preflight=true",
            "--set", "training.preflight_gemm_gflops=1e9", check=False)
    one_error_line(r, "preflight FAIL", "gemm")
    assert not (tmp_path / "fail").exists()
