"""`smol data dedup` against the `datasketch` package's MinHash LSH (the same bands and rows, its
own hashing) on a generated corpus with planted exact and near duplicates: both find every planted
one, our removed set is reported as recall and precision against datasketch's, nothing unplanted
is removed, and the first occurrence is the one kept."""
import json
import random
import re

import pytest

WORDS = [f"w{i}" for i in range(3000)]


def corpus(seed=0):
    rng = random.Random(seed)
    base = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(80, 160))) + "." for _ in range(300)]
    docs, planted, borderline = [], {}, set()
    for i, d in enumerate(base):
        docs.append(d)
        original = len(docs) - 1
        if i % 10 == 3:                       # a near duplicate: ~1.5% of its words changed (Jaccard ≈ 0.9)
            words = d.split()
            for k in rng.sample(range(len(words)), max(1, len(words) // 70)):
                words[k] = rng.choice(WORDS)
            docs.append(" ".join(words))
            planted[len(docs) - 1] = ("near", original)
        if i % 15 == 7:                       # an exact duplicate
            docs.append(d)
            planted[len(docs) - 1] = ("exact", original)
        if i % 10 == 8:                       # borderline (Jaccard ≈ 0.7): LSH finds some, by chance
            words = d.split()
            for k in rng.sample(range(len(words)), max(1, len(words) // 30)):
                words[k] = rng.choice(WORDS)
            docs.append(" ".join(words))
            borderline.add(len(docs) - 1)
    return docs, planted, borderline


def normalize(text):
    return " ".join(re.sub(r"[^\w]|_", " ", text.lower()).split())


def datasketch_removed(docs, n=5, bands=14, rows=8):
    from datasketch import MinHash, MinHashLSH
    lsh = MinHashLSH(num_perm=bands * rows, params=(bands, rows))
    removed = set()
    for i, d in enumerate(docs):
        words = normalize(d).split()
        grams = {" ".join(words[k:k + n]) for k in range(len(words) - n + 1)} or {" ".join(words)}
        m = MinHash(num_perm=bands * rows, seed=1)
        for g in grams:
            m.update(g.encode())
        if lsh.query(m):
            removed.add(i)
        else:
            lsh.insert(str(i), m)
    return removed


def test_dedup_finds_the_planted_duplicates_as_datasketch_does(smol, tmp_path):
    docs, planted, borderline = corpus()
    half = len(docs) // 2
    (tmp_path / "a.jsonl").write_text("".join(json.dumps({"text": d, "id": i}) + "\n" for i, d in enumerate(docs[:half])))
    (tmp_path / "b.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in docs[half:]))
    r = smol("data", "dedup", tmp_path / "a.jsonl", tmp_path / "b.jsonl", "--out", tmp_path / "out")
    kept = [json.loads(x)["text"] for f in ("a", "b") for x in (tmp_path / "out" / f"{f}.jsonl").read_text().splitlines()]
    report = json.loads((tmp_path / "out/dedup_report.json").read_text())
    # Which documents were removed: the kept texts, in order, against the input.
    removed, k = set(), 0
    for i, d in enumerate(docs):
        if k < len(kept) and kept[k] == d:
            k += 1
        else:
            removed.add(i)
    assert k == len(kept)
    theirs = datasketch_removed(docs)
    assert set(planted) <= removed and set(planted) <= theirs          # every planted duplicate found by both
    assert removed <= set(planted) | borderline                         # nothing unplanted removed
    recall = len(removed & theirs) / len(theirs)
    precision = len(removed & theirs) / len(removed)
    found = len(removed & borderline), len(theirs & borderline)
    print(f"against datasketch: recall {recall:.3f}, precision {precision:.3f} ({len(removed)} removed, {len(theirs)} by datasketch); "
          f"borderline pairs found: {found[0]} by smol, {found[1]} by datasketch, of {len(borderline)}")
    assert recall >= 0.8 and precision >= 0.8
    exact = sum(1 for v in planted.values() if v[0] == "exact")
    assert report["exact_duplicates"] == exact and report["near_duplicates"] == len(removed) - exact
    assert report["kept"] == len(docs) - len(removed) and report["documents"] == len(docs)
    assert sum(s["documents"] for s in report["sources"]) == len(docs)
    assert report["parameters"] == {"ngram": 5, "bands": 14, "rows_per_band": 8, "seed": 1}
    # The first occurrence is kept: each planted document's original survives.
    for i, (_, original) in planted.items():
        assert original not in removed
    example = report["sources"][0]["removed"][0]
    assert example["document"].startswith(str(tmp_path / "a.jsonl")) and example["kind"] in ("exact", "near")
    assert "kept" in r.stdout


def test_dedup_refuses_clobbering_and_bad_parameters(smol, tmp_path):
    (tmp_path / "a.jsonl").write_text('{"text": "one two three four five six"}\n{"text": "one two three four five six"}\n')
    smol("data", "dedup", tmp_path / "a.jsonl", "--out", tmp_path / "o")
    assert len((tmp_path / "o/a.jsonl").read_text().splitlines()) == 1
    r = smol("data", "dedup", tmp_path / "a.jsonl", "--out", tmp_path / "o", check=False)
    assert r.returncode == 1 and "--force" in r.stderr
    r = smol("data", "dedup", tmp_path / "a.jsonl", "--out", tmp_path / "p", "--bands", "0", check=False)
    assert r.returncode != 0 and "--bands" in r.stderr


def test_dedup_memory_does_not_hold_the_texts(tmp_path):
    """Two passes (index, then the input again): peak RSS for 32 MB of JSONL stays near that for
    4 MB, the index holding a few hundred bytes per document and never their text."""
    from test_data_streaming import peak_rss
    rng = random.Random(5)
    for name, mb in (("small", 4), ("big", 32)):
        with open(tmp_path / f"{name}.jsonl", "w") as f:
            for _ in range(mb * 2**20 // 16000):
                f.write(json.dumps({"text": " ".join(rng.choice(WORDS) for _ in range(3000))}) + "\n")
    small = peak_rss(["data", "dedup", tmp_path / "small.jsonl", "--out", tmp_path / "s"])
    big = peak_rss(["data", "dedup", tmp_path / "big.jsonl", "--out", tmp_path / "b"])
    print(f"dedup peak RSS: {small / 2**20:.0f} MB for 4 MB of JSONL, {big / 2**20:.0f} MB for 32 MB")
    assert big < small + 16 * 2**20, (small, big)
    assert (tmp_path / "b/big.jsonl").stat().st_size > 30 * 2**20


def test_lineage_from_dedup_and_prepare_reaches_the_run_store(smol, tmp_path):
    """A run's data lineage: the manifest of a prepare over a dedup output records what dedup
    removed (exact and near, as Python counts from the kept texts) and what prepare rejected; a
    training on those shards carries both into the store, and `smol runs show` prints them."""
    from conftest import SMALL
    docs, planted, borderline = corpus(seed=2)
    lines = [json.dumps({"text": d}) for d in docs]
    (tmp_path / "web.jsonl").write_text("\n".join(lines) + "\n")
    smol("data", "dedup", tmp_path / "web.jsonl", "--out", tmp_path / "dedup")
    kept = [json.loads(x)["text"] for x in (tmp_path / "dedup/web.jsonl").read_text().splitlines()]
    removed, k = [], 0
    for i, d in enumerate(docs):
        if k < len(kept) and kept[k] == d:
            k += 1
        else:
            removed.append(i)
    exact = sum(1 for i in removed if docs[i] in docs[:i])
    (tmp_path / "extra.jsonl").write_text('{"text": "a short extra document"}\nnot json\n{"text": 3}\nnot json either\n')
    store = tmp_path / "runs.sqlite"
    m = json.loads(smol("data", "prepare", tmp_path / "dedup/web.jsonl", tmp_path / "extra.jsonl", "--out", tmp_path / "web.bin", "--json").stdout)
    (d,) = m["lineage"]["deduplicated"]
    assert (d["documents"], d["kept"], d["exact_duplicates"], d["near_duplicates"]) == (len(docs), len(kept), exact, len(removed) - exact)
    assert exact == sum(1 for v in planted.values() if v[0] == "exact") and len(removed) - exact >= 1
    cfg = tmp_path / "small.yaml"
    cfg.write_text(SMALL.replace("train: [SHARDS/prose.bin, SHARDS/code.bin]", f"train: [{tmp_path / 'web.bin'}]").replace("steps: 24", "steps: 2"))
    smol("train", cfg, "--out", tmp_path / "run", "--store", store)
    shown = json.loads(smol("runs", "show", "small", "--store", store, "--json").stdout)
    (data,) = shown["data"]
    assert data["source"] == "train" and data["manifest"] == str(tmp_path / "web.manifest.json")
    assert data["documents"] == len(kept) + 1 and data["rejected"] == {"malformed JSON": 2, "text field 'text' is not a string": 1}
    assert data["deduplicated"] == [d]
    text = smol("runs", "show", "small", "--store", store).stdout
    assert f"dedup removed {exact} exact and {len(removed) - exact} near duplicate(s) of {len(docs)}" in text
    assert "prepare rejected 3 (2 malformed JSON, 1 text field 'text' is not a string)" in text
