"""The 3C3H judge and `smol serve`: recorded judge replies (well-formed and malformed) parsed and
scored against the rubric's formula written again here; a real HTTP round trip to `smol serve`
on loopback with the official `openai` Python client and with `smol judge`; retries, caching and
aggregates against a judge endpoint that replays recorded replies; Cohen's κ by hand."""
import json
import math
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from conftest import ROOT, smol_binary
from smollm2 import GGUF

REPLIES = ROOT / "tests/fixtures/judge/replies.jsonl"
MODEL_ID = "SmolLM2-135M-Instruct.Q4_1"


def three_c_three_h(c1, c2, c3, h1, h2, h3):
    """AraGen: 1/6 · c1 · (1 + c2 + (c3−1)/4 + (h1−1)/4 + (h2−1)/4 + (h3−1)/4)."""
    return c1 * (1 + c2 + (c3 - 1) / 4 + (h1 - 1) / 4 + (h2 - 1) / 4 + (h3 - 1) / 4) / 6


# Read off the recorded replies by hand: (correctness, completeness, conciseness, helpfulness, honesty, harmlessness)
EXPECTED = {"tags": (1, 1, 5, 4, 5, 5), "fenced": (1, 0, 3, 3, 2, 5), "incorrect": (0, 1, 5, 2, 4, 5),
            "strings": (1, 1, 4, 3, 4, 5), "braces": (1, 1, 2, 2, 3, 4)}
MALFORMED = {"missing": "harmlessness", "range": "conciseness", "binary": "correctness", "unclosed": "not closed",
             "prose": "no JSON", "broken-json": "no JSON", "fraction": "conciseness"}


def test_recorded_replies_parse_and_score(smol):
    out = [json.loads(line) for line in smol("judge", "parse", REPLIES).stdout.splitlines()]
    names = [json.loads(line)["name"] for line in REPLIES.read_text().splitlines()]
    assert len(out) == len(names)
    for name, o in zip(names, out):
        if name in EXPECTED:
            keys = ["correctness", "completeness", "conciseness", "helpfulness", "honesty", "harmlessness"]
            assert tuple(o["scores"][k] for k in keys) == EXPECTED[name], name
            assert o["score"] == pytest.approx(three_c_three_h(*EXPECTED[name]), abs=1e-12), name
            assert "{\"" not in o["reasoning"] and "<results1>" not in o["reasoning"]
        else:
            assert "scores" not in o and MALFORMED[name] in o["error"], (name, o)


