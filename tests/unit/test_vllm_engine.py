"""The vLLM engine's mappings, against vLLM's real classes, and its stream handling
against a stand-in for AsyncLLM (no GPU, no Ray)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from vllm import AsyncEngineArgs
from vllm.outputs import CompletionOutput, RequestOutput
from vllm.sampling_params import RequestOutputKind, SamplingParams, SamplingType

from deployments.llm.engines.base import GenerationDelta, GrammarSpec, SamplingSettings, TokenLogprob
from deployments.llm.engines.vllm_engine import (
    VLLMEngine,
    to_delta,
    to_engine_args,
    to_sampling_params,
)
from serve_app.config import LLMConfig
from serve_app.errors import InternalError, ServiceUnavailable


def request_output(
    text: str, token_ids: list[int], finish_reason: str | None = None, request_id: str = "req-1"
) -> RequestOutput:
    completion = CompletionOutput(
        index=0,
        text=text,
        token_ids=token_ids,
        cumulative_logprob=None,
        logprobs=None,
        finish_reason=finish_reason,
        stop_reason=None,
    )
    return RequestOutput(
        request_id=request_id,
        prompt=None,
        prompt_token_ids=[1, 2, 3],
        prompt_logprobs=None,
        outputs=[completion],
        finished=finish_reason is not None,
    )


# --- to_engine_args -----------------------------------------------------------


def test_engine_args_carry_the_llm_config() -> None:
    config = LLMConfig(
        served_name="qwen-chat",
        model="qwen",
        version="v3",
        max_model_len=4096,
        dtype="bfloat16",
        gpu_memory_utilization=0.4,
        enable_prefix_caching=False,
        max_num_seqs=96,
    )
    args = to_engine_args(Path("/models/qwen/v3"), config)

    assert isinstance(args, AsyncEngineArgs)
    assert args.model == "/models/qwen/v3"
    assert args.served_model_name == "qwen-chat"
    assert args.max_model_len == 4096
    assert args.dtype == "bfloat16"
    assert args.gpu_memory_utilization == pytest.approx(0.4)
    assert args.enable_prefix_caching is False
    assert args.max_num_seqs == 96
    assert args.enable_log_requests is False
    assert args.disable_log_stats is False


def test_engine_args_default_to_the_models_context_window() -> None:
    args = to_engine_args(Path("/m"), LLMConfig(served_name="m", model="m", version="v1"))

    assert args.max_model_len is None
    assert args.enable_prefix_caching is True


# --- to_sampling_params -------------------------------------------------------


def test_sampling_params_carry_every_setting() -> None:
    settings = SamplingSettings(
        max_tokens=17,
        temperature=0.7,
        top_p=0.9,
        stop=("\n\n", "END"),
        seed=1234,
        presence_penalty=0.5,
        frequency_penalty=-0.25,
    )
    params = to_sampling_params(settings)

    assert isinstance(params, SamplingParams)
    assert params.n == 1
    assert params.max_tokens == 17
    assert params.temperature == pytest.approx(0.7)
    assert params.top_p == pytest.approx(0.9)
    assert params.stop == ["\n\n", "END"]
    assert params.seed == 1234
    assert params.presence_penalty == pytest.approx(0.5)
    assert params.frequency_penalty == pytest.approx(-0.25)
    assert params.output_kind is RequestOutputKind.DELTA
    assert params.skip_special_tokens is True
    assert params.include_stop_str_in_output is False
    assert params.sampling_type is SamplingType.RANDOM_SEED


def test_temperature_zero_is_greedy() -> None:
    params = to_sampling_params(SamplingSettings(max_tokens=4, temperature=0.0, top_p=0.5))

    assert params.sampling_type is SamplingType.GREEDY
    assert params.temperature == 0.0
    # vLLM neutralises the truncation knobs for greedy decoding.
    assert params.top_p == 1.0


def test_defaults_map_to_no_stop_and_no_seed() -> None:
    params = to_sampling_params(SamplingSettings(max_tokens=8))

    assert params.stop == []
    assert params.seed is None
    assert params.sampling_type is SamplingType.RANDOM


# --- to_delta -----------------------------------------------------------------


def test_mid_stream_output_maps_to_text_delta() -> None:
    assert to_delta(request_output(" world", [995, 11])) == GenerationDelta(" world", 2, None)


def test_final_stop_output() -> None:
    assert to_delta(request_output("!", [0, 151643], "stop")) == GenerationDelta("!", 2, "stop")


def test_final_length_output() -> None:
    assert to_delta(request_output(" end", [842], "length")) == GenerationDelta(" end", 1, "length")


def test_final_output_without_new_text_still_finishes() -> None:
    assert to_delta(request_output("", [], "stop")) == GenerationDelta("", 0, "stop")


def test_tokens_without_text_still_count() -> None:
    # Text held back for a possible stop string: no text yet, but the tokens were generated.
    assert to_delta(request_output("", [27, 91])) == GenerationDelta("", 2, None)


def test_empty_non_final_output_is_dropped() -> None:
    assert to_delta(request_output("", [])) is None


def test_abort_raises_service_unavailable() -> None:
    with pytest.raises(ServiceUnavailable) as info:
        to_delta(request_output("", [], "abort"))
    assert info.value.status == 503


def test_engine_error_raises_internal_error() -> None:
    with pytest.raises(InternalError):
        to_delta(request_output("", [], "error"))


# --- generate against a stand-in engine ---------------------------------------


class FakeAsyncLLM:
    """AsyncLLM's generate/abort surface; optionally blocks after its outputs."""

    def __init__(self, outputs: list[RequestOutput], *, then_block: bool = False):
        self._outputs = outputs
        self._then_block = then_block
        self.calls: list[tuple[Any, SamplingParams, str]] = []
        self.aborted: list[str] = []
        self.stream_closed = False

    async def generate(
        self, prompt: Any, sampling_params: SamplingParams, request_id: str
    ) -> AsyncIterator[RequestOutput]:
        self.calls.append((prompt, sampling_params, request_id))
        try:
            for output in self._outputs:
                yield output
            if self._then_block:
                await asyncio.Event().wait()
        finally:
            self.stream_closed = True

    async def abort(self, request_id: str) -> None:
        self.aborted.append(request_id)


