"""The needle-in-a-haystack task kind (RULER's single needle) on the real SmolLM2-135M-Instruct:
contexts counted again with Hugging Face `tokenizers` (at most the length asked, whole sentences),
the needle once at the asked depth of the filler, accuracy recomputed as RULER's string match, the
length × depth grid and its SVG heat map against the per-item details."""
import json
import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from conftest import ROOT
from smollm2 import GGUF, hf_tokenizer

PREAMBLE = "Some special magic numbers are hidden within the following text. Make sure to memorize it. I will quiz you about the numbers afterwards.\n"


def test_needle_task_contexts_scores_and_heat_map(smol, tmp_path):
    (tmp_path / "needle.yaml").write_text(
        f"name: needle\nkind: needle\ndata: {ROOT / 'data/corpus/prose.txt'}\nlengths: [96, 200]\ndepths: [0, 50, 100]\n"
        "needles_per_cell: 2\nmax_tokens: 10\n")
    smol("eval", GGUF, "--tasks", tmp_path / "needle.yaml", "--output", tmp_path / "out")
    details = [json.loads(line) for line in (tmp_path / "out/details/needle.jsonl").read_text().splitlines()]
    assert len(details) == 2 * 3 * 2
    tok = hf_tokenizer()
    for d in details:
        length, depth, value = d["needle_length"], d["needle_depth"], d["answers"][0]
        n = len(tok.encode(d["context"]).ids)
        assert n == d["tokens"][0] and 0.7 * length <= n <= length, (n, length)
        key = re.search(r"special magic number for (\w+) mentioned", d["context"]).group(1)
        needle = f"One of the special magic numbers for {key} is: {value}."
        assert d["context"].count(value) == 1 and d["context"].count(needle) == 1
        assert d["context"].startswith(PREAMBLE)
        filler = d["context"][len(PREAMBLE):d["context"].rindex("\n")]
        before, after = filler.split(needle)
        count = lambda s: len([x for x in re.split(r"(?<=[.!?]) ", s.strip()) if x])
        assert count(before) == round((count(before) + count(after)) * depth / 100), (depth, count(before), count(after))
        assert d["metrics"]["acc"] == float(value in d["prediction"])
        assert re.fullmatch(r"[1-9]\d{6}", value)                  # RULER's 7 digits by default
    results = json.loads((tmp_path / "out/results.json").read_text())
    grid = results["tasks"]["needle"]["needle_grid"]
    assert len(grid) == 6
    for cell in grid:
        hits = [d["metrics"]["acc"] for d in details if d["needle_length"] == cell["length"] and d["needle_depth"] == cell["depth"]]
        assert cell["n"] == 2 and cell["accuracy"] == pytest.approx(np.mean(hits))
    acc = np.array([d["metrics"]["acc"] for d in details])
    assert results["results"]["needle"]["acc"] == pytest.approx(acc.mean())
    svg = ET.parse(tmp_path / "out/needle.heatmap.svg").getroot()
    rects = [r for r in svg.iter("{http://www.w3.org/2000/svg}rect") if r.get("class") == "cell"]
    assert sorted((int(r.get("data-length")), float(r.get("data-depth")), float(r.get("data-accuracy"))) for r in rects) == \
        sorted((c["length"], c["depth"], c["accuracy"]) for c in grid)
    # Keys and values differ from item to item, and are drawn the same way every run (seeded).
    assert len({d["answers"][0] for d in details}) == len(details)
    smol("eval", GGUF, "--tasks", tmp_path / "needle.yaml", "--output", tmp_path / "again", "--limit", "3")
    again = [json.loads(line) for line in (tmp_path / "again/details/needle.jsonl").read_text().splitlines()]
    assert [d["context"] for d in again] == [d["context"] for d in details[:3]]
    (tmp_path / "needle2.yaml").write_text((tmp_path / "needle.yaml").read_text() + "value_digits: 2\n")
    smol("eval", GGUF, "--tasks", tmp_path / "needle2.yaml", "--output", tmp_path / "two", "--limit", "4")
    two = [json.loads(line) for line in (tmp_path / "two/details/needle.jsonl").read_text().splitlines()]
    assert len(two) == 4 and all(re.fullmatch(r"[1-9]\d", d["answers"][0]) and f"is: {d['answers'][0]}." in d["context"] for d in two)


def test_needle_tasks_that_cannot_run_are_refused(smol, tmp_path):
    prose = ROOT / "data/corpus/prose.txt"
    for text, needle in ((f"lengths: [16]\n", "lengths"), ("lengths: [40]\n", "cannot hold the question"), ("depths: [150]\n", "depths"), ("needles_per_cell: 0\n", "needles_per_cell"), ("value_digits: 19\n", "value_digits")):
        (tmp_path / "t.yaml").write_text(f"name: t\nkind: needle\ndata: {prose}\n" + text)
        r = smol("eval", GGUF, "--tasks", tmp_path / "t.yaml", "--output", tmp_path / "o", check=False)
        assert r.returncode == 1 and needle in r.stderr and "t.yaml" in r.stderr, r.stderr
    (tmp_path / "long.yaml").write_text(f"name: long\nkind: needle\ndata: {prose}\nlengths: [600]\n")
    r = smol("eval", GGUF, "--tasks", tmp_path / "long.yaml", "--context-length", "512", "--output", tmp_path / "o", check=False)
    assert r.returncode == 1 and "lengths" in r.stderr and "512" in r.stderr, r.stderr
