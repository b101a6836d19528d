"""kubetune's templates against the vendors' own references, offline.

- Token ids: Meta's Llama 3 tokenizer and ChatFormat from ``llama-models`` (llama3), and Meta's Llama 3.1 and 3.2
  chat templates rendered and tokenized with Meta's tokenizer (llama3_1).
- Text: ``mistral-common``'s instruct tokenizers (mistral: SentencePiece v3; ministral: Tekken), and the chat
  templates model repositories ship (``tests/assets/reference_templates``, see SOURCES.md there): qwen (Qwen2.5),
  qwen3 (Qwen3), gemma (Gemma 2), phi (Phi-3.5), deepseekr1 (DeepSeek-R1), ministral (Mistral Nemo),
  mistral_small (Mistral Small 3.2).

Where kubetune differs on purpose (LLaMA-Factory's rendering, or a pinned date) the test asserts the exact
difference; docs/templates.md lists them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kubetune.data.templates import get_template
from tests.unit.test_templates import CONVERSATIONS, SYSTEM, TOOL_CONVERSATION, TOOLS

REFERENCES = Path(__file__).resolve().parents[1] / "assets" / "reference_templates"


def cases():
    """(id, messages with the system message first or not)."""
    for name, conv in CONVERSATIONS.items():
        yield f"{name}-no-system", conv
        yield f"{name}-system", [{"role": "system", "content": SYSTEM}, *conv]


CASES = dict(cases())


def reference(name: str) -> str:
    return (REFERENCES / f"{name}.jinja").read_text(encoding="utf-8")


def render(template: str, messages, *, generation: bool = False, **variables) -> str:
    from transformers.utils.chat_template_utils import render_jinja_template

    rendered, _ = render_jinja_template([messages], chat_template=template, add_generation_prompt=generation,
                                        **variables)
    return rendered[0]


def ours_text(name: str, messages, **kwargs) -> str:
    return "".join(p + a for p, a in get_template(name).render_turns(messages, **kwargs))


def ours_prompt(name: str, messages, **kwargs) -> str:
    return get_template(name).render_prompt(messages, **kwargs)


# ---- token ids: Meta's tokenizer and chat format ----


@pytest.fixture(scope="module")
def meta():
    """Meta's Llama 3 tokenizer (llama-models) and the same vocabulary as a transformers fast tokenizer."""
    import llama_models.llama3 as llama3
    from llama_models.llama3.tokenizer import Tokenizer
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import TikTokenConverter

    tok = Tokenizer.get_instance()
    specials = sorted(tok.special_tokens, key=tok.special_tokens.get)
    core = TikTokenConverter(vocab_file=str(Path(llama3.__file__).parent / "tokenizer.model"), pattern=tok.pat_str,
                             extra_special_tokens=specials).converted()
    hf = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>",
                                 pad_token="<|finetune_right_pad_id|>")
    assert all(hf.convert_tokens_to_ids(t) == i for t, i in tok.special_tokens.items())
    return tok, hf


def meta_ids(tok, messages, *, generation: bool) -> list[int]:
    from llama_models.datatypes import RawMessage, StopReason
    from llama_models.llama3.chat_format import ChatFormat

    raw = [RawMessage(role=m["role"], content=m["content"], stop_reason=StopReason.end_of_turn) for m in messages]
    fmt = ChatFormat(tok)
    if generation:
        return list(fmt.encode_dialog_prompt(raw).tokens)
    ids = [tok.special_tokens["<|begin_of_text|>"]]
    for message in raw:
        ids += fmt.encode_message(message, None)[0]
    return ids


def flat_ids(pairs) -> list[int]:
    return [t for prompt, answer in pairs for t in [*prompt, *answer]]


@pytest.mark.parametrize("case", CASES)
def test_llama3_matches_meta_chat_format_token_for_token(meta, case):
    tok, hf = meta
    messages = CASES[case]
    t = get_template("llama3")
    assert flat_ids(t.encode_multiturn(hf, messages)) == meta_ids(tok, messages, generation=False)
    assert t.encode_prompt(hf, messages[:-1]) == meta_ids(tok, messages[:-1], generation=True)
    assert t.stop_token_ids(hf) == sorted([tok.eot_id, tok.eom_id])


