"""`smol serve` under a hostile client: the max_tokens cap, a bounded line of waiting requests
(503 past it), generation stopped when its client disconnects (streamed or not), the API key,
content types and field-named errors. The real SmolLM2-135M-Instruct answers over real sockets."""
import http.client
import json
import os
import socket
import subprocess
import threading
import time

import numpy as np
import pytest

from conftest import smol_binary
from smollm2 import GGUF

KEY = "sk-test-7f3a"
COUNTING = {"prompt": "1, 2, 3, 4, 5, 6, 7, 8, 9, 10,", "temperature": 0, "max_tokens": 3000, "stream": True}


def start(*args, env=None):
    p = subprocess.Popen([smol_binary(), "serve", str(GGUF), "--port", "0", *args], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=env)
    line = p.stdout.readline()
    assert "http://127.0.0.1:" in line, line + p.stderr.read()
    return p, int(line.strip().rsplit(":", 1)[1].split("/")[0])


@pytest.fixture(scope="module")
def server():
    # The counting prompt never meets EOS under greedy decoding, so a 3000-token request runs for
    # tens of seconds unless something stops it.
    p, port = start("--max-queue", "1", "--max-tokens-limit", "3000", "--context-length", "4096", "--api-key", KEY)
    yield port
    p.terminate()
    p.wait(timeout=30)


def request(port, method, path, body=None, key=KEY, content_type="application/json", timeout=120):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    headers = {}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    if content_type:
        headers["Content-Type"] = content_type
    conn.request(method, path, body=json.dumps(body) if isinstance(body, dict) else body, headers=headers)
    r = conn.getresponse()
    data = r.read()
    conn.close()
    return r.status, json.loads(data) if data else None


def health(port):
    return request(port, "GET", "/health", key=None)[1]


def wait_idle(port, within):
    t0 = time.monotonic()
    while time.monotonic() - t0 < within:
        h = health(port)
        if h["running"] == 0 and h["waiting"] == 0:
            return time.monotonic() - t0
        time.sleep(0.05)
    raise AssertionError(f"still generating {within} s after the client left: {health(port)}")


def open_stream(port, body=COUNTING, path="/v1/completions"):
    """A raw socket with a streamed request sent and its first event read: generation is running."""
    s = socket.create_connection(("127.0.0.1", port), timeout=60)
    payload = json.dumps(body).encode()
    s.sendall(b"POST " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Authorization: Bearer " + KEY.encode() + b"\r\nContent-Length: " + str(len(payload)).encode() + b"\r\n\r\n" + payload)
    got = b""
    while b"data: " not in got:
        got += s.recv(4096)
    assert b" 200 " in got.split(b"\r\n")[0], got[:200]
    return s


def test_streamed_generation_stops_when_the_client_disconnects(server):
    s = open_stream(server)
    time.sleep(0.5)
    assert health(server)["running"] == 1
    s.close()
    # 3000 greedy tokens take well over 10 s on this machine; a cancelled one ends at the next token.
    assert wait_idle(server, within=5) < 5


def test_unstreamed_generation_stops_when_the_client_disconnects(server):
    s = socket.create_connection(("127.0.0.1", server), timeout=60)
    payload = json.dumps({**COUNTING, "stream": False}).encode()
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nAuthorization: Bearer "
              + KEY.encode() + b"\r\nContent-Length: " + str(len(payload)).encode() + b"\r\n\r\n" + payload)
    t0 = time.monotonic()
    while health(server)["running"] == 0:
        assert time.monotonic() - t0 < 10
        time.sleep(0.05)
    s.close()
    assert wait_idle(server, within=5) < 5


