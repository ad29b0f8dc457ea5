"""`smol data prepare` streams its inputs: records cut across read chunks of any size come out as
Python splits the whole file; .gz and .zst inputs (written here by Python's gzip and the
`zstandard` package) give the bytes of the plain file's shards; corrupt or truncated archives are
errors naming the file and offset; and peak memory does not grow with the input."""
import gzip
import json
import os
import subprocess
import sys

import pytest

from conftest import smol_binary
from test_data import read_shard

EOS = 256     # the byte-level tokenizer's end of text


def blank_line_documents(raw):
    """The .txt rule: blocks between blank lines, their surrounding newlines dropped, empty ones skipped."""
    return [b.strip(b"\r\n") for b in raw.split(b"\n\n") if b.strip(b"\r\n")]


TXT = (b"\n\nfirst block\nstill first\n\n\n\nsecond \xc3\xa9 block\r\n\r\n\n\nthird\n\n" + b"x" * 40 + b"\n\nlast, no newline")
DELIMITED = b"one<|endoftext|>two two<|endoftext|><|endoftext|>three<|endo" + b"ftext|>four"
JSONL = (b'{"text": "a"}\r\n\n{"text": "b\\u00e9"}\n' + b'{"text": "caf\xe9"}\n' + b'{"text": "' + b"y" * 50 + b'"}\n{"text": "end"}')


@pytest.mark.parametrize("chunk", ["1", "2", "3", "7", "64", None])
def test_records_cut_across_chunks_come_out_as_python_splits_the_file(smol, tmp_path, chunk):
    env = {"SMOL_READ_CHUNK_BYTES": chunk} if chunk else None
    (tmp_path / "a.txt").write_bytes(TXT)
    (tmp_path / "d.txt").write_bytes(DELIMITED)
    (tmp_path / "j.jsonl").write_bytes(JSONL)
    smol("data", "prepare", tmp_path / "a.txt", "--out", tmp_path / "a.bin", env=env)
    assert read_shard(tmp_path / "a.bin") == [list(d) + [EOS] for d in blank_line_documents(TXT)]
    smol("data", "prepare", tmp_path / "d.txt", "--delimiter", "<|endoftext|>", "--out", tmp_path / "d.bin", env=env)
    assert read_shard(tmp_path / "d.bin") == [list(d) + [EOS] for d in DELIMITED.split(b"<|endoftext|>") if d]
    m = json.loads(smol("data", "prepare", tmp_path / "j.jsonl", "--out", tmp_path / "j.bin", "--json", env=env).stdout)
    texts = [json.loads(l)["text"] for l in JSONL.split(b"\n") if l.strip() and b"\xe9\"" not in l]
    assert read_shard(tmp_path / "j.bin") == [list(t.encode()) + [EOS] for t in texts]
    assert m["rejected"]["reasons"]["blank line"]["first"] == [f"{tmp_path / 'j.jsonl'}:2"]
    assert m["rejected"]["reasons"]["invalid UTF-8"]["first"] == [f"{tmp_path / 'j.jsonl'}:4"]


def test_compressed_inputs_give_the_plain_files_shards(smol, tmp_path):
    import zstandard
    src = tmp_path / "src"
    src.mkdir()
    prose = (src / "p.txt")
    prose.write_bytes(TXT * 200)
    lines = b"".join(json.dumps({"text": f"document {i} " * (i % 7 + 1)}).encode() + b"\n" for i in range(3000))
    (src / "j.jsonl").write_bytes(lines)
    for name in ("p.txt", "j.jsonl"):
        data = (src / name).read_bytes()
        (tmp_path / (name + ".gz")).write_bytes(gzip.compress(data))
        (tmp_path / (name + ".zst")).write_bytes(zstandard.ZstdCompressor(level=3).compress(data))
        smol("data", "prepare", src / name, "--out", tmp_path / f"plain-{name}.bin")
        plain = (tmp_path / f"plain-{name}.bin").read_bytes()
        for ext in ("gz", "zst"):
            smol("data", "prepare", tmp_path / f"{name}.{ext}", "--out", tmp_path / f"{name}-{ext}.bin", env={"SMOL_READ_CHUNK_BYTES": "1000"})
            assert (tmp_path / f"{name}-{ext}.bin").read_bytes() == plain, (name, ext)
    # A directory walk takes compressed files too.
    walked = tmp_path / "walk"
    walked.mkdir()
    (walked / "j.jsonl.zst").write_bytes((tmp_path / "j.jsonl.zst").read_bytes())
    m = json.loads(smol("data", "prepare", walked, "--out", tmp_path / "w.bin", "--json").stdout)
    assert m["documents"] == 3000


