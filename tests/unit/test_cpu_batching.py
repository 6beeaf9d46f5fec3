"""The CPU engine's continuous batching and per-row features, on the real tiny Qwen2 (no Ray).

The tiny model emits noise: these tests compare runs with each other (alone against
batched, constrained against the schema), never against expected text.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json

import jsonschema
import pytest

from deployments.llm.engines import kv_batch
from deployments.llm.engines.base import GenerationDelta, GrammarSpec, SamplingSettings
from deployments.llm.engines.transformers_engine import TransformersEngine
from serve_app.config import LLMConfig

PROMPTS = [
    "Priya walked slowly to the station",
    "The weather in Lisbon",
    "Once upon a time there was a very long story about",
    "1 2 3",
]
BOUNDED = {
    "type": "object",
    "properties": {
        "colour": {"enum": ["red", "green", "blue"]},
        "ok": {"type": "boolean"},
        "size": {"type": "integer", "minimum": 0, "maximum": 9},
    },
    "required": ["colour", "ok", "size"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def engine(tmp_path_factory) -> TransformersEngine:
    from serve_app.tools.tiny_models import build_tiny_llm

    model_dir = tmp_path_factory.mktemp("tiny-llm")
    build_tiny_llm(model_dir)
    return TransformersEngine.create(model_dir, LLMConfig(served_name="t", model="t", version="v1"))


def ids(engine, text: str) -> list[int]:
    return engine.tokenizer.encode(text)


async def collect(engine, prompt: str, settings: SamplingSettings) -> list[GenerationDelta]:
    return [d async for d in engine.generate(ids(engine, prompt), settings, "r")]


def text_of(deltas: list[GenerationDelta]) -> str:
    return "".join(d.text for d in deltas)


@pytest.fixture()
def decode_calls(monkeypatch) -> list[int]:
    """Rows in each batched decode forward pass."""
    calls = []
    original = kv_batch.KVBatch.decode

    def counting(self, tokens, adapters):
        calls.append(len(tokens))
        return original(self, tokens, adapters)

    monkeypatch.setattr(kv_batch.KVBatch, "decode", counting)
    return calls


async def test_greedy_output_in_a_batch_equals_its_output_alone(engine, decode_calls, monkeypatch):
    settings = SamplingSettings(max_tokens=24, temperature=0.0, ignore_eos=True)
    alone = [text_of(await collect(engine, p, settings)) for p in PROMPTS]
    decode_calls.clear()
    prefilled = []
    original = kv_batch.KVBatch.prefill
    monkeypatch.setattr(kv_batch.KVBatch, "prefill", lambda self, *a: prefilled.append(len(a[0])) or original(self, *a))
    together = await asyncio.gather(*(collect(engine, p, settings) for p in PROMPTS))
    assert [text_of(d) for d in together] == alone
    # One forward pass prefilled the four prompts (of different lengths), one decoded all of them.
    assert prefilled == [len(PROMPTS)] and max(decode_calls) == len(PROMPTS)


async def test_requests_that_join_mid_generation_leave_the_others_unchanged(engine):
    settings = SamplingSettings(max_tokens=30, temperature=0.0, ignore_eos=True)
    alone = text_of(await collect(engine, PROMPTS[0], settings))

    async def late(prompt: str, delay_steps: int):
        for _ in range(delay_steps):
            await asyncio.sleep(0.005)
        return text_of(await collect(engine, prompt, SamplingSettings(max_tokens=8, temperature=0.0)))

    first, *_ = await asyncio.gather(collect(engine, PROMPTS[0], settings), late(PROMPTS[2], 3), late(PROMPTS[1], 6))
    assert text_of(first) == alone


async def test_a_closed_stream_frees_its_row_before_the_next_steps(engine):
    stream = engine.generate(ids(engine, PROMPTS[0]), SamplingSettings(max_tokens=500, ignore_eos=True), "long")
    await stream.__anext__()
    await stream.aclose()
    others = SamplingSettings(max_tokens=6, temperature=0.0, ignore_eos=True)
    rows_seen = []

    async def watch():
        for _ in range(50):
            rows_seen.append(len(engine._running))
            await asyncio.sleep(0.002)

    await asyncio.gather(collect(engine, PROMPTS[1], others), watch())
    assert max(rows_seen) <= 1
    assert engine._running == [] or all(not s.cancelled for s in engine._running)


async def test_logprobs_come_one_per_token_with_the_top_alternatives(engine):
    deltas = await collect(engine, PROMPTS[0], SamplingSettings(max_tokens=10, temperature=0.0, logprobs=3))
    entries = [lp for d in deltas for lp in d.logprobs]
    assert len(entries) == sum(d.new_tokens for d in deltas)
    for entry in entries:
        assert len(entry.top) == 3
        assert entry.logprob <= 0.0
        # Greedy: the chosen token is the most likely one.
        assert entry.top[0][0] == entry.token_id
        assert entry.top[0][1] == pytest.approx(entry.logprob)


async def test_no_logprobs_unless_asked(engine):
    deltas = await collect(engine, PROMPTS[0], SamplingSettings(max_tokens=5, temperature=0.0))
    assert all(d.logprobs == () for d in deltas)


@pytest.mark.parametrize("seed", [0, 1, 2])
async def test_a_bounded_schema_gives_json_that_validates_beside_unconstrained_requests(engine, seed):
    grammar = GrammarSpec("json_schema", json.dumps(BOUNDED))
    constrained = SamplingSettings(max_tokens=60, temperature=1.0, seed=seed, grammar=grammar)
    free = SamplingSettings(max_tokens=40, temperature=1.0, seed=seed)
    out, *_ = await asyncio.gather(
        collect(engine, PROMPTS[0], constrained), collect(engine, PROMPTS[1], free), collect(engine, PROMPTS[2], free)
    )
    jsonschema.validate(json.loads(text_of(out)), BOUNDED)
    assert out[-1].finish_reason == "stop"


async def test_min_tokens_holds_off_the_end_marker(engine):
    for seed in range(6):
        deltas = await collect(engine, PROMPTS[3], SamplingSettings(max_tokens=20, min_tokens=20, seed=seed))
        assert sum(d.new_tokens for d in deltas) == 20
        assert deltas[-1].finish_reason == "length"


async def test_top_k_one_is_greedy(engine):
    greedy = text_of(await collect(engine, PROMPTS[0], SamplingSettings(max_tokens=16, temperature=0.0)))
    top1 = text_of(await collect(engine, PROMPTS[0], SamplingSettings(max_tokens=16, temperature=1.0, top_k=1)))
    assert top1 == greedy


async def test_repetition_penalty_changes_a_greedy_output(engine):
    plain = text_of(await collect(engine, PROMPTS[0], SamplingSettings(max_tokens=24, temperature=0.0)))
    penalized = text_of(
        await collect(engine, PROMPTS[0], SamplingSettings(max_tokens=24, temperature=0.0, repetition_penalty=1.8))
    )
    assert penalized != plain


async def test_seeded_sampling_with_every_feature_is_reproducible_under_concurrency(engine):
    settings = SamplingSettings(
        max_tokens=16,
        temperature=0.9,
        top_k=50,
        top_p=0.9,
        seed=7,
        presence_penalty=0.5,
        repetition_penalty=1.2,
        logprobs=2,
        min_tokens=4,
    )
    alone = text_of(await collect(engine, PROMPTS[2], settings))
    together = await asyncio.gather(*(collect(engine, PROMPTS[2], settings) for _ in range(3)))
    assert [text_of(d) for d in together] == [alone] * 3


async def test_while_others_run_a_stream_sends_several_tokens_per_delta(engine, monkeypatch):
    # The stream interval (llm.stream_interval_ms) merges the steps of its span into one delta. At the
    # default 50 ms a step slower than that (a busy CI host) is a delta of its own; at 500 ms even
    # 200 ms steps merge, so the count below does not depend on the host's speed.
    monkeypatch.setattr(engine, "_stream_interval_s", 0.5)
    settings = SamplingSettings(max_tokens=40, temperature=0.0, ignore_eos=True)
    alone = await collect(engine, PROMPTS[0], settings)
    together = await asyncio.gather(*(collect(engine, p, settings) for p in PROMPTS))
    assert text_of(together[0]) == text_of(alone)
    assert all(sum(d.new_tokens for d in deltas) == 40 for deltas in together)
    assert sum(len(deltas) for deltas in together) < 40 * len(PROMPTS) / 2


# --- prompt logprobs (echo) and prompt scoring ------------------------------------------------


def forward_logprobs(engine, prompt_ids: list[int]):
    """The prompt scored in-process: one plain forward over its ids, log-softmax over the vocabulary."""
    import torch

    with torch.inference_mode():
        logits = engine.model(input_ids=torch.tensor([prompt_ids])).logits[0].float()
    return torch.log_softmax(logits, dim=-1)


@pytest.mark.parametrize("rows_per_pass", [256, 3])
async def test_prompt_logprobs_equal_a_forward_over_the_prompt(engine, monkeypatch, rows_per_pass):
    from deployments.llm.engines import row_sampling

    monkeypatch.setattr(row_sampling, "_SCORED_ROWS", rows_per_pass)  # 3: several passes over the rows
    prompt = ids(engine, PROMPTS[2])
    deltas = await collect(engine, PROMPTS[2], SamplingSettings(max_tokens=2, temperature=0.0, prompt_logprobs=2))
    scored = deltas[0].prompt_logprobs
    assert all(d.prompt_logprobs == () for d in deltas[1:])
    assert [e.token_id for e in scored] == prompt
    assert scored[0].logprob is None and scored[0].top == ()
    expected = forward_logprobs(engine, prompt)
    for i, entry in enumerate(scored[1:]):
        assert entry.logprob == pytest.approx(float(expected[i, prompt[i + 1]]), abs=1e-4)
        top_ids = expected[i].topk(2).indices.tolist()
        assert [tid for tid, _ in entry.top] == top_ids


async def test_scoring_only_generates_nothing(engine, decode_calls, monkeypatch):
    from deployments.llm.engines import transformers_engine

    sampled = []
    monkeypatch.setattr(transformers_engine.RowSampler, "record", lambda self, token: sampled.append(1))
    deltas = await collect(engine, PROMPTS[0], SamplingSettings(max_tokens=0, prompt_logprobs=0))
    assert len(deltas) == 1
    (delta,) = deltas
    assert (delta.text, delta.new_tokens, delta.finish_reason, delta.logprobs) == ("", 0, "length", ())
    assert len(delta.prompt_logprobs) == len(ids(engine, PROMPTS[0]))
    assert sampled == [] and decode_calls == [] and engine._running == []
    # Without prompt logprobs there is nothing to compute at all.
    assert await collect(engine, PROMPTS[0], SamplingSettings(max_tokens=0)) == [GenerationDelta("", 0, "length")]


async def test_asking_for_prompt_logprobs_changes_nothing_generated_alone_or_batched(engine):
    plain = SamplingSettings(max_tokens=16, temperature=0.8, seed=3, ignore_eos=True)
    scored = SamplingSettings(max_tokens=16, temperature=0.8, seed=3, ignore_eos=True, prompt_logprobs=1)
    alone = text_of(await collect(engine, PROMPTS[1], plain))
    together = await asyncio.gather(
        collect(engine, PROMPTS[1], scored),
        collect(engine, PROMPTS[0], plain),
        collect(engine, PROMPTS[2], SamplingSettings(max_tokens=0, prompt_logprobs=3)),
    )
    assert text_of(together[0]) == alone
    assert len(together[0][0].prompt_logprobs) == len(ids(engine, PROMPTS[1]))


# --- logit_bias, and logprobs that stay the model's own --------------------------------------


async def test_a_logit_bias_of_100_forces_its_token_and_minus_100_bans_it(engine):
    forced_token = ids(engine, " blue")[0]
    forced = SamplingSettings(max_tokens=6, temperature=0.0, ignore_eos=True, logit_bias=((forced_token, 100.0),))
    assert text_of(await collect(engine, PROMPTS[0], forced)) == engine.tokenizer.decode([forced_token] * 6)
    greedy = SamplingSettings(max_tokens=1, temperature=0.0, logprobs=0)
    (plain,) = (await collect(engine, PROMPTS[0], greedy))[0].logprobs
    banned = dataclasses.replace(greedy, logit_bias=((plain.token_id, -100.0),))
    (other,) = (await collect(engine, PROMPTS[0], banned))[0].logprobs
    assert other.token_id != plain.token_id


@pytest.mark.parametrize("constraint", ["grammar", "logit_bias"])
async def test_logprobs_are_the_models_own_whatever_constrains_the_sampling(engine, constraint):
    # vLLM's raw logprobs: a grammar mask or a bias changes what is sampled, not the logprobs reported.
    prompt = ids(engine, PROMPTS[1])
    if constraint == "grammar":
        constraint = {"grammar": GrammarSpec("json_schema", json.dumps(BOUNDED))}
    else:  # a bias large enough to win some steps, not all
        constraint = {"logit_bias": ((ids(engine, " the")[0], 8.0),)}
    settings = SamplingSettings(max_tokens=8, temperature=0.0, logprobs=0, ignore_eos=True, **constraint)
    entries = [e for d in await collect(engine, PROMPTS[1], settings) for e in d.logprobs]
    expected = forward_logprobs(engine, prompt + [e.token_id for e in entries])
    for i, entry in enumerate(entries):
        assert entry.logprob == pytest.approx(float(expected[len(prompt) - 1 + i, entry.token_id]), abs=1e-4)