@pytest.fixture(scope="module")
def server():
    p = subprocess.Popen([smol_binary(), "serve", GGUF, "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    assert "http://127.0.0.1:" in line, line + p.stderr.read()
    base = line.strip().split(" on ")[1]
    yield base
    p.terminate()
    p.wait(timeout=30)


def test_openai_client_round_trip(server):
    import openai
    client = openai.OpenAI(base_url=server, api_key="unused")
    assert [m.id for m in client.models.list().data] == [MODEL_ID]
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    r = client.chat.completions.create(model=MODEL_ID, messages=messages, temperature=0, max_tokens=40)
    assert r.choices[0].message.content == "The capital of France is Paris."   # as `smol generate --chat` answers
    assert r.choices[0].finish_reason == "stop" and r.usage.completion_tokens > 0
    stream = client.chat.completions.create(model=MODEL_ID, messages=messages, temperature=0, max_tokens=40, stream=True)
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == r.choices[0].message.content
    assert chunks[-1].choices[0].finish_reason == "stop"
    c = client.completions.create(model=MODEL_ID, prompt="The capital of France is", temperature=0, max_tokens=8)
    assert c.choices[0].finish_reason == "length" and len(c.choices[0].text) > 0


def test_serve_answers_matches_generate(smol, server):
    import openai
    client = openai.OpenAI(base_url=server, api_key="unused")
    ours = json.loads(smol("generate", GGUF, "--prompt", "Once upon a time", "--greedy", "--max-tokens", "12", "--json").stdout)
    c = client.completions.create(model=MODEL_ID, prompt="Once upon a time", temperature=0, max_tokens=12)
    assert c.choices[0].text == ours["text"]


def raw(base, method, path, body=None, headers=None):
    import http.client
    host, port = base.split("//")[1].split("/")[0].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    conn.request(method, path, body=body, headers=headers or {"Content-Type": "application/json"})
    r = conn.getresponse()
    data = r.read()
    conn.close()
    return r.status, data


def test_serve_bad_requests_get_json_4xx(server):
    cases = [
        ("POST", "/v1/chat/completions", b"{not json", 400),
        ("POST", "/v1/chat/completions", b'{"messages": []}', 400),
        ("POST", "/v1/chat/completions", b'{"messages": "hi"}', 400),
        ("POST", "/v1/chat/completions", b'{"messages": [{"role": "wizard", "content": "x"}]}', 400),
        ("POST", "/v1/chat/completions", b'{"model": "gpt-9", "messages": [{"role": "user", "content": "x"}]}', 404),
        ("POST", "/v1/chat/completions", b'{"messages": [{"role": "user", "content": "x"}], "n": 2}', 400),
        ("POST", "/v1/chat/completions", b'{"messages": [{"role": "user", "content": "x"}], "temperature": -1}', 400),
        ("POST", "/v1/chat/completions", b'{"messages": [{"role": "user", "content": "x"}], "max_tokens": 0}', 400),
        ("POST", "/v1/completions", b'{"prompt": 3}', 400),
        ("POST", "/v1/completions", json.dumps({"prompt": "word " * 9000}).encode(), 400),   # longer than the context
        ("POST", "/v1/completions", b'{"prompt": "' + b"x" * (5 << 20) + b'"}', 413),
        ("GET", "/v1/nothing", None, 404),
    ]
    for method, path, body, status in cases:
        got, data = raw(server, method, path, body)
        assert got == status, (path, body[:80] if body else None, got, data[:200])
        err = json.loads(data)["error"]
        assert err["message"] and err["type"], data
    assert raw(server, "GET", "/v1/models")[0] == 200   # still serving


def judge_items(tmp_path):
    items = [
        {"id": "a", "task": "qa", "question": "What is the capital of France?", "reference": "Paris."},
        {"id": "b", "task": "qa", "question": "How many days are in a week?", "reference": "Seven."},
        {"id": "c", "task": "chat", "question": "Name a primary colour.", "reference": "Red, blue or yellow.",
         "follow_up": {"question": "Name another one.", "reference": "Another of red, blue or yellow."}},
    ]
    path = tmp_path / "items.jsonl"
    path.write_text("".join(json.dumps(i) + "\n" for i in items))
    return path


def test_judge_through_smol_serve(smol, server, tmp_path):
    """A real HTTP round trip: SmolLM2 answers the items and judges them through `smol serve`.
    A 135M model does not write the scores' JSON: its replies must be counted as unparseable."""
    items = judge_items(tmp_path)
    args = ["judge", "score", items, "--candidate", GGUF, "--base-url", server, "--judge-model", MODEL_ID,
            "--output", tmp_path / "out", "--cache", tmp_path / "cache.jsonl", "--repeats", "2", "--json"]
    s = json.loads(smol(*args).stdout)
    judgements = [json.loads(line) for line in (tmp_path / "out/judgements.jsonl").read_text().splitlines()]
    assert s["total_replies"] == len(judgements) == 2 * 4 and s["requests_sent"] == 8 and s["cached_replies"] == 0
    assert s["unparseable_replies"] == sum("parse_error" in j for j in judgements)
    assert all(j["reply"] for j in judgements)
    answers = [json.loads(line) for line in (tmp_path / "out/answers.jsonl").read_text().splitlines()]
    assert answers[0]["answer"] == "The capital of France is Paris."
    assert answers[2]["follow_up"]["answer"]
    again = json.loads(smol(*args).stdout)
    assert again["requests_sent"] == 0 and again["cached_replies"] == 8


class RecordedJudge(BaseHTTPRequestHandler):
    """Replays recorded judge replies by question; the first `fail` requests get a 503."""
    replies, fail, seen = {}, 0, []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        RecordedJudge.seen.append((self.headers.get("Authorization"), body))
        if len(RecordedJudge.seen) <= RecordedJudge.fail:
            self.send_response(503); self.end_headers(); self.wfile.write(b"busy"); return
        user = body["messages"][-1]["content"]
        question = user.split("Question:\n")[1].split("\n\n")[0]
        reply = RecordedJudge.replies[question]
        if reply == "HTTP400":
            self.send_response(400); self.send_header("Content-Type", "application/json"); self.end_headers()
            self.wfile.write(json.dumps({"error": {"message": "context too long", "type": "invalid_request_error"}}).encode()); return
        out = {"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
               "choices": [{"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}],
               "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}
        data = json.dumps(out).encode()
        self.send_response(200); self.send_header("Content-Type", "application/json"); self.send_header("Content-Length", str(len(data)))
        self.end_headers(); self.wfile.write(data)

    def log_message(self, *a):
        pass


@pytest.fixture
def recorded_judge():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), RecordedJudge)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()


def tagged(scores):
    keys = ["correctness", "completeness", "conciseness", "helpfulness", "honesty", "harmlessness"]
    return "Reasoning here.\n<results1>" + json.dumps(dict(zip(keys, scores))) + "</results1>"


def test_judge_scores_retries_and_cache(smol, recorded_judge, tmp_path):
    items = tmp_path / "items.jsonl"
    rows = [{"id": "a", "task": "qa", "question": "Q1?", "reference": "R1", "answer": "A1"},
            {"id": "b", "task": "qa", "question": "Q2?", "reference": "R2", "answer": "A2"},
            {"id": "c", "task": "qa", "question": "Q3?", "reference": "R3", "answer": "A3"},
            {"id": "d", "task": "chat", "question": "Q4?", "reference": "R4", "answer": "A4",
             "follow_up": {"question": "Q5?", "reference": "R5", "answer": "A5"}}]
    items.write_text("".join(json.dumps(r) + "\n" for r in rows))
    s = {"Q1?": (1, 1, 5, 4, 5, 5), "Q2?": (0, 1, 5, 5, 5, 5), "Q4?": (1, 1, 3, 4, 4, 5), "Q5?": (1, 0, 5, 3, 5, 5)}
    RecordedJudge.replies = {q: tagged(v) for q, v in s.items()}
    RecordedJudge.replies["Q3?"] = "I think it is good. Scores: correctness 1"   # malformed: counted, not scored
    RecordedJudge.fail, RecordedJudge.seen = 2, []
    out = json.loads(smol("judge", "score", items, "--base-url", recorded_judge, "--judge-model", "judge-x", "--backoff", "0.05",
                          "--output", tmp_path / "out", "--cache", tmp_path / "cache.jsonl", "--json",
                          env={"OPENAI_API_KEY": "sk-test"}).stdout)
    assert len(RecordedJudge.seen) == 5 + 2 and out["requests_sent"] == 7   # two 503s retried
    assert RecordedJudge.seen[0][0] == "Bearer sk-test" and RecordedJudge.seen[0][1]["temperature"] == 0
    item_scores = {"a": three_c_three_h(*s["Q1?"]), "b": three_c_three_h(*s["Q2?"]),
                   "d": (2 * three_c_three_h(*s["Q4?"]) + three_c_three_h(*s["Q5?"])) / 3}
    v = np.array(list(item_scores.values()))
    assert out["scored_items"] == 3 and out["unparseable_replies"] == 1 and out["total_replies"] == 5
    assert out["overall"]["value"] == pytest.approx(v.mean(), abs=1e-12)
    assert out["overall"]["stderr"] == pytest.approx(v.std(ddof=1) / math.sqrt(3), abs=1e-12)
    assert out["tasks"]["qa"]["value"] == pytest.approx((item_scores["a"] + item_scores["b"]) / 2, abs=1e-12)
    assert out["tasks"]["chat"]["value"] == pytest.approx(item_scores["d"], abs=1e-12)
    # Cached: nothing is sent again.
    RecordedJudge.seen = []
    again = json.loads(smol("judge", "score", items, "--base-url", recorded_judge, "--judge-model", "judge-x",
                            "--output", tmp_path / "out2", "--cache", tmp_path / "cache.jsonl", "--json").stdout)
    assert RecordedJudge.seen == [] and again["cached_replies"] == 5 and again["overall"] == out["overall"]
    # A different judge name is a different cache key.
    RecordedJudge.replies["Q3?"] = "HTTP400"
    r = smol("judge", "score", items, "--base-url", recorded_judge, "--judge-model", "judge-y", "--output", tmp_path / "out3",
             "--cache", tmp_path / "cache.jsonl", check=False)
    assert r.returncode == 1 and "HTTP 400" in r.stderr and "context too long" in r.stderr
    assert (tmp_path / "out/judge_results.json").exists()   # earlier results untouched


def test_judge_gives_up_after_attempts(smol, recorded_judge, tmp_path):
    items = judge_items(tmp_path)
    RecordedJudge.fail, RecordedJudge.seen = 100, []
    lines = [json.loads(line) for line in items.read_text().splitlines()]
    items.write_text("".join(json.dumps(dict(r, answer="x")) + "\n" for r in lines[:1]))
    r = smol("judge", "score", items, "--base-url", recorded_judge, "--judge-model", "j", "--attempts", "3", "--backoff", "0.01",
             "--output", tmp_path / "o", "--cache", tmp_path / "c.jsonl", check=False)
    assert r.returncode == 1 and "3 attempts" in r.stderr and "503" in r.stderr
    assert len(RecordedJudge.seen) == 3


def kappa(a, b):
    n = len(a)
    po = sum(x == y for x, y in zip(a, b)) / n
    labels = set(a) | set(b)
    pe = sum((a.count(k) / n) * (b.count(k) / n) for k in labels)
    return (po - pe) / (1 - pe)


def test_agreement_between_two_judges(smol, tmp_path):
    a_scores = [(1, 1, 5, 4, 5, 5), (0, 1, 3, 3, 4, 5), (1, 0, 4, 4, 4, 5), (1, 1, 5, 5, 5, 5), (0, 0, 2, 2, 3, 5)]
    b_scores = [(1, 1, 4, 4, 5, 5), (0, 1, 3, 2, 4, 5), (1, 1, 4, 4, 3, 5), (0, 1, 5, 5, 5, 4), (0, 0, 2, 2, 3, 5)]
    keys = ["correctness", "completeness", "conciseness", "helpfulness", "honesty", "harmlessness"]
    for name, rows in (("a", a_scores), ("b", b_scores)):
        with open(tmp_path / f"{name}.jsonl", "w") as f:
            for i, sc in enumerate(rows):
                f.write(json.dumps({"id": str(i), "task": "t", "turn": 1, "repeat": 0, "reply": "", "cached": False,
                                    "scores": dict(zip(keys, sc))}) + "\n")
    out = json.loads(smol("judge", "agreement", tmp_path / "a.jsonl", tmp_path / "b.jsonl").stdout)
    assert out["turns"] == 5
    for d, k in enumerate(keys):
        a, b = [s[d] for s in a_scores], [s[d] for s in b_scores]
        expected = 1.0 if a == b else kappa(a, b)
        assert out["kappa"][k] == pytest.approx(expected, abs=1e-12), k


def test_local_judge_through_our_engine(smol, tmp_path):
    """--local-judge runs the judge prompt through our own engine, with the same bookkeeping."""
    items = tmp_path / "items.jsonl"
    items.write_text(json.dumps({"id": "a", "question": "What is 2 + 2?", "reference": "4", "answer": "4"}) + "\n")
    out = json.loads(smol("judge", "score", items, "--local-judge", GGUF, "--output", tmp_path / "o",
                          "--cache", tmp_path / "c.jsonl", "--json").stdout)
    j = json.loads((tmp_path / "o/judgements.jsonl").read_text())
    assert out["judge"].startswith("local:") and out["requests_sent"] == 1 and out["total_replies"] == 1
    assert j["reply"] and (("scores" in j) != ("parse_error" in j))
    assert out["unparseable_replies"] == (1 if "parse_error" in j else 0)
