"""The typed OpenAI responses serialise to OpenAI's wire shape: null where OpenAI sends null, absent where it omits."""

import json

from kubetune.serve.errors import unknown_model
from kubetune.serve.openai.responses import (
    AssistantMessage,
    ChatChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChatDelta,
    ChunkChoice,
    FunctionCallOut,
    ModelCard,
    ModelList,
    ToolCallOut,
    Usage,
)


def test_chat_completion_keeps_null_logprobs_and_omits_absent_tool_calls():
    reply = ChatCompletion(id="chatcmpl-1", created=7, model="m", usage=Usage.of(3, 2), choices=[
        ChatChoice(index=0, message=AssistantMessage(content="hi"), finish_reason="stop")])
    assert json.loads(reply.model_dump_json()) == reply.model_dump() == {
        "id": "chatcmpl-1", "object": "chat.completion", "created": 7, "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop",
                     "logprobs": None}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}


def test_tool_call_message_has_null_content_and_its_calls():
    message = AssistantMessage(content=None, tool_calls=[
        ToolCallOut(id="call_1", function=FunctionCallOut(name="f", arguments="{}"))])
    assert message.model_dump() == {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}


def test_chunk_delta_carries_only_what_changed_and_usage_only_when_given():
    chunk = ChatCompletionChunk(id="c", created=1, model="m", choices=[
        ChunkChoice(index=0, delta=ChatDelta(content="x"))])
    assert json.loads(chunk.model_dump_json()) == {
        "id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
        "choices": [{"index": 0, "delta": {"content": "x"}, "logprobs": None, "finish_reason": None}]}
    last = ChatCompletionChunk(id="c", created=1, model="m", choices=[], usage=Usage.of(1, 1))
    assert last.model_dump()["usage"] == {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
    assert ChatDelta().empty() and not ChatDelta(content="").empty()


def test_models_list_and_error_shapes():
    assert ModelList(data=[ModelCard(id="a")]).model_dump() == {
        "object": "list", "data": [{"id": "a", "object": "model", "created": 0, "owned_by": "kubetune"}]}
    assert unknown_model("x", ["a"]).body() == {"error": {
        "message": "The model 'x' does not exist; this server serves a", "type": "invalid_request_error",
        "param": "model", "code": "model_not_found"}}
