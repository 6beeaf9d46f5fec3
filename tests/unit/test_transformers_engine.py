"""TransformersEngine against the real tiny Qwen2 checkpoint (CPU, no Ray).

The tiny model emits noise, so these tests assert streaming invariants,
determinism and isolation between requests, never what the text says.
"""

from __future__ import annotations

import asyncio

import pytest

from deployments.llm.engines import transformers_engine
from deployments.llm.engines.base import GenerationDelta, SamplingSettings
from deployments.llm.engines.transformers_engine import TransformersEngine
from serve_app.config import LLMConfig

PROMPT = "Priya walked slowly to the station"


@pytest.fixture(scope="module")
def engine(tmp_path_factory) -> TransformersEngine:
    from serve_app.tools.tiny_models import build_tiny_llm

    model_dir = tmp_path_factory.mktemp("tiny-llm")
    build_tiny_llm(model_dir)
    return TransformersEngine.create(model_dir, LLMConfig(served_name="t", model="t", version="v1"))


@pytest.fixture(scope="module")
def prompt_ids(engine) -> list[int]:
    return engine.tokenizer.encode(PROMPT)


async def collect(engine, prompt_ids, settings, request_id="r") -> list[GenerationDelta]:
    return [delta async for delta in engine.generate(prompt_ids, settings, request_id)]


def text_of(deltas: list[GenerationDelta]) -> str:
    return "".join(d.text for d in deltas)


@pytest.fixture()
def step_counter(monkeypatch) -> list[int]:
    """Counts forward passes, i.e. tokens the engine actually generated."""
    calls = []
    original = transformers_engine.RowSampler.record

    def counting_record(self, token):
        calls.append(token)
        return original(self, token)

    monkeypatch.setattr(transformers_engine.RowSampler, "record", counting_record)
    return calls


# --- streaming invariants ---------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 9])
async def test_deltas_end_with_exactly_one_finish_reason(engine, prompt_ids, seed):
    deltas = await collect(engine, prompt_ids, SamplingSettings(max_tokens=24, seed=seed))
    reasons = [d.finish_reason for d in deltas]
    assert reasons[-1] in ("stop", "length")
    assert all(r is None for r in reasons[:-1])


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 9])
async def test_new_tokens_sum_to_the_tokens_generated(engine, prompt_ids, step_counter, seed):
    deltas = await collect(engine, prompt_ids, SamplingSettings(max_tokens=24, seed=seed))
    assert sum(d.new_tokens for d in deltas) == len(step_counter)
    assert len(step_counter) <= 24


async def test_finish_reason_is_length_when_max_tokens_is_hit(engine, prompt_ids, step_counter):
    # Greedy decoding of this prompt never emits an end marker within 12 tokens.
    deltas = await collect(engine, prompt_ids, SamplingSettings(max_tokens=12, temperature=0.0))
    assert deltas[-1].finish_reason == "length"
    assert sum(d.new_tokens for d in deltas) == 12
    assert len(step_counter) == 12


async def test_max_tokens_one_generates_one_token(engine, prompt_ids, step_counter):
    deltas = await collect(engine, prompt_ids, SamplingSettings(max_tokens=1, temperature=0.0))
    assert sum(d.new_tokens for d in deltas) == 1
    assert len(step_counter) == 1


async def test_end_markers_are_never_emitted_as_text(engine, prompt_ids):
    for seed in range(12):
        text = text_of(await collect(engine, prompt_ids, SamplingSettings(max_tokens=24, seed=seed)))
        assert "<|im_end|>" not in text
        assert "<|endoftext|>" not in text


# --- determinism ------------------------------------------------------------------------------


async def test_same_seed_gives_the_same_text(engine, prompt_ids):
    settings = SamplingSettings(max_tokens=24, temperature=1.0, seed=1234)
    first = text_of(await collect(engine, prompt_ids, settings))
    second = text_of(await collect(engine, prompt_ids, settings))
    assert first == second


async def test_different_seeds_give_different_texts_at_least_sometimes(engine, prompt_ids):
    texts = {
        text_of(await collect(engine, prompt_ids, SamplingSettings(max_tokens=16, temperature=1.0, seed=seed)))
        for seed in range(5)
    }
    assert len(texts) > 1


async def test_temperature_zero_is_deterministic_without_a_seed(engine, prompt_ids):
    settings = SamplingSettings(max_tokens=24, temperature=0.0)
    first = text_of(await collect(engine, prompt_ids, settings))
    second = text_of(await collect(engine, prompt_ids, settings))
    assert first == second


async def test_tiny_top_p_keeps_only_the_most_likely_token(engine, prompt_ids):
    greedy = text_of(await collect(engine, prompt_ids, SamplingSettings(max_tokens=16, temperature=0.0)))
    nucleus = text_of(
        await collect(engine, prompt_ids, SamplingSettings(max_tokens=16, temperature=1.0, top_p=1e-6, seed=5))
    )
    assert nucleus == greedy


# --- isolation between concurrent requests ------------------------------------------------------


CONCURRENT_SEEDS = [11, 22, 33, 44, 55, 66]


def concurrent_settings(seed: int) -> SamplingSettings:
    return SamplingSettings(max_tokens=20, temperature=1.0, seed=seed)