@pytest.mark.parametrize("reference_name", ["meta-llama-Llama-3.1-8B-Instruct", "meta-llama-Llama-3.2-3B-Instruct"])
@pytest.mark.parametrize("case", CASES)
def test_llama3_1_matches_meta_templates_token_for_token(meta, reference_name, case):
    _, hf = meta
    messages, jinja = CASES[case], reference(reference_name)
    t = get_template("llama3_1")

    def theirs(msgs, generation):
        # 3.2 stamps today's date unless given one; kubetune pins 3.1's default date
        return list(hf.apply_chat_template(msgs, chat_template=jinja, add_generation_prompt=generation,
                                           tokenize=True, return_dict=False, date_string="26 Jul 2024"))

    assert flat_ids(t.encode_multiturn(hf, messages)) == theirs(messages, False)
    assert t.encode_prompt(hf, messages[:-1]) == theirs(messages[:-1], True)
    assert get_template("llama3_3") is t and get_template("llama3_2") is t


# ---- text: mistral-common ----


def mistral_common_prompt(tokenizer_file: str, messages) -> str:
    """The generation prompt mistral-common builds, decoded with its special tokens, as plain text."""
    from mistral_common.protocol.instruct.messages import AssistantMessage, SystemMessage, UserMessage
    from mistral_common.protocol.instruct.request import ChatCompletionRequest
    from mistral_common.tokens.tokenizers.base import SpecialTokenPolicy
    from mistral_common.tokens.tokenizers.mistral import MistralTokenizer

    kinds = {"system": SystemMessage, "user": UserMessage, "assistant": AssistantMessage}
    tokenizer = MistralTokenizer.from_file(str(_mistral_data() / tokenizer_file))
    request = ChatCompletionRequest(messages=[kinds[m["role"]](content=m["content"]) for m in messages])
    text = tokenizer.decode(tokenizer.encode_chat_completion(request).tokens,
                            special_token_policy=SpecialTokenPolicy.KEEP)
    return text.replace("▁", " ").replace("<0x0A>", "\n")  # SentencePiece's word marks and byte tokens


def _mistral_data() -> Path:
    import mistral_common

    return Path(mistral_common.__file__).parent / "data"


@pytest.mark.parametrize("case", CASES)
def test_ministral_matches_mistral_common_tekken(case):
    messages = CASES[case][:-1]
    ours = ours_prompt("ministral", messages)
    for tokenizer_file in ("tekken_240718.json", "tekken_240911.json"):
        assert ours == mistral_common_prompt(tokenizer_file, messages)


@pytest.mark.parametrize("case", CASES)
def test_mistral_against_mistral_common_v3(case):
    messages = CASES[case][:-1]
    theirs = mistral_common_prompt("mistral_instruct_tokenizer_240323.model.v3", messages)
    ours = ours_prompt("mistral", messages)
    if "-no-system" not in case and len(messages) > 2:
        # LLaMA-Factory's mistral (kubetune's) puts the system prompt into the first user turn, Mistral's v3
        # format into the last one: the same text with the system prompt moved.
        assert ours.replace(f"{SYSTEM}\n\n", "") == theirs.replace(f"{SYSTEM}\n\n", "")
        assert ours.startswith(f"<s>[INST] {SYSTEM}\n\n{messages[1]['content']}[/INST]")
        assert theirs.endswith(f"[INST] {SYSTEM}\n\n{messages[-1]['content']}[/INST]")
    else:
        assert ours == theirs


# ---- text: the model repositories' own chat templates ----


@pytest.mark.parametrize("case", CASES)
def test_qwen_matches_qwen2_5(case):
    messages, jinja = CASES[case], reference("Qwen-Qwen2.5-7B-Instruct")
    assert ours_text("qwen", messages) == render(jinja, messages)
    assert ours_prompt("qwen", messages[:-1]) == render(jinja, messages[:-1], generation=True)


@pytest.mark.parametrize("name", ["qwen", "qwen3"])
def test_qwen_tool_conversations_match(name):
    jinja = reference("Qwen-Qwen2.5-7B-Instruct" if name == "qwen" else "Qwen-Qwen3-0.6B")
    assert ours_text(name, TOOL_CONVERSATION, tools=TOOLS) == render(jinja, TOOL_CONVERSATION, tools=TOOLS)
    assert ours_prompt(name, TOOL_CONVERSATION[:3], tools=TOOLS) == render(jinja, TOOL_CONVERSATION[:3], tools=TOOLS,
                                                                           generation=True)