@pytest.mark.parametrize("name, damage, message", [
    ("t.jsonl.gz", "truncate", "corrupt or truncated gzip data at compressed byte"),
    ("t.jsonl.zst", "truncate", "truncated zstd data at compressed byte"),
    ("t.jsonl.zst", "flip", "corrupt zstd data at compressed byte"),
    ("t.jsonl.gz", "plain", "not gzip data"),
])
def test_a_damaged_archive_is_an_error_naming_file_and_offset(smol, tmp_path, name, damage, message):
    import zstandard
    data = b"".join(json.dumps({"text": f"record {i} " * 20}).encode() + b"\n" for i in range(20000))
    packed = gzip.compress(data) if name.endswith(".gz") else zstandard.ZstdCompressor(write_checksum=True).compress(data)
    if damage == "truncate":
        packed = packed[:len(packed) // 2]
    elif damage == "flip":
        packed = bytearray(packed)
        for i in range(len(packed) // 2, len(packed) // 2 + 64):
            packed[i] ^= 0x5A
        packed = bytes(packed)
    else:
        packed = data
    (tmp_path / name).write_bytes(packed)
    r = smol("data", "prepare", tmp_path / name, "--out", tmp_path / "out", "--shard-tokens", "100000", check=False)
    assert r.returncode == 1 and f"{tmp_path / name}: {message}" in r.stderr, r.stderr
    assert "Fatal error" not in r.stderr
    assert not any(p.suffix == ".bin" for p in (tmp_path / "out").glob("*")) if (tmp_path / "out").exists() else True


def peak_rss(args):
    """The command's peak RSS. A forked child's ru_maxrss starts from its parent's RSS at the fork,
    and pytest's grows large over the suite, so a small fresh Python process forks it and waits."""
    code = ("import os, sys\n"
            "pid = os.fork()\n"
            "if pid == 0:\n"
            "    fd = os.open(os.devnull, os.O_WRONLY); os.dup2(fd, 1)\n"
            "    os.execv(sys.argv[1], sys.argv[1:])\n"
            "_, status, usage = os.wait4(pid, 0)\n"
            "print(os.waitstatus_to_exitcode(status), usage.ru_maxrss * 1024)\n")
    r = subprocess.run([sys.executable, "-c", code, smol_binary(), *map(str, args)], capture_output=True, text=True, check=True)
    status, rss = map(int, r.stdout.split())
    assert status == 0, r.stderr
    return rss


def test_peak_memory_does_not_grow_with_the_input(tmp_path):
    line = json.dumps({"text": "the quick brown fox jumps over the lazy dog " * 40, "id": 1}).encode() + b"\n"
    for name, mb in (("small", 16), ("big", 128)):
        with open(tmp_path / f"{name}.jsonl", "wb") as f:
            for _ in range(mb * 2**20 // len(line)):
                f.write(line)
    small = peak_rss(["data", "prepare", tmp_path / "small.jsonl", "--out", tmp_path / "s"])
    big = peak_rss(["data", "prepare", tmp_path / "big.jsonl", "--out", tmp_path / "b"])
    print(f"peak RSS: {small / 2**20:.0f} MB for 16 MB of JSONL, {big / 2**20:.0f} MB for 128 MB")
    assert big < small + 64 * 2**20 and big < 512 * 2**20, (small, big)


def test_a_killed_prepare_resumes_to_the_uninterrupted_output(smol, tmp_path):
    import signal
    import time
    line = json.dumps({"text": "every shard is closed before its resume point is written " * 30}).encode() + b"\n"
    lines = [line.replace(b"every", f"record {i:06d}".encode()) for i in range(24000)]
    (tmp_path / "in.jsonl").write_bytes(b"".join(lines[:5] + [b"not json\n"] + lines[5:]))
    args = ["data", "prepare", tmp_path / "in.jsonl", "--name", "c", "--shard-tokens", "2000000"]
    smol(*args, "--out", tmp_path / "full")
    out = tmp_path / "killed"
    p = subprocess.Popen([smol_binary(), *map(str, args), "--out", str(out)], env={**os.environ, "SMOL_THREADS": "1"},
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not (out / "c.resume.json").exists() and p.poll() is None:
        time.sleep(0.002)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert p.returncode == -signal.SIGKILL, "the prepare finished before it could be killed"
    assert not list(out.glob("*.bin")) and not (out / "c.manifest.json").exists()
    r = smol(*args, "--out", out, check=False)
    assert r.returncode == 1 and "--resume continues it" in r.stderr
    r = smol(*args[:-1], "3000000", "--out", out, "--resume", check=False)
    assert r.returncode == 1 and "other inputs or options" in r.stderr
    smol(*args, "--out", out, "--resume")
    full = sorted(p.name for p in (tmp_path / "full").iterdir())
    assert sorted(p.name for p in out.iterdir()) == full and len(full) > 3
    for name in full:
        assert (out / name).read_bytes() == (tmp_path / "full" / name).read_bytes(), name


MPIRUN = ["mpirun", *(["--allow-run-as-root"] if os.geteuid() == 0 else []), "--oversubscribe"]


def mpirun_prepare(np_, *args, check=True):
    r = subprocess.run([*MPIRUN, "-np", str(np_), smol_binary(), "data", "prepare", *map(str, args)],
                       capture_output=True, text=True, timeout=300, env={**os.environ, "SMOL_THREADS": "1"})
    if check and r.returncode != 0:
        raise AssertionError(f"mpirun -np {np_} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return r


def test_mpirun_prepare_splits_the_input_and_writes_one_process_output(smol, tmp_path):
    """Ranks take byte ranges of the large files (a .jsonl cut after a newline, a .txt after a blank
    line) and whole compressed files; rank 0 writes shards and manifest byte-identical to one
    process's, with every rejection's line placed as Python counts it, though the bad records lie
    in the later ranks' ranges."""
    import random
    r = random.Random(3)
    words = "the quick brown fox jumps over a lazy dog while seven wizards quietly hex".split()
    lines, bad = [], {"malformed JSON": [], "text field 'text' is not a string": []}
    for i in range(4000):
        if i > 2500 and i % 97 == 0:
            lines.append(b"{not json"); bad["malformed JSON"].append(i + 1)
        elif i > 2500 and i % 89 == 0:
            lines.append(b'{"text": 7}'); bad["text field 'text' is not a string"].append(i + 1)
        else:
            lines.append(json.dumps({"text": " ".join(r.choice(words) for _ in range(r.randint(5, 60)))}).encode())
    (tmp_path / "a.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    blocks = [" ".join(r.choice(words) for _ in range(r.randint(3, 80))) for _ in range(3000)]
    (tmp_path / "b.txt").write_bytes("".join(b + ("\n\n\n\n" if i % 5 == 0 else "\n\n") for i, b in enumerate(blocks)).encode())
    with gzip.open(tmp_path / "c.jsonl.gz", "wb") as f:
        f.write(b"".join(json.dumps({"text": w * 30}).encode() + b"\n" for w in words))
    inputs = [tmp_path / "a.jsonl", tmp_path / "c.jsonl.gz", tmp_path / "b.txt"]
    one = json.loads(smol("data", "prepare", *inputs, "--out", tmp_path / "one", "--name", "x", "--shard-tokens", "60000", "--json").stdout)
    expected = {reason: {"count": len(at), "first": [f"{tmp_path / 'a.jsonl'}:{n}" for n in at[:5]]} for reason, at in bad.items()}
    assert one["rejected"]["reasons"] == expected
    assert len(one["shards"]) > 4
    for np_ in (2, 3):
        out = tmp_path / f"np{np_}"
        r = mpirun_prepare(np_, *inputs, "--out", out, "--name", "x", "--shard-tokens", "60000", "--json")
        assert json.loads(r.stdout) == one                       # rank 0 alone prints
        assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in (tmp_path / "one").iterdir())
        for p in (tmp_path / "one").iterdir():
            assert (out / p.name).read_bytes() == p.read_bytes(), (np_, p.name)
    # --strict: the first bad record in input order, at the line Python counts, though a later rank holds it.
    r = mpirun_prepare(2, *inputs, "--out", tmp_path / "strict", "--strict", check=False)
    first = min(min(v) for v in bad.values())
    assert r.returncode == 1 and f"a.jsonl:{first}:" in r.stderr and r.stderr.count("error:") == 1, r.stderr
    assert not (tmp_path / "strict").exists() or not list((tmp_path / "strict").iterdir())
    r = mpirun_prepare(2, tmp_path / "a.jsonl", "--out", tmp_path / "res", "--resume", check=False)
    assert r.returncode == 1 and "one process" in r.stderr


def python_verdict(line: bytes):
    """What a JSONL line is, by Python's `json` (RFC 8259 as smol reads it: no NaN/Infinity, no
    top-level scalar, no lone surrogate in any string): ("text", str) or a rejection reason."""
    if line.strip(b" \t") == b"":
        return "blank line"
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        return "invalid UTF-8"

    def no_constant(name):
        raise ValueError(name)
    try:
        obj = json.loads(text, parse_constant=no_constant)
        every = json.loads(text, object_pairs_hook=lambda pairs: [x for kv in pairs for x in kv])   # duplicates kept
    except (ValueError, RecursionError):
        return "malformed JSON"

    def strings(v):
        if isinstance(v, str):
            yield v
        elif isinstance(v, list):
            for x in v:
                yield from strings(x)
    if not isinstance(obj, (dict, list)) or any(0xD800 <= ord(c) <= 0xDFFF for s in strings(every) for c in s):
        return "malformed JSON"
    if not isinstance(obj, dict) or "text" not in obj:
        return "missing text field 'text'"
    if not isinstance(obj["text"], str):
        return "text field 'text' is not a string"
    if obj["text"].strip() == "":
        return "empty document"
    return ("text", obj["text"])


def test_jsonl_records_are_read_as_python_json_reads_them(smol, tmp_path):
    """smol's own JSONL field reader against Python's `json` on 3,000 lines: valid records with every
    kind of escape (surrogate pairs, \\u0000, slashes), nesting, numbers and duplicate keys, and the
    same lines mutated at random (quotes, brackets, commas, escapes, digits, letters of literals).
    Every line's verdict and every accepted text agree."""
    import random
    r = random.Random(11)
    words = ["plain", "caf\u00e9", "\U0001F600 emoji", "tab\there", "quote\"d", "back\\slash", "a/b", "nul\u0000",
             "\u4e2d\u6587", "new\nline", "\u0627\u0644\u0639\u0631\u0628\u064a\u0629"]

    def value(depth=0):
        k = r.randrange(7 if depth < 3 else 4)
        if k == 0: return r.choice(words)
        if k == 1: return r.choice([0, -1, 3.25, 1e-7, 12345678901234567890, -0.5e3, True, False, None])
        if k == 2: return " ".join(r.choice(words) for _ in range(r.randint(0, 4)))
        if k == 3: return r.choice(["", "x"])
        if k in (4, 5): return {r.choice(["a", "text", "b\u00e9", ""]): value(depth + 1) for _ in range(r.randint(0, 3))}
        return [value(depth + 1) for _ in range(r.randint(0, 3))]

    lines = []
    for i in range(1500):
        rec = {"id": i, "text": " ".join(r.choice(words) for _ in range(r.randint(1, 6)))}
        if r.random() < 0.3: rec["meta"] = value()
        if r.random() < 0.1: rec = {"text": value(), **{k: v for k, v in rec.items() if k != "text"}}
        s = json.dumps(rec, ensure_ascii=r.random() < 0.5)
        if r.random() < 0.1: s = s[:-1] + ', "text": "the last one wins"}'
        if r.random() < 0.1: s = " \t" + s + " \r"
        lines.append(s.encode())
    for s in list(lines):
        b = bytearray(s)
        for _ in range(r.randint(1, 3)):
            at = r.randrange(len(b))
            op = r.randrange(3)
            piece = r.choice([b'"', b"\\", b"{", b"}", b"[", b"]", b",", b":", b"0", b"-", b"e", b".", b"t", b"n", b"\\u", b"\\ud83d", b" ", b"\x01", b"\xc3"])
            if op == 0: b[at:at + 1] = piece
            elif op == 1: b[at:at] = piece
            else: del b[at:at + r.randint(1, 3)]
        lines.append(bytes(b).replace(b"\n", b" "))
    (tmp_path / "in.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    m = json.loads(smol("data", "prepare", tmp_path / "in.jsonl", "--out", tmp_path / "out.bin", "--json").stdout)
    verdicts = [python_verdict(line) for line in lines]
    texts = [v[1] for v in verdicts if isinstance(v, tuple)]
    assert read_shard(tmp_path / "out.bin") == [list(t.encode("utf-8")) + [EOS] for t in texts]
    expected = {}
    for n, v in enumerate(verdicts, 1):
        if not isinstance(v, tuple):
            e = expected.setdefault(v, {"count": 0, "first": []})
            e["count"] += 1
            if len(e["first"]) < 5: e["first"].append(f"{tmp_path / 'in.jsonl'}:{n}")
    assert m["rejected"]["reasons"] == expected
    assert len(texts) > 1500 and expected["malformed JSON"]["count"] > 300, (len(texts), {k: v["count"] for k, v in expected.items()})


def test_prepare_bad_input_at_scale(smol, tmp_path):
    """The issue's bad inputs for a prepare: a 50 MB single line is one document; a full disk
    (RLIMIT_FSIZE, SIGXFSZ ignored) and an input that disappears mid-run each stop with exit 1 naming
    the file, by no signal, leaving no complete-looking shard and no manifest."""
    import resource
    import signal
    import time
    big = "x" * (50 * 2**20)
    (tmp_path / "one.jsonl").write_text(json.dumps({"text": big}) + "\n")
    m = json.loads(smol("data", "prepare", tmp_path / "one.jsonl", "--out", tmp_path / "one.bin", "--json").stdout)
    assert (m["documents"], m["tokens"]) == (1, len(big) + 1)
    (tmp_path / "one.txt").write_text(big)
    assert json.loads(smol("data", "prepare", tmp_path / "one.txt", "--out", tmp_path / "t.bin", "--json").stdout)["tokens"] == len(big) + 1

    def limited():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (20 * 2**20, resource.RLIM_INFINITY))
    r = subprocess.run([smol_binary(), "data", "prepare", str(tmp_path / "one.jsonl"), "--out", str(tmp_path / "full")],
                       capture_output=True, text=True, preexec_fn=limited, timeout=300)
    assert r.returncode == 1 and "error:" in r.stderr and str(tmp_path / "full") in r.stderr, (r.returncode, r.stderr)
    assert not list((tmp_path / "full").glob("*"))               # the partial shard is removed too

    line = json.dumps({"text": "a document that takes a while to read " * 20}) + "\n"
    (tmp_path / "a.jsonl").write_text(line * 60000)
    (tmp_path / "b.jsonl").write_text(line)
    out = tmp_path / "gone"
    p = subprocess.Popen([smol_binary(), "data", "prepare", str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl"), "--out", str(out),
                          "--shard-tokens", "100000"], env={**os.environ, "SMOL_THREADS": "1"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while not list(out.glob("*.partial")) and p.poll() is None:
        time.sleep(0.002)
    (tmp_path / "b.jsonl").unlink()
    _, err = p.communicate(timeout=300)
    assert p.returncode == 1 and "b.jsonl" in err and "cannot open" in err, (p.returncode, err)
    assert not list(out.glob("*.bin")) and not list(out.glob("*.partial")) and not list(out.glob("*manifest*"))