async def test_concurrent_generations_equal_the_same_generations_run_one_by_one(engine, prompt_ids):
    one_by_one = [
        text_of(await collect(engine, prompt_ids, concurrent_settings(seed), f"r{seed}")) for seed in CONCURRENT_SEEDS
    ]
    at_once = await asyncio.gather(
        *(collect(engine, prompt_ids, concurrent_settings(seed), f"r{seed}") for seed in CONCURRENT_SEEDS)
    )
    assert [text_of(deltas) for deltas in at_once] == one_by_one


async def test_concurrent_generations_interleave_step_by_step(engine, prompt_ids, monkeypatch):
    order = []
    original = transformers_engine.RowSampler.record

    def recording_record(self, token):
        order.append(id(self))
        return original(self, token)

    monkeypatch.setattr(transformers_engine.RowSampler, "record", recording_record)
    await asyncio.gather(
        *(collect(engine, prompt_ids, concurrent_settings(seed), f"r{seed}") for seed in CONCURRENT_SEEDS)
    )
    first_steps = order[: len(CONCURRENT_SEEDS)]
    assert len(set(first_steps)) == len(CONCURRENT_SEEDS)


# --- stop strings -----------------------------------------------------------------------------


def stop_from_the_middle(text: str, size: int = 3) -> str:
    """A substring starting in the second half of `text` whose first occurrence is right there."""
    for start in range(len(text) // 2, len(text) - size):
        candidate = text[start : start + size]
        if candidate.strip() and "\ufffd" not in candidate and text.find(candidate) == start:
            return candidate
    raise AssertionError(f"no usable stop string in {text!r}")


async def test_stop_string_truncates_right_before_it(engine, prompt_ids):
    greedy = text_of(await collect(engine, prompt_ids, SamplingSettings(max_tokens=40, temperature=0.0)))
    stop = stop_from_the_middle(greedy)

    deltas = await collect(engine, prompt_ids, SamplingSettings(max_tokens=40, temperature=0.0, stop=(stop,)))

    assert text_of(deltas) == greedy[: greedy.find(stop)]
    assert deltas[-1].finish_reason == "stop"
    assert stop not in text_of(deltas)


async def test_stop_string_counts_the_tokens_generated_up_to_it(engine, prompt_ids, step_counter):
    greedy = text_of(await collect(engine, prompt_ids, SamplingSettings(max_tokens=40, temperature=0.0)))
    stop = stop_from_the_middle(greedy)
    step_counter.clear()

    deltas = await collect(engine, prompt_ids, SamplingSettings(max_tokens=40, temperature=0.0, stop=(stop,)))

    assert sum(d.new_tokens for d in deltas) == len(step_counter)
    assert len(step_counter) < 40


async def test_stop_string_never_seen_leaves_output_unchanged(engine, prompt_ids):
    greedy = text_of(await collect(engine, prompt_ids, SamplingSettings(max_tokens=24, temperature=0.0)))
    with_stop = await collect(
        engine, prompt_ids, SamplingSettings(max_tokens=24, temperature=0.0, stop=("\u2603never\u2603",))
    )
    assert text_of(with_stop) == greedy
    assert with_stop[-1].finish_reason == "length"


# --- penalties --------------------------------------------------------------------------------


async def test_penalties_run_and_finish(engine, prompt_ids):
    settings = SamplingSettings(max_tokens=24, temperature=0.0, presence_penalty=1.5, frequency_penalty=1.5)
    deltas = await collect(engine, prompt_ids, settings)
    assert deltas[-1].finish_reason in ("stop", "length")


async def test_penalties_change_a_repetitive_greedy_output(engine, prompt_ids):
    plain = text_of(await collect(engine, prompt_ids, SamplingSettings(max_tokens=24, temperature=0.0)))
    penalized = text_of(
        await collect(
            engine,
            prompt_ids,
            SamplingSettings(max_tokens=24, temperature=0.0, presence_penalty=2.0, frequency_penalty=2.0),
        )
    )
    assert penalized != plain


async def test_negative_penalties_run_and_finish(engine, prompt_ids):
    settings = SamplingSettings(max_tokens=8, temperature=0.7, seed=3, presence_penalty=-2.0, frequency_penalty=-2.0)
    deltas = await collect(engine, prompt_ids, settings)
    assert deltas[-1].finish_reason in ("stop", "length")


# --- lifecycle --------------------------------------------------------------------------------


async def test_check_health_succeeds(engine):
    await engine.check_health()


async def test_closing_the_stream_after_the_first_delta_does_not_raise(engine, prompt_ids):
    stream = engine.generate(prompt_ids, SamplingSettings(max_tokens=32, temperature=0.0), "r-close")
    first = await stream.__anext__()
    assert isinstance(first, GenerationDelta)
    await stream.aclose()


async def test_engine_serves_again_after_a_stream_was_closed_early(engine, prompt_ids):
    stream = engine.generate(prompt_ids, SamplingSettings(max_tokens=32, seed=1), "r-close")
    await stream.__anext__()
    await stream.aclose()
    deltas = await collect(engine, prompt_ids, SamplingSettings(max_tokens=4, temperature=0.0))
    assert deltas[-1].finish_reason in ("stop", "length")


def test_max_model_len_defaults_to_the_models_own(engine):
    assert engine.max_model_len == engine.model.config.max_position_embeddings


def test_max_model_len_above_the_models_own_is_rejected(engine):
    model_dir = engine.model.name_or_path
    too_long = engine.model.config.max_position_embeddings + 1
    with pytest.raises(ValueError, match="max_model_len"):
        TransformersEngine.create(
            model_dir, LLMConfig(served_name="t", model="t", version="v1", max_model_len=too_long)
        )