def test_a_full_line_gets_503_at_once_and_the_waiting_request_is_served(server):
    running = open_stream(server)          # generating
    waited = {}

    def second():
        t0 = time.monotonic()
        waited["status"], waited["body"] = request(server, "POST", "/v1/completions",
                                                   {"prompt": "The capital of France is", "max_tokens": 4, "temperature": 0})
        waited["seconds"] = time.monotonic() - t0

    t = threading.Thread(target=second)
    t.start()
    t0 = time.monotonic()
    while health(server)["waiting"] == 0:
        assert time.monotonic() - t0 < 10
        time.sleep(0.05)
    t1 = time.monotonic()
    status, body = request(server, "POST", "/v1/completions", {"prompt": "Hello", "max_tokens": 4})
    assert status == 503 and body["error"]["code"] == "server_busy", body
    assert time.monotonic() - t1 < 2                 # refused, not queued
    assert request(server, "GET", "/v1/models")[0] == 200   # routes that need no model still answer
    running.close()                                    # the long one goes away; the waiting one runs
    t.join(timeout=60)
    assert waited["status"] == 200 and waited["body"]["choices"][0]["text"], waited
    wait_idle(server, within=5)


def test_max_tokens_over_the_limit_is_refused_naming_the_limit(server):
    status, body = request(server, "POST", "/v1/chat/completions",
                           {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1e9})
    assert status == 400 and body["error"]["param"] == "max_tokens" and "3000" in body["error"]["message"], body
    status, body = request(server, "POST", "/v1/completions", {"prompt": "Hi", "max_tokens": 3001})
    assert status == 400 and body["error"]["param"] == "max_tokens", body


def test_api_key(server):
    body = {"prompt": "Hi", "max_tokens": 1}
    for key, expected in [(None, 401), ("wrong", 401), (KEY + "x", 401), (KEY[:-1], 401), (KEY, 200)]:
        status, answer = request(server, "POST", "/v1/completions", body, key=key)
        assert status == expected, (key, answer)
        if expected == 401:
            assert answer["error"]["code"] == "invalid_api_key"
    assert request(server, "GET", "/v1/models", key=None)[0] == 401
    assert request(server, "GET", "/health", key=None)[0] == 200     # probes need no key


def test_api_key_from_the_environment():
    p, port = start(env={**os.environ, "SMOL_API_KEY": "from-env"})
    try:
        assert request(port, "GET", "/v1/models", key=None)[0] == 401
        assert request(port, "GET", "/v1/models", key="from-env")[0] == 200
    finally:
        p.terminate()
        p.wait(timeout=30)


def test_shapes_and_field_named_errors(server):
    chat = {"messages": [{"role": "user", "content": "What is the capital of France?"}], "temperature": 0, "max_tokens": 20}
    status, plain = request(server, "POST", "/v1/chat/completions", chat)
    assert status == 200
    parts = {**chat, "messages": [{"role": "user", "content": [{"type": "text", "text": "What is the capital "},
                                                               {"type": "text", "text": "of France?"}]}]}
    status, listed = request(server, "POST", "/v1/chat/completions", parts)
    assert status == 200 and listed["choices"][0]["message"]["content"] == plain["choices"][0]["message"]["content"]

    cases = [  # body, the field the error must name, a word the message must hold
        ({**chat, "seed": -1}, "seed", "seed"),
        ({**chat, "n": 1.5}, "n", "n"),
        ({**chat, "max_tokens": "ten"}, "max_tokens", "max_tokens"),
        ({**chat, "logprobs": True, "stream": True}, "logprobs", "stream"),
        ({**chat, "top_logprobs": 3}, "top_logprobs", "logprobs"),
        ({**chat, "logprobs": True, "top_logprobs": 21}, "top_logprobs", "0...20"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages.0.content", "content"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}, "messages.0.content", "text"),
        ({"messages": [{"content": "x"}]}, "messages.0.role", "role"),
    ]
    for body, field, word in cases:
        status, answer = request(server, "POST", "/v1/chat/completions", body)
        assert status == 400 and answer["error"]["param"] == field and word in answer["error"]["message"], (body, answer)
    for body, field in [({"prompt": "x", "logprobs": 9}, "logprobs"), ({"prompt": "x", "echo": True}, "echo"),
                        ({"prompt": "x", "logprobs": 1, "stream": True}, "logprobs")]:
        status, answer = request(server, "POST", "/v1/completions", body)
        assert status == 400 and answer["error"]["param"] == field, (body, answer)

    for content_type in ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"]:
        status, answer = request(server, "POST", "/v1/chat/completions", json.dumps(chat), content_type=content_type)
        assert status == 415 and content_type.split(";")[0] in answer["error"]["message"], (content_type, answer)
    status, _ = request(server, "POST", "/v1/chat/completions", json.dumps(chat), content_type="application/json; charset=utf-8")
    assert status == 200
    status, answer = request(server, "POST", "/v1/chat/completions", b"{not json")
    assert status == 400 and "not valid JSON" in answer["error"]["message"]


def test_sigterm_during_a_long_generation_exits_promptly():
    p, port = start("--max-tokens-limit", "3000", "--context-length", "4096")
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=60)
        payload = json.dumps(COUNTING).encode()
        s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: "
                  + str(len(payload)).encode() + b"\r\n\r\n" + payload)
        got = b""
        while b"data: " not in got:
            got += s.recv(4096)
        t0 = time.monotonic()
        p.terminate()
        assert p.wait(timeout=20) == 0
        assert time.monotonic() - t0 < 5      # the generation had tens of seconds to go
        s.close()
    finally:
        if p.poll() is None:
            p.kill()


