"""Real models' chat templates (SmolLM3, Llama 3.1 / 3.2 / 3.3, Qwen2.5, Qwen3, kept as fixtures in
tests/fixtures/templates with their sources in SOURCES.md) rendered by `smol template render` and by
Python jinja2 configured as transformers configures it, over conversations that reach each template's
branches: system prompts or none, /think and /no_think, enable_thinking, reasoning content, tool
definitions and calls, tool results, dates, and the templates' own raise_exception paths."""
import json

import pytest

from conftest import ROOT
from test_chat_template import hf_environment

FIXTURES = ROOT / "tests/fixtures/templates"

WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "City name"},
                                                    "unit": {"type": "string", "enum": ["°C", "°F"]}},
                   "required": ["city"]}}}
CALL = {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris", "unit": "°C"}}}
CALL_STR = {"type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Lyon\"}"}}

USER = [{"role": "user", "content": "What is the capital of France?"}]
PERSONA = [{"role": "system", "content": "You are Captain Hook, a pirate.  \n"}, {"role": "user", "content": "Who are you?"},
           {"role": "assistant", "content": "\n\nArr, I be Hook."}, {"role": "user", "content": "And your ship?"}]
THINKING = [{"role": "user", "content": "  2+2?\t"}, {"role": "assistant", "content": "<think>\nadd them\n</think>\n\n4."},
            {"role": "user", "content": "مرحبا بالعالم 👩‍👩‍👧 中文"}]
REASONING = [{"role": "user", "content": "2+2?"},
             {"role": "assistant", "content": "4.", "reasoning_content": "two plus two"}]
TOOLS = [{"role": "system", "content": "Use tools."}, {"role": "user", "content": "Weather in Paris?"},
         {"role": "assistant", "content": "", "tool_calls": [CALL]},
         {"role": "tool", "content": "{\"temp\": 21}"}, {"role": "assistant", "content": "It is 21 °C."}]
TWO_RESULTS = [{"role": "user", "content": "Paris and Lyon?"},
               {"role": "assistant", "content": "Checking.", "tool_calls": [CALL, CALL_STR]},
               {"role": "tool", "content": "21"}, {"role": "tool", "content": "<b>19</b>"}]
NO_THINK = [{"role": "system", "content": "Be brief. /no_think"}] + USER
THINK = [{"role": "system", "content": "/think Be thorough."}] + THINKING
OVERRIDE = [{"role": "system", "content": "Plain system prompt. /system_override  "}] + USER

SCENARIOS = {
    "smollm3": [
        (USER, {}), (PERSONA, {}), (THINKING, {}), (THINKING, {"enable_thinking": False}), (NO_THINK, {}),
        (THINK, {"enable_thinking": False}), (OVERRIDE, {}),
        (USER, {"xml_tools": [WEATHER_TOOL]}), (PERSONA, {"python_tools": [WEATHER_TOOL], "enable_thinking": False}),
        (TOOLS, {"xml_tools": [WEATHER_TOOL]}),
    ],
    "qwen2.5": [
        (USER, {}), (PERSONA, {}), (THINKING, {}), (TOOLS, {"tools": [WEATHER_TOOL]}), (USER, {"tools": [WEATHER_TOOL]}),
        (TWO_RESULTS, {"tools": [WEATHER_TOOL]}),
    ],
    "qwen3": [
        (USER, {}), (PERSONA, {}), (THINKING, {}), (THINKING, {"enable_thinking": False}), (REASONING, {}),
        (TOOLS, {"tools": [WEATHER_TOOL]}), (TWO_RESULTS, {"tools": [WEATHER_TOOL], "enable_thinking": True}),
        ([{"role": "user", "content": "<tool_response>x</tool_response>"}] + THINKING, {}),
    ],
    "llama3.1": [
        (USER, {}), (PERSONA, {"date_string": "23 Nov 2026"}), (THINKING, {}),
        (TOOLS, {"tools": [WEATHER_TOOL]}), (TOOLS, {"tools": [WEATHER_TOOL], "tools_in_user_message": False}),
        (TOOLS, {"builtin_tools": ["brave_search", "code_interpreter", "get_weather"]}),
        (USER, {"custom_tools": [WEATHER_TOOL]}),
        ([{"role": "user", "content": "hi"}, {"role": "ipython", "content": {"result": [1, 2]}}], {}),
    ],
    "llama3.2": [
        (USER, {}), (PERSONA, {}), (TOOLS, {"tools": [WEATHER_TOOL], "date_string": "01 Jan 2025"}),
        (TOOLS, {"tools": [WEATHER_TOOL], "tools_in_user_message": False}),
    ],
}
CASES = [(name, i, gen) for name, scenarios in SCENARIOS.items() for i in range(len(scenarios)) for gen in (False, True)]


def jinja2_render(source, messages, gen, extra):
    import datetime
    env = hf_environment()
    env.globals["strftime_now"] = lambda fmt: datetime.datetime.now().strftime(fmt)
    return env.from_string(source).render(messages=messages, add_generation_prompt=gen,
                                          bos_token="<|begin_of_text|>", eos_token="<|end_of_text|>", **extra)


def smol_render(smol, tmp_path, name, messages, gen, extra, check=True):
    conv = tmp_path / "conversation.json"
    conv.write_text(json.dumps({"messages": messages, "bos_token": "<|begin_of_text|>",
                                "eos_token": "<|end_of_text|>", **extra}, ensure_ascii=False))
    args = ["template", "render", FIXTURES / f"{name}.jinja", "--messages", conv]
    return smol(*(args + (["--add-generation-prompt"] if gen else [])), check=check)


@pytest.mark.parametrize("name,index,gen", CASES, ids=[f"{n}-{i}-{'gen' if g else 'nogen'}" for n, i, g in CASES])
def test_model_template_matches_jinja2(smol, tmp_path, name, index, gen):
    messages, extra = SCENARIOS[name][index]
    source = (FIXTURES / f"{name}.jinja").read_text()
    expected = jinja2_render(source, messages, gen, extra)
    assert smol_render(smol, tmp_path, name, messages, gen, extra).stdout == expected


def test_smollm3_reasoning_mode_follows_the_system_flags(smol, tmp_path):
    # The two behaviours the issue names, checked on the text itself as well as against jinja2.
    no_think = smol_render(smol, tmp_path, "smollm3", NO_THINK, True, {}).stdout
    assert "Reasoning Mode: /no_think" in no_think and "/no_think" not in no_think.split("Custom Instructions")[1]
    assert no_think.endswith("<|im_start|>assistant\n<think>\n\n</think>\n")
    think = smol_render(smol, tmp_path, "smollm3", THINK, True, {"enable_thinking": False}).stdout
    assert "Reasoning Mode: /think" in think and think.endswith("<|im_start|>assistant\n")


@pytest.mark.parametrize("name", ["llama3.1", "llama3.2"])
def test_llama_template_errors_reach_the_user_as_jinja2_raises_them(smol, tmp_path, name):
    import jinja2
    source = (FIXTURES / f"{name}.jinja").read_text()
    with pytest.raises(jinja2.exceptions.TemplateError) as raised:
        jinja2_render(source, TWO_RESULTS, False, {})
    r = smol_render(smol, tmp_path, name, TWO_RESULTS, False, {}, check=False)
    assert r.returncode != 0 and str(raised.value) in r.stderr
