"""The run store: what `smol train` records, read back with Python's own sqlite3 and compared
with metrics.jsonl; config diffs against a flattening written here; concurrent writers; a killed
run marked crashed and resumed cleanly; `smol compare` tables against numpy.interp and its SVG
against an EMA computed here."""
import json
import os
import signal
import sqlite3
import subprocess
import time
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from conftest import kill_at_checkpoint, smol_binary


def rows(store, sql, *args):
    con = sqlite3.connect(store)
    try:
        return con.execute(sql, args).fetchall()
    finally:
        con.close()


def jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_train_records_run_metrics_evals_and_events(smol, config, tmp_path):
    store = tmp_path / "runs.sqlite"
    smol("train", config, "--out", tmp_path / "a", "--store", store, "--tag", "ablation", "--tag", "lr")
    ((rid, name, status, tags, cfg, ended, core_h),) = rows(store, "SELECT id, name, status, tags, config, ended_at, core_hours FROM run")
    assert (name, status, json.loads(tags)) == ("small", "finished", ["ablation", "lr"]) and ended and core_h > 0
    assert json.loads(cfg)["optimizer"]["lr"] == 3e-3
    metrics = jsonl(tmp_path / "a/metrics.jsonl")
    train = [(m["step"], m["tokens"], m["loss"]) for m in metrics if m["kind"] == "train"]
    assert rows(store, "SELECT step, tokens, value FROM metric WHERE run_id = ? AND name = 'loss' ORDER BY step", rid) == train
    evals = [(m["step"], m["val_loss"]) for m in metrics if m["kind"] == "eval"]
    assert rows(store, "SELECT step, value FROM metric WHERE run_id = ? AND name = 'val_loss' ORDER BY step", rid) == evals
    ckpts = rows(store, "SELECT step, message FROM event WHERE run_id = ? AND kind = 'checkpoint' ORDER BY step", rid)
    assert [s for s, _ in ckpts] == [5, 10, 15, 20, 24] and ckpts[-1][1].endswith("step_00000024")
    assert rows(store, "SELECT identifier FROM grdb_migrations") == [("v1",), ("v2-topology",), ("v3-segments",), ("v4-data-lineage",)]
    assert rows(store, "SELECT world_size, dp, tp, zero FROM run") == [(1, 1, 1, 0)]
    assert rows(store, "PRAGMA journal_mode") == [("wal",)]
    shown = json.loads(smol("runs", "show", "small", "--store", store, "--json").stdout)
    assert shown["last"]["loss"]["value"] == train[-1][2] and shown["run"]["status"] == "finished"
    listed = json.loads(smol("runs", "list", "--store", store, "--tag", "lr", "--json").stdout)
    assert [r["id"] for r in listed] == [rid]
    assert json.loads(smol("runs", "list", "--store", store, "--tag", "main", "--json").stdout) == []


def flatten(v, path=""):
    out = {}
    if isinstance(v, dict):
        for k, x in v.items():
            out.update(flatten(x, f"{path}.{k}" if path else k))
    elif isinstance(v, list):
        if not v:
            out[path] = "[]"
        for i, x in enumerate(v):
            out.update(flatten(x, f"{path}[{i}]"))
    elif isinstance(v, bool):
        out[path] = "true" if v else "false"
    elif v is None:
        out[path] = "null"
    elif isinstance(v, (int, float)) and float(v).is_integer():
        out[path] = str(int(v))
    elif isinstance(v, float):
        out[path] = repr(v)
    else:
        out[path] = str(v)
    return out


