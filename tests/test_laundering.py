"""The data-laundering drill (docs/LAUNDERING.md) and the contamination audit, end to end on small
byte-level models: a teacher fine-tuned on smol_facts_en's items; a student distilled from it on
prose that shares no 6-gram with the task (checked by `smol data decontaminate`), against the same
student trained with cross-entropy alone. Accuracies come from `smol eval`; the audit's AUCs and the
item-level separation are recomputed here from its per-item scores; Min-K%++ itself is checked
against a NumPy float64 forward of the exported weights."""
import json
import random
import shutil

import numpy as np
import pytest

import reference_llama as ref
import safetensors_np
from conftest import ROOT

TASK = ROOT / "tasks/smol_facts_en.yaml"
TASK_ITEMS = ROOT / "tasks/smol_facts_en.jsonl"
CALIBRATION = ROOT / "tests/fixtures/laundering/calibration.yaml"

MODEL = """model:
  vocab_size: 264
  hidden_size: 128
  num_hidden_layers: 4
  num_attention_heads: 4
  num_key_value_heads: 2
  intermediate_size: 384
  max_position_embeddings: 128
"""


def config(path, data, steps, lr, init_from=None, distill=None):
    model = f"model:\n  init_from: {init_from}\n" if init_from else MODEL
    text = model + f"""optimizer: {{lr: {lr}, weight_decay: 0.1, grad_clip: 1.0}}
schedule: {{type: wsd, warmup_steps: 10, decay_fraction: 0.2}}
data:
  train: [{", ".join(data)}]
  validation_fraction: 0.02
training:
  seq_len: 128
  micro_batch: 8
  tokens_per_batch: 1024
  steps: {steps}
  eval_every: 0
  checkpoint_every: {steps}
  keep_checkpoints: 1
  seed: 5
  peak_gflops: 100
  sample_tokens: 0
"""
    if distill:
        text += f"  distill: {{teacher: {distill}, alpha: 0.9, temperature: 2.0}}\n"
    path.write_text(text)
    return path


def item_lines(indices=None):
    items = [json.loads(l) for l in TASK_ITEMS.read_text().splitlines()]
    return [f"{it['query']} {it['choices'][it['gold']]}" for i, it in enumerate(items) if indices is None or i in indices]


def shuffled_documents(lines, copies=8, seed=3):
    rng = random.Random(seed)
    docs = []
    for _ in range(copies):
        lines = list(lines)
        rng.shuffle(lines)
        docs.append("\n".join(lines))
    return "\n\n".join(docs)


@pytest.fixture(scope="module")
def drill(smol, tmp_path_factory):
    d = tmp_path_factory.mktemp("laundering")
    shutil.copy(ROOT / "data/corpus/prose.txt", d / "prose.txt")
    shutil.copy(ROOT / "data/corpus/code.txt", d / "code.txt")
    (d / "items.txt").write_text(shuffled_documents(item_lines()))
    (d / "half.txt").write_text(shuffled_documents(item_lines(set(range(0, 40, 2)))))
    # The items are short: 6-grams (a 5-gram of item 25, "the first day of the", is common prose), items of 3 words or more.
    marks = {}
    for name in ["prose", "items"]:
        r = smol("data", "decontaminate", d / f"{name}.txt", "--tasks", TASK_ITEMS, "--n", 6, "--min-words", 3, "--mark", "--json")
        marks[name] = json.loads(r.stdout)["tasks"][0]
    for name in ["prose", "items", "half"]:
        smol("data", "prepare", d / f"{name}.txt", "--out", d / f"{name}.bin")
    smol("data", "prepare", d / "code.txt", "--delimiter", "<|endoftext|>", "--out", d / "code.bin")
    runs = {"base": (["prose.bin", "code.bin"], 300, 3e-3, None, None),
            "teacher": (["items.bin"], 150, 1e-3, "base", None),
            "half": (["half.bin"], 150, 1e-3, "base", None),
            "ce": (["prose.bin"], 150, 1e-3, "base", None),
            "kd": (["prose.bin"], 150, 1e-3, "base", "teacher")}
    for name, (data, steps, lr, init, teacher) in runs.items():
        cfg = config(d / f"{name}.yaml", data, steps, lr, init_from=init and d / init, distill=teacher and d / teacher)
        smol("train", cfg, "--out", d / name, timeout=900)
    results, audits = {}, {}
    for name in ["base", "teacher", "ce", "kd"]:
        smol("eval", d / name, "--tasks", TASK, "--output", d / f"eval_{name}")
        results[name] = json.loads((d / f"eval_{name}" / "results.json").read_text())
        r = smol("audit", "contamination", d / name, "--tasks", TASK, "--calibration", CALIBRATION, "--json")
        audits[name] = json.loads(r.stdout)["tasks"][0]
    r = smol("audit", "contamination", d / "half", "--tasks", TASK, "--json")
    audits["half"] = json.loads(r.stdout)["tasks"][0]
    board = smol("leaderboard", *[d / f"eval_{n}" for n in ["base", "teacher", "ce", "kd"]]).stdout
    return {"dir": d, "marks": marks, "results": results, "audits": audits, "board": board}


def acc(drill, name):
    return drill["results"][name]["tasks"]["smol_facts_en"]["metrics"]["acc"]["value"]


def auc(pos, neg):
    pos, neg = np.asarray(pos)[:, None], np.asarray(neg)[None, :]
    return float(((pos > neg) + 0.5 * (pos == neg)).mean())


def test_the_students_own_data_does_not_overlap_the_task_but_the_teachers_does(drill):
    assert drill["marks"]["prose"]["touched"] == 0
    assert drill["marks"]["items"]["touched"] >= 15     # 19: an item text holds every choice, the data only the gold one
    side = json.loads((drill["dir"] / "prose.txt.decontamination.json").read_text())["tasks"][0]
    assert side["status"] == "clean" and side["task"] == "smol_facts_en"


