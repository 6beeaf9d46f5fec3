"""Python callers (notebooks): deployment and app handles with the protocol types."""

from __future__ import annotations

import pytest
from ray import serve

from serve_app.errors import ContextLengthExceeded, InvalidRequest, NotFound, unwrap
from serve_app.protocol import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Completion,
)
from tests.conftest import LOCAL_MODEL

pytestmark = pytest.mark.usefixtures("local_app")


def chat_request(**fields) -> ChatCompletionRequest:
    return ChatCompletionRequest(
        model=LOCAL_MODEL, messages=[{"role": "user", "content": "Say hello."}], max_tokens=12, **fields
    )


async def test_llm_deployment_handle_chat():
    llm = serve.get_deployment_handle("LLM", app_name="default")
    reply = await llm.chat.remote(chat_request(seed=1))
    assert isinstance(reply, ChatCompletion)
    assert reply.model == LOCAL_MODEL
    assert reply.usage.completion_tokens <= 12
    assert reply.choices[0].finish_reason in ("stop", "length")


async def test_llm_deployment_handle_accepts_plain_dicts():
    llm = serve.get_deployment_handle("LLM", app_name="default")
    reply = await llm.completion.remote({"model": LOCAL_MODEL, "prompt": "Once upon", "max_tokens": 5})
    assert isinstance(reply, Completion)
    assert reply.usage.completion_tokens <= 5


async def test_llm_deployment_handle_streams_the_same_text_as_unstreamed():
    llm = serve.get_deployment_handle("LLM", app_name="default")
    whole = await llm.chat.remote(chat_request(seed=7))
    chunks = [c async for c in llm.options(stream=True).chat_stream.remote(chat_request(seed=7))]
    assert all(isinstance(c, ChatCompletionChunk) for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason == whole.choices[0].finish_reason
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert streamed == whole.choices[0].message.content
    assert len({c.id for c in chunks}) == 1


async def test_stream_reports_usage_when_asked():
    llm = serve.get_deployment_handle("LLM", app_name="default")
    chunks = [
        c
        async for c in llm.options(stream=True).chat_stream.remote(
            chat_request(seed=3, stream=True, stream_options={"include_usage": True})
        )
    ]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens <= 12


async def test_app_handle_routes_by_model_and_streams():
    app = serve.get_app_handle("default")
    reply = await app.chat.remote(chat_request(seed=2))
    assert isinstance(reply, ChatCompletion)
    request = {"model": LOCAL_MODEL, "prompt": "The cat", "max_tokens": 6, "seed": 2}
    whole = await app.completion.remote(request)
    chunks = [c async for c in app.options(stream=True).completion_stream.remote(request)]
    assert all(isinstance(c, Completion) for c in chunks)
    assert "".join(c.choices[0].text for c in chunks) == whole.choices[0].text


async def test_handle_errors_keep_their_type_and_the_replica_keeps_serving():
    llm = serve.get_deployment_handle("LLM", app_name="default")
    with pytest.raises(Exception) as info:
        await llm.chat.remote(chat_request().model_copy(update={"model": "nope"}))
    assert isinstance(unwrap(info.value), NotFound)
    with pytest.raises(Exception) as info:
        await llm.chat.remote(chat_request().model_copy(update={"max_tokens": 10_000}))
    assert isinstance(unwrap(info.value), ContextLengthExceeded)
    with pytest.raises(Exception) as info:
        await llm.chat.remote({"model": LOCAL_MODEL, "messages": []})
    assert isinstance(unwrap(info.value), InvalidRequest)
    assert (await llm.chat.remote(chat_request())).choices


async def test_count_tokens_of_a_list_equals_one_by_one():
    llm = serve.get_deployment_handle("LLM", app_name="default")
    texts = ["Hello there.", "", "A longer sentence, with punctuation: and more words!"]
    alone = [await llm.count_tokens.remote(t) for t in texts]
    assert alone[0] > 0 and alone[1] == 0
    assert await llm.count_tokens.remote(texts) == alone