@pytest.mark.parametrize("case", CASES)
def test_qwen3_matches_qwen3(case):
    messages, jinja = CASES[case], reference("Qwen-Qwen3-0.6B")
    assert ours_text("qwen3", messages) == render(jinja, messages)  # the last answer with an empty thought
    assert ours_prompt("qwen3", messages[:-1]) == render(jinja, messages[:-1], generation=True)
    assert ours_prompt("qwen3", messages[:-1], enable_thinking=False) == render(
        jinja, messages[:-1], generation=True, enable_thinking=False)
    reasoning = [*messages[:-1], {"role": "assistant", "content": "<think>\nAdd them.\n</think>\n\nDone."}]
    assert ours_text("qwen3", reasoning) == render(jinja, reasoning)


@pytest.mark.parametrize("conv", CONVERSATIONS)
def test_gemma_matches_gemma2(conv):
    messages, jinja = CONVERSATIONS[conv], reference("google-gemma-2-2b-it")
    assert ours_text("gemma", messages) == render(jinja, messages, bos_token="<bos>")
    assert ours_prompt("gemma", messages[:-1]) == render(jinja, messages[:-1], generation=True, bos_token="<bos>")
    assert get_template("gemma2") is get_template("gemma3") is get_template("gemma")
    # Gemma 2 refuses a system message; kubetune (like LLaMA-Factory and Gemma 3) puts it before the first question
    system = ours_prompt("gemma", [{"role": "system", "content": SYSTEM}, *messages[:-1]])
    assert system == render(jinja, messages[:-1], generation=True, bos_token="<bos>").replace(
        "<start_of_turn>user\n", f"<start_of_turn>user\n{SYSTEM}\n\n", 1)


@pytest.mark.parametrize("case", CASES)
def test_phi_matches_phi3_5(case):
    messages, jinja = CASES[case], reference("microsoft-Phi-3.5-mini-instruct")
    # Phi-3.5's template closes a finished conversation with <|endoftext|>; kubetune ends each answer at <|end|>
    assert ours_text("phi", messages) + "<|endoftext|>" == render(jinja, messages, eos_token="<|endoftext|>")
    assert ours_prompt("phi", messages[:-1]) == render(jinja, messages[:-1], generation=True)


@pytest.mark.parametrize("case", CASES)
def test_deepseekr1_matches_deepseek_r1(case):
    messages, jinja = CASES[case], reference("deepseek-ai-DeepSeek-R1-Distill-Qwen-32B")
    bos = {"bos_token": "<｜begin▁of▁sentence｜>", "enable_thinking": True}
    # History renders alike; DeepSeek's prompt also opens the thought, which kubetune leaves to the model (it is
    # trained to write "<think>" itself, as with LLaMA-Factory's deepseekr1)
    assert ours_text("deepseekr1", messages, final=False) == render(jinja, messages, **bos)
    assert ours_prompt("deepseekr1", messages[:-1]) + "<think>\n" == render(jinja, messages[:-1], generation=True,
                                                                             **bos)
    history = [*messages[:-1], {"role": "assistant", "content": "<think>\nEasy.\n</think>Four."},
               {"role": "user", "content": "Next?"}]
    assert ours_prompt("deepseekr1", history) + "<think>\n" == render(jinja, history, generation=True, **bos)


@pytest.mark.parametrize("case", CASES)
def test_ministral_matches_mistral_nemo(case):
    messages, jinja = CASES[case], reference("mistralai-Mistral-Nemo-Instruct-2407")
    special = {"bos_token": "<s>", "eos_token": "</s>"}
    assert ours_prompt("ministral", messages[:-1]) == render(jinja, messages[:-1], generation=True, **special)
    # Nemo's template drops the system prompt from a conversation that ends with an answer; kubetune keeps it in
    # the last question, where the prompt above (and mistral-common) put it
    without_system = [m for m in messages if m["role"] != "system"]
    assert ours_text("ministral", without_system) == render(jinja, messages, **special)


@pytest.mark.parametrize("conv", CONVERSATIONS)
def test_mistral_small_matches_mistral_small_3_2(conv):
    jinja = reference("Mistral-Small-3.2-24B-Instruct-2506")
    messages = [{"role": "system", "content": SYSTEM}, *CONVERSATIONS[conv]]
    special = {"bos_token": "<s>", "eos_token": "</s>"}
    assert ours_text("mistral_small", messages) == render(jinja, messages, **special)
    assert ours_prompt("mistral_small", messages[:-1]) == render(jinja, messages[:-1], generation=True, **special)