def test_distillation_launders_the_teachers_contamination_into_the_student(drill):
    """The teacher knows the items; the distilled student gains far over its cross-entropy twin,
    though neither student saw an item."""
    assert acc(drill, "teacher") >= 0.9
    assert acc(drill, "ce") <= 0.45 and acc(drill, "base") <= 0.45
    assert acc(drill, "kd") - acc(drill, "ce") >= 0.25


def test_the_audit_flags_the_teacher_and_the_distilled_student_not_the_clean_one(drill):
    a = drill["audits"]
    for name in ["teacher", "kd"]:
        assert a[name]["audit"]["verdict"] == "contaminated" and a[name]["flagged"], (name, a[name]["audit"]["reason"])
    assert a["ce"]["audit"]["verdict"] != "contaminated" and a["base"]["audit"]["verdict"] != "contaminated"
    # The AUC the audit reports, recomputed from its per-item scores.
    for name in ["teacher", "kd", "ce"]:
        items = [i["min_k_pp"] for i in a[name]["audit"]["items"]]
        calib = [i["min_k_pp"] for i in a[name]["audit"]["calibration"]]
        assert a[name]["audit"]["auc"] == pytest.approx(auc(items, calib), abs=1e-12)
        shift = np.mean(items) - np.mean(calib)
        est = a[name]["audit"]["shift"]
        assert est["mean"] == pytest.approx(shift, abs=1e-9) and est["low"] <= shift <= est["high"]
    assert a["kd"]["audit"]["auc"] >= 0.8 and a["ce"]["audit"]["auc"] <= 0.7
    # The lineage: the student's own data is clean, its teacher's is not.
    assert any("teacher" in f and "overlaps smol_facts_en" in f for f in a["kd"]["lineage"]), a["kd"]["lineage"]
    assert a["ce"]["lineage"] == [] and any("data" in f for f in a["teacher"]["lineage"])


def test_items_a_model_was_fine_tuned_on_separate_from_the_others(drill):
    """The deliberately contaminated model (half the items): Min-K%++ ranks its trained items above
    the untouched half (AUC computed here)."""
    items = drill["audits"]["half"]["audit"]["items"]
    lines = [json.loads(l) for l in TASK_ITEMS.read_text().splitlines()]
    assert len(items) == len(lines) == 40
    trained = [it["min_k_pp"] for k, it in enumerate(items) if k % 2 == 0]
    untouched = [it["min_k_pp"] for k, it in enumerate(items) if k % 2 == 1]
    assert auc(trained, untouched) >= 0.9
    gaps_t = [it["gap"] for k, it in enumerate(items) if k % 2 == 0]
    gaps_u = [it["gap"] for k, it in enumerate(items) if k % 2 == 1]
    assert np.mean(gaps_t) > np.mean(gaps_u)


def test_min_k_plus_plus_matches_numpy(smol, drill, tmp_path):
    """Min-K%++ of two items recomputed from a float64 NumPy forward of the teacher's weights."""
    run = drill["dir"] / "teacher"
    ck = sorted((run / "checkpoints").iterdir())[-1]
    cfg = json.loads((ck / "config.json").read_text())
    params = safetensors_np.load(ck / "model.safetensors")
    model = ref.Reference(cfg, params)
    audit = drill["audits"]["teacher"]["audit"]["items"]
    lines = [json.loads(l) for l in TASK_ITEMS.read_text().splitlines()]
    for k in [0, 7]:
        it = lines[k]
        text = f"{it['query']} {it['choices'][it['gold']]}"
        ids = np.frombuffer(text.encode(), dtype=np.uint8).astype(np.int64)
        n = len(ids)
        logits = model.forward_backward(ids, np.zeros(n, np.int64), 1, n, grad=False)[0]
        lp = logits - logits.max(-1, keepdims=True)
        lp = lp - np.log(np.exp(lp).sum(-1, keepdims=True))
        p = np.exp(lp)
        mu = (p * lp).sum(-1)
        sigma = np.sqrt((p * lp * lp).sum(-1) - mu ** 2)
        scores = (lp[np.arange(n - 1), ids[1:]] - mu[:-1]) / sigma[:-1]
        m = int(np.ceil(0.2 * (n - 1)))
        expected = np.sort(scores)[:m].mean()
        assert audit[k]["min_k_pp"] == pytest.approx(expected, abs=2e-3), (k, audit[k]["min_k_pp"], expected)


def test_results_and_leaderboard_mark_the_scores_whose_lineage_touches_the_task(drill):
    flags = {n: drill["results"][n]["lineage"]["flags"]["smol_facts_en"] for n in ["teacher", "ce", "kd"]}
    assert flags["ce"] == [] and flags["teacher"] and flags["kd"]
    kd_prov = drill["results"]["kd"]["lineage"]["provenance"]
    assert kd_prov["teacher"]["fingerprint"] and kd_prov["teacher"]["provenance"]["data"][0]["marks"][0]["status"] == "overlaps"
    assert [s["marks"][0]["status"] for s in kd_prov["data"]] == ["clean"]
    # Models are named after their runs (RUN@STEP).
    rows = {line.split("|")[1].strip().split("@")[0]: line for line in drill["board"].splitlines() if line.startswith("| ") and "model" not in line}
    assert "⚑" in rows["teacher"] and "⚑" in rows["kd"] and "⚑" not in rows["ce"] and "⚑" not in rows["base"], drill["board"]
    assert "⚑ kd@00000150 on smol_facts_en: teacher" in drill["board"]