def test_runs_diff_shows_config_differences_only(smol, config, tmp_path):
    store = tmp_path / "runs.sqlite"
    smol("train", config, "--out", tmp_path / "a", "--store", store, "--set", "training.steps=6")
    smol("train", config, "--out", tmp_path / "b", "--store", store, "--set", "training.steps=6", "--set", "optimizer.lr=0.001",
         "--set", "model.num_key_value_heads=4")
    diff = json.loads(smol("runs", "diff", "1", "2", "--store", store, "--json").stdout)
    (a,), (b,) = rows(store, "SELECT config FROM run WHERE id = 1"), rows(store, "SELECT config FROM run WHERE id = 2")
    fa, fb = flatten(json.loads(a[0])), flatten(json.loads(b[0]))
    keys = sorted(k for k in set(fa) | set(fb) if fa.get(k) != fb.get(k))
    assert [d["key"] for d in diff] == keys == ["model.num_key_value_heads", "optimizer.lr"]
    assert [(d["a"], d["b"]) for d in diff] == [("2", "4"), ("0.003", "0.001")]
    same = smol("runs", "diff", "1", "1", "--store", store).stdout
    assert "identical" in same


def test_concurrent_trainings_lose_no_rows(smol, config, tmp_path):
    store = tmp_path / "runs.sqlite"
    procs = [subprocess.Popen([smol_binary(), "train", config, "--out", tmp_path / f"r{i}", "--store", store, "--no-samples",
                               "--set", f"training.seed={i + 1}"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for i in range(3)]
    for p in procs:
        assert p.wait(timeout=600) == 0, p.stderr.read()
    assert rows(store, "SELECT COUNT(*), SUM(status = 'finished') FROM run") == [(3, 3)]
    for i in range(3):
        (rid,), = rows(store, "SELECT id FROM run WHERE output_dir = ?", str(tmp_path / f"r{i}"))
        m = jsonl(tmp_path / f"r{i}/metrics.jsonl")
        for name, kind, key in (("loss", "train", "loss"), ("val_loss", "eval", "val_loss")):
            assert [v for (v,) in rows(store, "SELECT value FROM metric WHERE run_id = ? AND name = ? ORDER BY step", rid, name)] \
                == [r[key] for r in m if r["kind"] == kind]


def test_killed_run_is_crashed_then_resumed_cleanly(smol, config, tmp_path):
    store = tmp_path / "runs.sqlite"
    out = tmp_path / "k"
    args = [smol_binary(), "train", config, "--out", out, "--store", store, "--no-samples", "--set", "training.steps=400",
            "--set", "training.checkpoint_every=10"]
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:
        time.sleep(0.2)
        if store.exists() and rows(store, "SELECT COUNT(*) FROM event WHERE kind = 'checkpoint'")[0][0] >= 2:
            break
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    listed = json.loads(smol("runs", "list", "--store", store, "--json").stdout)
    assert [r["status"] for r in listed] == ["crashed"] and listed[0]["core_hours"] > 0
    last = max(int(p.name.split("_")[1]) for p in (out / "checkpoints").iterdir() if p.name.startswith("step_"))
    end = last + 10
    smol("train", config, "--out", out, "--store", store, "--no-samples", "--set", f"training.steps={end}",
         "--set", "training.checkpoint_every=10", "--resume")
    assert rows(store, "SELECT COUNT(*), status FROM run") == [(1, "finished")]
    steps = [s for (s,) in rows(store, "SELECT step FROM metric WHERE name = 'loss' ORDER BY rowid")]
    assert steps == list(range(1, end + 1))   # rows past the checkpoint resumed from were dropped, none twice
    assert rows(store, "SELECT COUNT(*) FROM event WHERE kind = 'resume'") == [(1,)]


def test_core_hours_of_a_resumed_run_sum_its_segments(smol, config, tmp_path):
    """Resumed before anything read the store (so the killed segment was never marked crashed),
    the run's core-hours still hold both segments, not only the last."""
    store = tmp_path / "runs.sqlite"
    out = tmp_path / "k"
    common = ["--out", out, "--store", store, "--no-samples", "--set", "training.checkpoint_every=10"]
    t0 = time.time()
    kill_at_checkpoint(["train", config, *common, "--set", "training.steps=2000"], out, 300)
    killed = time.time() - t0
    t1 = time.time()
    smol("train", config, *common, "--set", "training.steps=310", "--resume")
    resumed = time.time() - t1
    ((core_h, cores),) = rows(store, "SELECT core_hours, cores FROM run")
    seconds = core_h * 3600 / cores
    assert seconds >= 0.7 * (killed + resumed) and seconds <= 1.1 * (killed + resumed), (seconds, killed, resumed)
    assert killed > 2 * resumed        # so that counting the last segment alone would fail the bound


def ema(y, w):
    out, last = [], 0.0
    for i, v in enumerate(y):
        last = last * w + (1 - w) * v
        out.append(last / (1 - w ** (i + 1)))
    return out


def test_compare_table_and_svg(smol, config, tmp_path):
    store = tmp_path / "runs.sqlite"
    smol("train", config, "--out", tmp_path / "a", "--store", store, "--no-samples")
    smol("train", config, "--out", tmp_path / "b", "--store", store, "--no-samples", "--set", "optimizer.lr=0.001", "--set", "training.steps=16")
    svg = tmp_path / "loss.svg"
    out = json.loads(smol("compare", "1", "2", "--metric", "loss", "--x", "tokens", "--rows", "5", "--svg", svg,
                          "--smoothing", "0.5", "--max-points", "7", "--store", store, "--json").stdout)
    series = [rows(store, "SELECT tokens, value FROM metric WHERE run_id = ? AND name = 'loss' ORDER BY step", i) for i in (1, 2)]
    lo, hi = max(s[0][0] for s in series), min(s[-1][0] for s in series)
    xs = np.linspace(lo, hi, 5)
    assert [r["x"] for r in out["rows"]] == pytest.approx(list(xs))
    for j, s in enumerate(series):
        t, v = np.array(s, dtype=float).T
        assert [r["values"][j] for r in out["rows"]] == pytest.approx(list(np.interp(xs, t, v)), rel=1e-12)
    # The SVG: pixels back to data through the plot's own axis attributes.
    root = ET.parse(svg).getroot()
    ns = {"s": "http://www.w3.org/2000/svg"}
    plot = root.find(".//s:g[@id='plot']", ns)
    a = {k: float(plot.get("data-" + k)) for k in ("x-min", "x-max", "y-min", "y-max", "left", "top", "width", "height")}
    groups = plot.findall("s:g[@class='run']", ns)
    assert [g.get("data-run") for g in groups] == ["1:small", "2:small"]
    for g, s in zip(groups, series):
        t, v = np.array(s, dtype=float).T
        stride = int(np.ceil(len(v) / 7))
        keep = list(range(0, len(v), stride))
        if keep[-1] != len(v) - 1:
            keep.append(len(v) - 1)
        raw = g.find("s:polyline[@class='raw']", ns)
        smooth = g.find("s:polyline[@class='smoothed']", ns)
        assert float(raw.get("stroke-opacity")) < 0.5 and smooth.get("stroke-opacity") is None

        def back(points):
            p = np.array([[float(c) for c in q.split(",")] for q in points.split()])
            x = a["x-min"] + (p[:, 0] - a["left"]) / a["width"] * (a["x-max"] - a["x-min"])
            y = a["y-max"] - (p[:, 1] - a["top"]) / a["height"] * (a["y-max"] - a["y-min"])
            return x, y
        x, y = back(smooth.get("points"))
        tol = (a["y-max"] - a["y-min"]) / a["height"] * 0.01
        assert x == pytest.approx(t[keep], abs=(a["x-max"] - a["x-min"]) / a["width"] * 0.01)
        assert y == pytest.approx(np.array(ema(v, 0.5))[keep], abs=tol)    # smoothed first, then downsampled
        _, y = back(raw.get("points"))
        assert y == pytest.approx(v[keep], abs=tol)


def test_store_commands_fail_cleanly(smol, config, tmp_path):
    store = tmp_path / "runs.sqlite"
    r = smol("runs", "list", "--store", store, check=False)
    assert r.returncode == 1 and "no run store" in r.stderr
    smol("train", config, "--out", tmp_path / "a", "--store", store, "--no-samples", "--set", "training.steps=4")
    for args, needle in ((["runs", "show", "nope"], "nope"), (["compare", "1", "--metric", "bleu"], "bleu"),
                         (["compare", "1", "--x", "epochs"], "epochs"), (["runs", "diff", "1", "9"], "9")):
        r = smol(*args, "--store", store, check=False)
        assert r.returncode == 1 and needle in r.stderr and "Fatal" not in r.stderr, (args, r.stderr)
    (tmp_path / "junk.sqlite").write_bytes(b"not a database at all" * 100)
    r = smol("runs", "list", "--store", tmp_path / "junk.sqlite", check=False)
    assert r.returncode == 1 and "junk.sqlite" in r.stderr


def long_config(config, steps, extra=""):
    text = config.read_text().replace("  steps: 24\n", f"  steps: {steps}\n").replace("  checkpoint_every: 5\n", "  checkpoint_every: 10\n")
    return text.replace("  eval_every: 8\n", "  eval_every: 10\n").replace("  eval_batches: 2\n", "  eval_batches: 8\n") + extra


def olmo_flags(losses, norms, window, min_samples, sigmas):
    """OLMo's rule written again: mean + k·σ of the last `window` healthy steps, after `min_samples`."""
    hl, hn, flags = [], [], []
    for i, (l, g) in enumerate(zip(losses, norms)):
        fire = False
        if len(hl) >= min_samples:
            fire = l > np.mean(hl) + sigmas * np.std(hl) or g > np.mean(hn) + sigmas * np.std(hn)
        if fire:
            flags.append(i + 1)
        else:
            hl.append(l); hn.append(g)
            hl, hn = hl[-window:], hn[-window:]
    return flags


def test_loss_spike_detected_skipped_and_rolled_back(smol, config, tmp_path):
    """A fire drill corrupts step 40's batch (every token 0, like a zeroed shard region)."""
    store = tmp_path / "runs.sqlite"
    runs = {}
    for name, extra in (("clean", ""),
                        ("log", "stability: {rule: olmo, window: 16, min_samples: 8, policy: log, corrupt_batch_at: [40]}\n"),
                        ("skip", "stability: {rule: olmo, window: 16, min_samples: 8, policy: skip, corrupt_batch_at: [40]}\n"),
                        ("rollback", "stability: {rule: olmo, window: 16, min_samples: 8, policy: rollback, skip_batches: 2, corrupt_batch_at: [40]}\n")):
        # Seed 12: under seed 11 the replay after the rollback meets a second, natural grad-norm
        # spike (step 38, 2.45 against 1.82), which this test is not about.
        (tmp_path / f"{name}.yaml").write_text(long_config(config, 60, extra).replace("seed: 11", "seed: 12"))
        smol("train", tmp_path / f"{name}.yaml", "--out", tmp_path / name, "--store", store, "--no-samples")
        runs[name] = jsonl(tmp_path / name / "metrics.jsonl")
    train = {k: [r for r in v if r["kind"] == "train"] for k, v in runs.items()}
    events = {k: [r for r in v if r["kind"] == "event"] for k, v in runs.items()}
    # Detection: exactly step 40, as the rule computed here from the logged series says.
    log = train["log"]
    assert olmo_flags([r["loss"] for r in log], [r["grad_norm"] for r in log], 16, 8, 6) == [40]
    assert [(e["event"], e["step"], e["action"]) for e in events["log"]] == [("spike", 40, "logged")]
    assert log[39]["loss"] > 1.5 * log[38]["loss"]
    # Skip: step 40's update is not applied; the run goes on and ends where the clean run ends.
    assert [(e["event"], e["step"], e["action"]) for e in events["skip"]] == [("spike", 40, "skipped")]
    assert [r["step"] for r in train["skip"]] == [s for s in range(1, 61) if s != 40]
    assert [r["loss"] for r in train["skip"][:39]] == [r["loss"] for r in train["clean"][:39]]
    late = lambda rows: np.mean([r["loss"] for r in rows if r["step"] > 50])
    assert abs(late(train["skip"]) - late(train["clean"])) < 0.02 * late(train["clean"])
    # The skipped step still has its eval point and its checkpoint.
    assert [r["step"] for r in runs["skip"] if r["kind"] == "eval"] == [10, 20, 30, 40, 50, 60]
    assert (40,) in rows(store, "SELECT e.step FROM event e JOIN run r ON r.id = e.run_id WHERE r.output_dir = ? AND e.kind = 'checkpoint'",
                         str(tmp_path / "skip"))
    # Rollback: back to the step-30 checkpoint, the data up to the spike and 2 more micro-batches skipped.
    ev = events["rollback"]
    assert [e["event"] for e in ev] == ["spike", "rollback"] and (ev[1]["to_step"], ev[1]["skipped_batches"]) == (30, 10 * 2 + 2)
    steps = [r["step"] for r in train["rollback"]]
    assert steps == list(range(1, 61)) and max(r["loss"] for r in train["rollback"][30:]) < ev[0]["spike"]["loss"]
    kinds = rows(store, "SELECT e.kind, e.step FROM event e JOIN run r ON r.id = e.run_id WHERE r.output_dir = ? AND e.kind != 'checkpoint' ORDER BY e.rowid",
                 str(tmp_path / "rollback"))
    assert kinds == [("spike", 40), ("rollback", 40)]
    assert [s for (s,) in rows(store, "SELECT m.step FROM metric m JOIN run r ON r.id = m.run_id WHERE r.output_dir = ? AND m.name = 'loss' ORDER BY m.step",
                               str(tmp_path / "rollback"))] == list(range(1, 61))


def test_resume_after_a_skipped_spike_is_bit_identical(smol, config, tmp_path):
    """A skipped step does not advance AdamW's step count (its bias correction); a resume after it
    must restore that count, not the run's step, to continue exactly."""
    extra = "stability: {rule: olmo, window: 16, min_samples: 8, policy: skip, corrupt_batch_at: [40]}\n"
    (tmp_path / "skip.yaml").write_text(long_config(config, 60, extra))
    smol("train", tmp_path / "skip.yaml", "--out", tmp_path / "full", "--no-store", "--no-samples")
    out = tmp_path / "killed"
    kill_at_checkpoint(["train", tmp_path / "skip.yaml", "--out", out, "--no-store", "--no-samples"], out, 50)
    state = json.loads((out / "checkpoints" / "step_00000050" / "state.json").read_text())
    assert (state["step"], state["optimizer_step"]) == (50, 49)
    smol("train", tmp_path / "skip.yaml", "--out", out, "--resume", "--no-store", "--no-samples")
    full, resumed = jsonl(tmp_path / "full" / "metrics.jsonl"), jsonl(out / "metrics.jsonl")
    assert [r for r in resumed if r["kind"] == "train"] != []
    pick = lambda rows: [(r["step"], r["loss"], r["grad_norm"]) for r in rows if r["kind"] == "train"]
    assert pick(resumed) == pick(full)
    assert [r["val_loss"] for r in resumed if r["kind"] == "eval"] == [r["val_loss"] for r in full if r["kind"] == "eval"]


def test_baseline_guard_fires_on_a_broken_run_and_passes_a_sound_one(smol, config, tmp_path):
    """The broken run has the playbook's tensor-parallel seed bug (shards of every matrix initialised
    alike, as on 2 ranks sharing a seed): its loss still falls, but it trails the baseline at equal
    tokens by 1–3%. The sound run is the same config on one thread instead of two: its numbers differ
    from the baseline's only by floating-point rounding. (Another seed moves this toy model's held-out
    loss by 2–3%, more than the bug: the guard is for a run against a baseline of the same settings,
    as in the playbook, with a tolerance above that pair's run-to-run noise.)"""
    store = tmp_path / "runs.sqlite"
    (tmp_path / "base.yaml").write_text(long_config(config, 100))
    smol("train", tmp_path / "base.yaml", "--out", tmp_path / "base", "--store", store, "--no-samples")
    guard = "baseline: {run: base, metric: val_loss, tolerance: 0.01, patience: 3, stop: true}\n"
    (tmp_path / "sound.yaml").write_text(long_config(config, 100, guard))
    (tmp_path / "broken.yaml").write_text(long_config(config, 100, guard + "stability: {rule: none, shared_seed_tp_ranks: 2}\n"))
    smol("train", tmp_path / "sound.yaml", "--out", tmp_path / "sound", "--store", store, "--no-samples",
         env={"SMOL_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"})
    smol("train", tmp_path / "broken.yaml", "--out", tmp_path / "broken", "--store", store, "--no-samples")
    base = [r for r in jsonl(tmp_path / "base/metrics.jsonl") if r["kind"] == "eval"]
    for name in ("sound", "broken"):
        rows_ = jsonl(tmp_path / name / "metrics.jsonl")
        checks = [r["baseline"] for r in rows_ if r["kind"] == "event"]
        evals = [r for r in rows_ if r["kind"] == "eval"]
        bx, by = [r["tokens"] for r in base], [r["val_loss"] for r in base]
        streak = 0
        for c, e in zip(checks, evals):
            b = np.interp(e["tokens"], bx, by)
            assert c["baseline"] == pytest.approx(b, rel=1e-12) and c["value"] == e["val_loss"]
            worse = e["val_loss"] > b * 1.01
            streak = streak + 1 if worse else 0
            assert (c["worse"], c["streak"], c["alert"]) == (worse, streak, streak >= 3)
        if name == "sound":
            assert len(checks) == 10 and not any(c["worse"] for c in checks)
            assert max(abs(c["relative"]) for c in checks) < 1e-4
        else:
            assert checks[-1]["alert"] and sum(c["alert"] for c in checks) == 1
            assert evals[-1]["step"] == checks[-1]["step"] < 100            # stopped at the alert
            assert evals[-1]["val_loss"] < evals[0]["val_loss"] - 0.3          # its own loss looked fine
    alerts = rows(store, "SELECT r.name, e.step FROM event e JOIN run r ON r.id = e.run_id WHERE e.kind = 'alert'")
    assert alerts == [("broken", checks[-1]["step"])]
    # The same guard from a curve file (the baseline's metrics.jsonl) agrees.
    (tmp_path / "curve.yaml").write_text(long_config(config, 100, f"baseline: {{curve: {tmp_path / 'base/metrics.jsonl'}, tolerance: 0.01, patience: 3, stop: true}}\n"
                                                     "stability: {rule: none, shared_seed_tp_ranks: 2}\n"))
    smol("train", tmp_path / "curve.yaml", "--out", tmp_path / "curve", "--no-store", "--no-samples")
    from_curve = [r["baseline"] for r in jsonl(tmp_path / "curve/metrics.jsonl") if r["kind"] == "event"]
    assert [(c["step"], c["worse"], c["alert"]) for c in from_curve] == [(c["step"], c["worse"], c["alert"]) for c in checks]
    assert [c["baseline"] for c in from_curve] == pytest.approx([c["baseline"] for c in checks], rel=1e-12)


def test_ablation_sweep_report(smol, config, tmp_path):
    """A tiny sweep: the baseline LR against one ten times smaller on the same two seeds (a paired
    test), and one on other seeds (Welch's test). The report's statistics are recomputed here with
    scipy from the store's own rows; a second invocation reuses the runs."""
    from scipy import stats
    (tmp_path / "base.yaml").write_text(long_config(config, 20))
    (tmp_path / "sweep.yaml").write_text(
        "name: lr\nbase: base.yaml\nseeds: [1, 2]\nbaseline: lr3e-3\nmetrics: [val_loss, loss]\n"
        "set: {training.eval_every: 10, training.checkpoint_every: 0}\n"
        "variants:\n  - {name: lr3e-3}\n  - {name: lr3e-4, set: {optimizer.lr: 3.0e-4}}\n"
        "  - {name: lr1e-3, seeds: [3, 4], set: {optimizer.lr: 1.0e-3}}\n")
    store = tmp_path / "runs.sqlite"
    # Main-run compute for the ledger.
    smol("train", tmp_path / "base.yaml", "--out", tmp_path / "main", "--store", store, "--tag", "main", "--no-samples")
    r = json.loads(smol("ablate", tmp_path / "sweep.yaml", "--out", tmp_path / "out", "--store", store, "--parallel", "2", "--json",
                        env={"SMOL_BIN": smol_binary()}).stdout)
    runs = rows(store, "SELECT id, output_dir, tags, core_hours FROM run WHERE tags LIKE '%ablation%'")
    assert len(runs) == 6 and all("sweep:lr" in t for _, _, t, _ in runs)

    def last(variant, seed, metric):
        (rid,), = rows(store, "SELECT id FROM run WHERE output_dir = ?", str(tmp_path / "out" / f"{variant}-seed{seed}"))
        (v,), = rows(store, "SELECT value FROM metric WHERE run_id = ? AND name = ? ORDER BY step DESC LIMIT 1", rid, metric)
        return v

    seeds = {"lr3e-3": (1, 2), "lr3e-4": (1, 2), "lr1e-3": (3, 4)}
    for metric in ("val_loss", "loss"):
        base = [last("lr3e-3", s, metric) for s in (1, 2)]
        for variant in seeds:
            vals = [last(variant, s, metric) for s in seeds[variant]]
            c = r["cells"][variant][metric]
            assert c["values"] == vals and c["seeds"] == list(seeds[variant])
            assert c["mean"] == pytest.approx(np.mean(vals), rel=1e-12) and c["std"] == pytest.approx(np.std(vals, ddof=1), rel=1e-9)
            assert c["ci95"] == pytest.approx(stats.t.ppf(0.975, 1) * np.std(vals, ddof=1) / np.sqrt(2), rel=1e-9)
            if variant == "lr3e-3":
                assert "comparison" not in c and "verdict" not in c
                continue
            k = c["comparison"]
            if variant == "lr3e-4":      # same seeds: paired
                ref = stats.ttest_rel(vals, base)
                d = np.array(vals) - np.array(base)
                se, df = np.std(d, ddof=1) / np.sqrt(2), 1
                assert k["test"] == "paired"
            else:                        # other seeds: Welch
                ref = stats.ttest_ind(vals, base, equal_var=False)
                se, df = np.sqrt(np.var(vals, ddof=1) / 2 + np.var(base, ddof=1) / 2), ref.df
                assert k["test"] == "welch"
            assert k["difference"] == pytest.approx(np.mean(vals) - np.mean(base), rel=1e-9)
            assert k["stderr"] == pytest.approx(se, rel=1e-9) and k["df"] == pytest.approx(df, rel=1e-9)
            assert k["t"] == pytest.approx(ref.statistic, rel=1e-9) and k["p_value"] == pytest.approx(ref.pvalue, rel=1e-7)
            assert k["min_detectable"] == pytest.approx((stats.t.ppf(0.975, df) + stats.t.ppf(0.8, df)) * se, rel=1e-7)
            assert c["verdict"] == ("neutral" if ref.pvalue >= 0.05 else ("hurts" if k["difference"] > 0 else "helps"))
    # Ten times smaller LR after 20 steps: clearly worse than the baseline beyond seed noise.
    assert r["cells"]["lr3e-4"]["val_loss"]["verdict"] == "hurts"
    assert r["ablation_core_hours"] == pytest.approx(sum(h for *_, h in runs), rel=1e-9)
    (main_h,), = rows(store, "SELECT core_hours FROM run WHERE tags LIKE '%main%'")
    assert r["main_core_hours"] == pytest.approx(main_h, rel=1e-9)
    md = (tmp_path / "out/report.md").read_text()
    assert "| lr3e-4 |" in md and "paired (1 d.o.f.)" in md and "| welch (" in md and "![val_loss](val_loss.svg)" in md
    svg = ET.parse(tmp_path / "out/val_loss.svg").getroot()
    assert len(svg.findall(".//{http://www.w3.org/2000/svg}polygon")) == 3   # one band per variant
    again = smol("ablate", tmp_path / "sweep.yaml", "--out", tmp_path / "out", "--store", store, env={"SMOL_BIN": smol_binary()}).stdout
    assert "6 runs (6 already done)" in again
    assert rows(store, "SELECT COUNT(*) FROM run") == [(7,)]
    bad = tmp_path / "bad.yaml"
    bad.write_text("base: base.yaml\nvariants:\n  - {name: a, set: {optimizer.lr: -1}}\n")
    r = smol("ablate", bad, "--store", store, check=False)
    assert r.returncode == 1 and "optimizer.lr" in r.stderr