def test_logprobs_match_the_numpy_model(smol, server):
    """Each generated token's log-probability (and the top alternatives) against log-softmax of the
    NumPy float64 model's logits after the same tokens."""
    from smollm2 import hf_tokenizer, numpy_reference, ref_logits
    prompt = "The capital of France is"
    gen = json.loads(smol("generate", GGUF, "--prompt", prompt, "--greedy", "--max-tokens", "4", "--json").stdout)
    status, body = request(server, "POST", "/v1/completions", {"prompt": prompt, "max_tokens": 4, "temperature": 0, "logprobs": 3})
    assert status == 200, body
    lp = body["choices"][0]["logprobs"]
    tok = hf_tokenizer()
    ids = gen["prompt_ids"] + gen["generated_ids"]
    logits = ref_logits(numpy_reference(), ids)
    assert lp["tokens"] == [tok.decode([i]) for i in gen["generated_ids"]]
    assert lp["text_offset"] == list(np.cumsum([0] + [len(t) for t in lp["tokens"][:-1]]))
    for k, token_id in enumerate(gen["generated_ids"]):
        row = logits[len(gen["prompt_ids"]) - 1 + k]
        ref = row - row.max() - np.log(np.exp(row - row.max()).sum())
        assert lp["token_logprobs"][k] == pytest.approx(ref[token_id], abs=2e-2)
        top = np.argsort(ref)[::-1][:3]
        assert set(lp["top_logprobs"][k]) == {tok.decode([int(i)]) for i in top}
        for i in top:
            assert lp["top_logprobs"][k][tok.decode([int(i)])] == pytest.approx(ref[i], abs=2e-2)
    chat = {"messages": [{"role": "user", "content": "Hi"}], "temperature": 0, "max_tokens": 3, "logprobs": True, "top_logprobs": 2}
    status, body = request(server, "POST", "/v1/chat/completions", chat)
    content = body["choices"][0]["logprobs"]["content"]
    assert len(content) == body["usage"]["completion_tokens"] and all(len(c["top_logprobs"]) == 2 for c in content)
    assert "".join(bytes(c["bytes"]).decode("utf-8", "replace") for c in content) == body["choices"][0]["message"]["content"]
    for c in content:   # greedy: the chosen token is the most likely one
        assert c["logprob"] == pytest.approx(c["top_logprobs"][0]["logprob"]) and c["logprob"] <= 0
