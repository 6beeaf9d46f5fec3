"""A client that disconnects mid-stream stops its generation on the LLM replica."""

from __future__ import annotations

import asyncio

import httpx
from ray import serve

from tests.conftest import long_story

# Still generating when the client goes away (the precondition below checks it).
LONG = long_story(900)


async def test_disconnect_cancels_the_generation(local_app):
    llm = serve.get_deployment_handle("LLM", app_name="default")
    whole = await llm.chat.remote(LONG)
    assert whole.usage.completion_tokens >= 600, "precondition: this request must generate for a while"

    before = await llm.stats.remote()
    async with httpx.AsyncClient(base_url=local_app, timeout=60) as client:
        async with client.stream("POST", "/v1/chat/completions", json={**LONG, "stream": True}) as reply:
            events = 0
            async for line in reply.aiter_lines():
                events += line.startswith("data: ")
                if events == 3:
                    break  # leaving the block closes the connection mid-stream

    for _ in range(60):
        after = await llm.stats.remote()
        if after["in_flight"] == 0 and after["cancelled"] > before["cancelled"]:
            break
        await asyncio.sleep(0.5)
    assert after["cancelled"] == before["cancelled"] + 1, after
    assert after["completed"] == before["completed"], "the abandoned generation ran to the end"
    assert after["in_flight"] == 0
