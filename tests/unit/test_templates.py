"""Chat templates render token-for-token like tokenizer.apply_chat_template with their Jinja equivalents."""

from __future__ import annotations

import pytest

from kubetune.data.templates import (
    TOOL_FORMATS,
    Template,
    TemplateError,
    TokenizerTemplate,
    ToolCall,
    get_template,
    resolve_template,
)
from kubetune.data.templates.registry import TABLE


@pytest.fixture(scope="module")
def tok(tokenizer_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tokenizer_dir))


SYSTEM = "You answer briefly."
TURNS = [
    {"role": "user", "content": "What is two plus two?"},
    {"role": "assistant", "content": "Four."},
    {"role": "user", "content": "And three plus three?\nExplain."},
    {"role": "assistant", "content": "Six, because 3+3=6."},
    {"role": "user", "content": "Thanks!"},
    {"role": "assistant", "content": "You are welcome."},
]
CONVERSATIONS = {"one-turn": TURNS[:2], "three-turns": TURNS}


def jinja_ids(tok, template: Template, messages, **kwargs) -> list[int]:
    return list(tok.apply_chat_template(messages, chat_template=template.jinja, tokenize=True, return_dict=False,
                                        **kwargs))


def flat(pairs) -> list[int]:
    return [t for prompt, answer in pairs for t in [*prompt, *answer]]


@pytest.mark.parametrize("template", TABLE, ids=lambda t: t.name)
@pytest.mark.parametrize("conv", CONVERSATIONS, ids=str)
@pytest.mark.parametrize("with_system", [False, True], ids=["no-system", "system"])
def test_template_matches_its_jinja(tok, template, conv, with_system):
    t = get_template(template.name)
    messages = CONVERSATIONS[conv]
    head = [{"role": "system", "content": SYSTEM}] if with_system else []
    pairs = t.encode_multiturn(tok, messages, system=SYSTEM if with_system else None)
    assert flat(pairs) == jinja_ids(tok, t, head + messages)
    # Every answer is in its own segment: its text is the reply plus the family's end-of-turn marks.
    for (_, answer), msg in zip(pairs, messages[1::2], strict=True):
        assert msg["content"] in tok.decode(answer)
    prompt = t.encode_prompt(tok, head + messages[:-1])
    assert prompt == jinja_ids(tok, t, head + messages[:-1], add_generation_prompt=True)


TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather of a city.",
                                            "parameters": {"type": "object",
                                                           "properties": {"city": {"type": "string"}}}}}]
TOOL_CONVERSATION = [
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": "",
     "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
    {"role": "tool", "content": '{"temperature": 21}'},
    {"role": "assistant", "content": "It is 21 degrees."},
]


@pytest.mark.parametrize("name", ["qwen", "qwen3", "llama3", "mistral", "glm4"])
def test_tool_conversations_match_jinja(tok, name):
    t = get_template(name)
    pairs = t.encode_multiturn(tok, TOOL_CONVERSATION, tools=TOOLS)
    assert flat(pairs) == jinja_ids(tok, t, TOOL_CONVERSATION, tools=TOOLS)
    call_text = tok.decode(pairs[0][1])
    content, calls = t.parse_tool_calls(call_text.split(t.stop_words[0])[0].strip())
    assert calls == [ToolCall("get_weather", '{"city": "Paris"}')] and content == ""


@pytest.mark.parametrize("fmt", sorted(TOOL_FORMATS))
def test_tool_calls_round_trip(fmt):
    calls = [ToolCall("f", '{"a": 1}'), ToolCall("g", '{"b": [1, 2]}')]
    tools = TOOL_FORMATS[fmt]
    expected = calls[:1] if fmt == "glm4" else calls  # GLM-4 writes one call per turn
    content, parsed = tools.parse_calls(tools.format_calls(expected))
    assert parsed == expected and content == ""
    assert tools.parse_calls("just text") == ("just text", [])


def test_qwen3_reasoning(tok):
    t = get_template("qwen3")
    convo = [{"role": "user", "content": "Hi."},
             {"role": "assistant", "content": "<think>\nGreet.\n</think>\n\nHello."},
             {"role": "user", "content": "Bye."}, {"role": "assistant", "content": "Goodbye."}]
    (_, a0), (_, a1) = t.render_turns(convo)
    assert "<think>" not in a0  # history drops its reasoning
    assert a1 == "<think>\n\n</think>\n\nGoodbye.<|im_end|>\n"  # the trained answer learns an empty block
    (_, _), (p1_off, a1_off) = t.render_turns(convo, enable_thinking=False)
    assert p1_off.endswith("<think>\n\n</think>\n\n") and a1_off == "Goodbye.<|im_end|>\n"  # not learned
    ids = t.encode_prompt(tok, convo[:3], enable_thinking=False)
    assert ids == jinja_ids(tok, t, convo[:3], add_generation_prompt=True, enable_thinking=False)


def test_role_order_is_checked():
    t = get_template("qwen")
    with pytest.raises(TemplateError, match="message 1 has role 'user'"):
        t.render_turns([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}])
    with pytest.raises(TemplateError, match="message 0 has role 'assistant'"):
        t.render_turns([{"role": "assistant", "content": "a"}, {"role": "user", "content": "b"}])
    with pytest.raises(TemplateError, match="no tool format"):
        get_template("gemma").render_turns(TURNS[:2], tools=TOOLS)


def test_tokenizer_template_is_used_when_no_name(tok):
    import copy

    qwen = get_template("qwen")
    own = copy.copy(tok)
    own.chat_template = qwen.jinja
    template = resolve_template(None, own)
    assert isinstance(template, TokenizerTemplate)
    assert template.encode_multiturn(own, TURNS, system=SYSTEM) == qwen.encode_multiturn(tok, TURNS, system=SYSTEM)
    assert template.encode_prompt(own, TURNS[:3]) == qwen.encode_prompt(tok, TURNS[:3])
    own.chat_template = get_template("qwen3").jinja  # drops history reasoning: not incremental
    think = [TURNS[0], {"role": "assistant", "content": "<think>x</think>Four."}, *TURNS[2:4]]
    with pytest.raises(TemplateError, match="set `template`"):
        resolve_template(None, own).encode_multiturn(own, think)
    assert resolve_template(None, tok).name == "empty"  # the test tokenizer has no chat_template


def test_stop_tokens_and_unknown_names(tok):
    assert get_template("llama3").stop_token_ids(tok) == sorted(
        tok.convert_tokens_to_ids(["<|eot_id|>", "<|eom_id|>", "<|endoftext|>"]))
    with pytest.raises(KeyError, match="known templates: chatglm3"):
        get_template("llama5")
    assert get_template("qwen2").name == "qwen"