def engine_with(fake: FakeAsyncLLM) -> VLLMEngine:
    return VLLMEngine(fake, tokenizer=None, max_model_len=2048)


async def test_generate_sends_token_ids_and_maps_deltas_in_order() -> None:
    fake = FakeAsyncLLM(
        [
            request_output("Hello", [9707]),
            request_output("", []),
            request_output(" there", [1052]),
            request_output("", [151643], "stop"),
        ]
    )
    settings = SamplingSettings(max_tokens=5, temperature=0.0, stop=("\n",))

    deltas = [d async for d in engine_with(fake).generate([1, 2, 3], settings, "req-1")]

    assert deltas == [
        GenerationDelta("Hello", 1),
        GenerationDelta(" there", 1),
        GenerationDelta("", 1, "stop"),
    ]
    ((prompt, params, request_id),) = fake.calls
    # A rendered token input, not a string: vLLM must not re-tokenize.
    assert prompt == {"type": "token", "prompt_token_ids": [1, 2, 3]}
    assert params.output_kind is RequestOutputKind.DELTA
    assert params.stop == ["\n"]
    assert request_id == "req-1"
    assert fake.aborted == []
    assert fake.stream_closed


async def test_closing_the_stream_early_aborts_the_request() -> None:
    fake = FakeAsyncLLM([request_output("a", [64]), request_output("b", [65])])
    stream = engine_with(fake).generate([1], SamplingSettings(max_tokens=8), "req-closed")

    first = await anext(stream)
    await stream.aclose()

    assert first == GenerationDelta("a", 1)
    assert fake.aborted == ["req-closed"]
    assert fake.stream_closed


async def test_cancelling_the_consumer_aborts_the_request() -> None:
    # Serve cancels the request task when the HTTP client disconnects mid-stream.
    fake = FakeAsyncLLM([request_output("a", [64])], then_block=True)
    engine = engine_with(fake)
    got_first = asyncio.Event()

    async def consume() -> None:
        async for _ in engine.generate([1], SamplingSettings(max_tokens=8), "req-cancelled"):
            got_first.set()

    task = asyncio.create_task(consume())
    await got_first.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert fake.aborted == ["req-cancelled"]
    assert fake.stream_closed


async def test_engine_abort_surfaces_as_service_unavailable() -> None:
    fake = FakeAsyncLLM([request_output("a", [64]), request_output("", [], "abort")])
    stream = engine_with(fake).generate([1], SamplingSettings(max_tokens=8), "req-2")

    assert await anext(stream) == GenerationDelta("a", 1)
    with pytest.raises(ServiceUnavailable):
        await anext(stream)
    # vLLM already finished the request; there is nothing left to abort.
    assert fake.aborted == []
    assert fake.stream_closed


def test_module_imports_without_vllm() -> None:
    # The CPU path imports the engines package; it must not pay for vllm/torch.
    probe = (
        "import sys, deployments.llm.engines.vllm_engine; "
        "print(sorted(m for m in ('vllm', 'torch') if m in sys.modules))"
    )
    repo_root = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "-c", probe], cwd=repo_root, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_create_exports_vllms_own_metrics_through_ray(monkeypatch):
    from types import SimpleNamespace

    from vllm.v1.engine.async_llm import AsyncLLM
    from vllm.v1.metrics.ray_wrappers import RayPrometheusStatLogger

    from deployments.llm.engines.vllm_engine import VLLMEngine
    from serve_app.config import LLMConfig

    created = {}

    def from_engine_args(engine_args, **kwargs):
        created.update(kwargs)
        return SimpleNamespace(model_config=SimpleNamespace(max_model_len=512, get_vocab_size=lambda: 1024))

    monkeypatch.setattr(AsyncLLM, "from_engine_args", from_engine_args)
    store = Path(__file__).resolve().parents[2] / "models" / "tiny-qwen2" / "v1"
    engine = VLLMEngine.create(store, LLMConfig(served_name="t", model="tiny-qwen2", version="v1"))
    assert created["stat_loggers"] == [RayPrometheusStatLogger]
    assert (engine.max_model_len, engine.vocab_size) == (512, 1024)


