"""Back-pressure over HTTP: a saturated deployment answers 429/503 with Retry-After, never a hang or a 500.

The session app, its LLM allowed one request at a time and one waiting for this module (Serve
changes queue limits in place, without restarting a replica): every further request is refused
at once. The app is restored after.
"""

from __future__ import annotations

import asyncio
import json

import httpx
import openai
import pytest

from tests import serve_harness
from tests.conftest import LOCAL_MODEL, long_story

pytestmark = pytest.mark.slow

LLM_RETRY_AFTER = 2
INGRESS_RETRY_AFTER = 3

# Seconds of work on CPU.
LONG = long_story(900)
SHORT = {"model": LOCAL_MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


def _one_at_a_time(app: dict) -> None:
    serve_harness.deployment_options(app, "LLM").update(
        max_ongoing_requests=1,
        max_queued_requests=1,
        # 429 here (local.yaml uses 503) so both statuses go through the same path in these tests.
        backpressure_config={"status_code": 429, "retry_after_s": LLM_RETRY_AFTER},
    )


@pytest.fixture(scope="module")
def base_url(local_app):
    with serve_harness.reconfigured(_one_at_a_time):
        yield local_app


async def _chat(client: httpx.AsyncClient, stream: bool) -> tuple[int, dict[str, str], str]:
    async with client.stream("POST", "/v1/chat/completions", json={**LONG, "stream": stream}) as reply:
        body = (await reply.aread()).decode()
        return reply.status_code, dict(reply.headers), body


def _assert_served(status: int, body: str, stream: bool) -> None:
    assert status == 200, body
    if not stream:
        assert json.loads(body)["choices"][0]["finish_reason"] in ("stop", "length")
        return
    events = [line[len("data: ") :] for line in body.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    assert not any('"error"' in e for e in events[:-1]), "a stream that started must not fail"


def _assert_refused_with_envelope(status: int, headers: dict[str, str], body: str) -> None:
    assert status == 429, body
    assert headers["retry-after"] == str(LLM_RETRY_AFTER)
    assert headers["content-type"] == "application/json"
    error = json.loads(body)["error"]
    assert (error["type"], error["code"]) == ("requests", "rate_limit_exceeded")
    assert set(error) == {"message", "type", "param", "code"}


async def test_saturated_llm_refuses_with_429_retry_after_and_the_openai_envelope(base_url):
    async with httpx.AsyncClient(base_url=base_url, timeout=120) as client:
        kinds = [i % 2 == 0 for i in range(10)]  # streamed and not, refused the same way
        replies = await asyncio.gather(*(_chat(client, stream) for stream in kinds))
        served = refused = 0
        for stream, (status, headers, body) in zip(kinds, replies, strict=True):
            if status == 200:
                _assert_served(status, body, stream)
                served += 1
            else:
                _assert_refused_with_envelope(status, headers, body)
                refused += 1
        assert served >= 1 and refused >= 1, (served, refused)
        # The service keeps serving once the burst is over.
        after = await client.post("/v1/chat/completions", json=SHORT)
        assert after.status_code == 200, after.text


async def test_openai_sdk_gets_a_rate_limit_error_it_can_act_on(base_url):
    sdk = openai.AsyncOpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0, timeout=120)
    async with httpx.AsyncClient(base_url=base_url, timeout=120) as client:
        # Long streams take the one slot and the one queue place for seconds; SDK calls arriving
        # meanwhile can be admitted at most one at a time, so most of them are refused.
        load = [asyncio.create_task(_chat(client, stream=True)) for _ in range(3)]
        await asyncio.sleep(0.5)
        calls = await asyncio.gather(*(sdk.chat.completions.create(**SHORT) for _ in range(5)), return_exceptions=True)
        await asyncio.gather(*load)
    refused = [c for c in calls if isinstance(c, Exception)]
    assert refused, "no SDK call was refused while the LLM was saturated"
    for error in refused:
        assert isinstance(error, openai.RateLimitError), repr(error)  # an APIStatusError, status 429
        assert error.status_code == 429
        assert error.response.headers["retry-after"] == str(LLM_RETRY_AFTER)
        assert (error.type, error.code) == ("requests", "rate_limit_exceeded")
    reply = await sdk.chat.completions.create(**SHORT)
    assert reply.choices[0].message.content is not None


def _ingress_one_at_a_time(app: dict) -> None:
    _one_at_a_time(app)
    serve_harness.deployment_options(app, "LLM").update(max_ongoing_requests=16, max_queued_requests=32)
    serve_harness.deployment_options(app, "Ingress").update(
        max_ongoing_requests=1,
        max_queued_requests=1,
        backpressure_config={"status_code": 503, "retry_after_s": INGRESS_RETRY_AFTER},
    )


async def test_saturated_ingress_is_refused_before_the_app_with_503_and_retry_after(base_url):
    # Last in this module: it narrows the Ingress too (in place; the module's fixture restores both).
    serve_harness.deploy_beside(serve_harness.application("local.yaml", edit=_ingress_one_at_a_time))
    async with httpx.AsyncClient(base_url=base_url, timeout=120) as client:
        replies = await asyncio.gather(*(_chat(client, stream=True) for _ in range(8)))
        statuses = sorted(status for status, _, _ in replies)
        assert set(statuses) <= {200, 503} and 200 in statuses and 503 in statuses, statuses
        for status, headers, body in replies:
            if status == 503:
                # Serve refuses in the Ingress replica before the app sees the request: its plain-text body.
                assert headers["retry-after"] == str(INGRESS_RETRY_AFTER)
                assert "backpressure" in body
            else:
                _assert_served(status, body, stream=True)
        after = await client.post("/v1/chat/completions", json=SHORT)
        assert after.status_code == 200, after.text