# --- the wider OpenAI surface, mapped to vLLM's own features ------------------


def test_extensions_map_to_vllms_sampling_params() -> None:
    params = to_sampling_params(
        SamplingSettings(max_tokens=8, top_k=40, min_tokens=3, ignore_eos=True, repetition_penalty=1.3, logprobs=5)
    )
    assert (params.top_k, params.min_tokens, params.ignore_eos) == (40, 3, True)
    assert params.repetition_penalty == 1.3
    assert params.logprobs == 5
    assert params.structured_outputs is None
    assert params.logit_bias is None


def test_logit_bias_maps_to_vllms() -> None:
    params = to_sampling_params(SamplingSettings(max_tokens=8, logit_bias=((42, -100.0), (7, 2.5))))
    assert params.logit_bias == {42: -100.0, 7: 2.5}


def test_a_json_schema_maps_to_structured_outputs() -> None:
    schema = '{"type": "object", "properties": {"a": {"type": "integer"}}}'
    params = to_sampling_params(SamplingSettings(max_tokens=8, grammar=GrammarSpec("json_schema", schema)))
    assert params.structured_outputs.json == schema


def test_json_object_maps_to_structured_outputs() -> None:
    params = to_sampling_params(SamplingSettings(max_tokens=8, grammar=GrammarSpec("json_object")))
    assert params.structured_outputs.json_object is True


def test_logprobs_map_to_token_logprobs_with_the_top_ones_by_rank() -> None:
    from vllm.logprobs import Logprob

    output = request_output("ab", [7, 9])
    output.outputs[0].logprobs = [
        {7: Logprob(-0.1, 1, "a"), 8: Logprob(-2.5, 2, "x")},
        # The sampled token outside the top 2 comes with its own rank.
        {3: Logprob(-0.2, 1, "c"), 4: Logprob(-1.9, 2, "d"), 9: Logprob(-4.0, 7, "b")},
    ]
    delta = to_delta(output, top_logprobs=2)
    assert delta.logprobs == (
        TokenLogprob(7, -0.1, ((7, -0.1), (8, -2.5))),
        TokenLogprob(9, -4.0, ((3, -0.2), (4, -1.9))),
    )


def test_no_logprobs_map_to_none() -> None:
    assert to_delta(request_output("a", [1])).logprobs == ()


def test_the_engine_declares_what_it_supports() -> None:
    assert {"structured_outputs", "logprobs", "lora"} <= VLLMEngine.capabilities


# --- prompt logprobs (echo) and prompt scoring ----------------------------------------


def test_prompt_logprobs_map_to_vllms_and_max_tokens_zero_to_its_one_token() -> None:
    params = to_sampling_params(SamplingSettings(max_tokens=0, logprobs=1, prompt_logprobs=1))
    assert (params.max_tokens, params.prompt_logprobs, params.logprobs) == (1, 1, 1)
    assert to_sampling_params(SamplingSettings(max_tokens=5)).prompt_logprobs is None


def scored_output(text: str, token_ids: list[int], finish_reason: str | None, first_position: Any) -> RequestOutput:
    from vllm.logprobs import Logprob

    output = request_output(text, token_ids, finish_reason)
    # Prompt [1, 2, 3]: nothing predicts the first token (None, or {} in vLLM's flat container).
    output.prompt_logprobs = [
        first_position,
        {2: Logprob(-1.5, 4, "b"), 9: Logprob(-0.3, 1, "x")},
        {3: Logprob(-0.7, 1, "c"), 8: Logprob(-2.0, 2, "y")},
    ]
    return output


@pytest.mark.parametrize("first_position", [None, {}])
def test_prompt_logprobs_map_to_one_entry_per_prompt_token(first_position) -> None:
    delta = to_delta(scored_output("a", [64], None, first_position), 1, [1, 2, 3], prompt_logprobs=1)
    assert delta.prompt_logprobs == (
        TokenLogprob(1, None),
        TokenLogprob(2, -1.5, ((9, -0.3),)),
        TokenLogprob(3, -0.7, ((3, -0.7),)),
    )
    assert to_delta(scored_output("a", [64], None, None), 1, [1, 2, 3]).prompt_logprobs == ()


def test_an_output_carrying_only_prompt_logprobs_is_kept() -> None:
    assert to_delta(scored_output("", [], None, None), 0, [1, 2, 3], prompt_logprobs=0) is not None


async def test_scoring_only_reports_the_prompt_and_drops_vllms_token() -> None:
    fake = FakeAsyncLLM([scored_output("Hi", [40], "stop", None)])
    settings = SamplingSettings(max_tokens=0, logprobs=0, prompt_logprobs=0)

    deltas = [d async for d in engine_with(fake).generate([1, 2, 3], settings, "req-score")]

    assert deltas == [
        GenerationDelta(
            "", 0, "length", prompt_logprobs=(TokenLogprob(1, None), TokenLogprob(2, -1.5), TokenLogprob(3, -0.7))
        )
    ]
    assert fake.calls[0][1].max_tokens == 1
