"""CPU engine: continuous batching over transformers, one forward pass per step for all sequences.

A background step loop owns the running sequences. Each step decodes every running
sequence in one batched forward pass (`KVBatch`), prefills the ones that arrived, and
samples each row with that sequence's own settings, RNG and grammar (`RowSampler`), so
requests join and leave between any two steps and a seed reproduces the same text
whatever else runs. The forward passes run in a worker thread; the event loop only moves
requests in and deltas out, and drops a sequence whose consumer went away before the
next step.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deployments.llm.engines.base import (
    LOGPROBS,
    LORA,
    STRUCTURED_OUTPUTS,
    FinishReason,
    GenerationDelta,
    GrammarSpec,
    IncrementalDetokenizer,
    SamplingSettings,
    StopStringMatcher,
    TokenLogprob,
)
from deployments.llm.engines.kv_batch import KVBatch
from deployments.llm.engines.lora import PeftAdapters
from deployments.llm.engines.row_sampling import RowSampler, prompt_logprobs, sample_rows
from serve_app.config import LLMConfig

_DTYPES = {"auto": "float32", "float16": "float16", "bfloat16": "bfloat16", "float32": "float32"}


class TransformersEngine:
    name = "transformers"
    capabilities = frozenset({STRUCTURED_OUTPUTS, LOGPROBS, LORA})

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        max_model_len: int,
        max_num_seqs: int = 64,
        stream_interval_ms: int = 0,
        adapters: bool = False,
    ):
        self.tokenizer = tokenizer
        self.max_model_len = max_model_len
        self.vocab_size = model.config.get_text_config().vocab_size
        self._max_num_seqs = max_num_seqs
        self._stream_interval_s = stream_interval_ms / 1000
        self._eos_ids = _eos_ids(model, tokenizer)
        self._adapters = PeftAdapters(model, enabled=adapters)
        self._batch = KVBatch(self._adapters)
        self._running: list[_Sequence] = []  # in the batch's row order
        self._waiting: deque[_Sequence] = deque()
        self._loop_task: asyncio.Task | None = None
        self._grammar_compiler: Any = None
        self._grammar_lock = threading.Lock()

    @property
    def model(self) -> Any:
        return self._adapters.base

    @classmethod
    def create(cls, model_dir: Path, config: LLMConfig) -> TransformersEngine:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if config.cpu_threads:
            torch.set_num_threads(config.cpu_threads)
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, _DTYPES[config.dtype])).eval()
        native_len = model.config.max_position_embeddings
        if config.max_model_len and config.max_model_len > native_len:
            raise ValueError(
                f"llm.max_model_len={config.max_model_len} exceeds the model's max_position_embeddings={native_len}"
            )
        return cls(
            model,
            tokenizer,
            config.max_model_len or native_len,
            config.max_num_seqs,
            config.stream_interval_ms,
            adapters=bool(config.adapters),
        )

    async def generate(
        self, prompt_ids: list[int], settings: SamplingSettings, request_id: str
    ) -> AsyncGenerator[GenerationDelta, None]:
        matcher = None
        if settings.grammar is not None:
            # Compiling a new schema takes a while: off the event loop (xgrammar caches each one).
            matcher = await asyncio.to_thread(self._grammar_matcher, settings.grammar)
        seq = _Sequence(
            prompt_ids=prompt_ids,
            settings=settings,
            sampler=RowSampler(settings, prompt_ids, self.vocab_size, self._eos_ids, matcher),
            detokenizer=IncrementalDetokenizer(self.tokenizer),
            stops=StopStringMatcher(settings.stop),
        )
        self._waiting.append(seq)
        self._ensure_step_loop()
        loop = asyncio.get_running_loop()
        last_yield: float | None = None
        try:
            while True:
                item = await seq.outbox.get()
                if last_yield is not None and len(self._running) > 1:
                    item = await self._gather_until(seq, item, last_yield + self._stream_interval_s)
                # A consumer slower than the step loop (a busy event loop, a slow client) gets what
                # piled up as one delta: fewer, larger chunks instead of a growing backlog.
                while _open(item) and not seq.outbox.empty():
                    item = _merge(item, seq.outbox.get_nowait())
                if isinstance(item, BaseException):
                    raise item
                yield item
                last_yield = loop.time()
                if item.finish_reason is not None:
                    return
        finally:
            # Closed early (client gone, stop found by the caller) or done: the loop drops it before the next step.
            seq.cancelled = True

    async def _gather_until(self, seq: _Sequence, item: Any, deadline: float) -> Any:
        """Merge the deltas that arrive before `deadline` into `item`.

        Only while other sequences run: every chunk costs a trip through Serve's stream, the
        ingress and the client's connection, which is what limits a busy replica, not the forward
        pass. A lone request still streams token by token; its first token is never held.
        """
        loop = asyncio.get_running_loop()
        while _open(item) and (remaining := deadline - loop.time()) > 0:
            try:
                item = _merge(item, await asyncio.wait_for(seq.outbox.get(), remaining))
            except TimeoutError:
                break
        return item

    async def check_health(self) -> None:
        # A one-token forward pass: proves the weights are loaded and torch still runs.
        await asyncio.to_thread(self._probe)

    def _probe(self) -> None:
        import torch

        with torch.inference_mode(), self._adapters.lock:
            model = self._adapters.model
            model(input_ids=torch.tensor([[self._eos_ids[0]]]), **self._adapters.forward_kwargs([None]))

    async def load_adapter(self, name: str, path: Path) -> None:
        await asyncio.to_thread(self._adapters.load, name, path)

    async def unload_adapter(self, name: str) -> None:
        await asyncio.to_thread(self._adapters.unload, name)

    def shutdown(self) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()

    # --- the step loop --------------------------------------------------------------------------

    def _ensure_step_loop(self) -> None:
        loop = asyncio.get_running_loop()
        task = self._loop_task
        if task is not None and not task.done() and task.get_loop() is loop:
            return
        if task is not None and task.get_loop() is not loop:
            # The loop that ran it has gone (a test's event loop): so have its sequences' consumers.
            self._running, self._batch = [], KVBatch(self._adapters)
        self._loop_task = loop.create_task(self._step_loop())

    async def _step_loop(self) -> None:
        while self._waiting or self._running:
            self._drop(lambda seq: seq.cancelled)
            admitted: list[_Sequence] = []
            while self._waiting and len(self._running) + len(admitted) < self._max_num_seqs:
                seq = self._waiting.popleft()
                if not seq.cancelled:
                    admitted.append(seq)
            if not admitted and not self._running:
                continue
            try:
                events = await asyncio.to_thread(self._step, admitted)
            except Exception as exc:  # a failed forward pass fails the sequences in it, not the engine
                for seq in {id(s): s for s in self._running + admitted}.values():
                    seq.outbox.put_nowait(exc)
                self._running, self._batch = [], KVBatch(self._adapters)
                continue
            for seq, delta in events:
                seq.outbox.put_nowait(delta)

    def _drop(self, gone: Callable[[_Sequence], bool]) -> None:
        """Drop the running sequences that are `gone` (cancelled, finished), and their rows."""
        if any(gone(seq) for seq in self._running):
            rows = [row for row, seq in enumerate(self._running) if not gone(seq)]
            self._batch.keep(rows)
            self._running = [self._running[row] for row in rows]

    def _step(self, admitted: list[_Sequence]) -> list[tuple[_Sequence, GenerationDelta]]:
        """One token for every running sequence and a first one for each admitted (worker thread)."""
        import torch

        events: list[tuple[_Sequence, GenerationDelta]] = []
        # inference_mode is thread-local: it must be entered in the worker thread.
        with torch.inference_mode():
            stepping, logits = list(self._running), []
            if stepping:
                logits.append(
                    self._batch.decode([s.last_token for s in stepping], [s.settings.adapter for s in stepping])
                )
            joined, first_logits = self._prefill(admitted, events)
            stepping, logits = stepping + joined, logits + first_logits
            if stepping:
                drawn = sample_rows([seq.sampler for seq in stepping], torch.cat(logits))
                for seq, (token, logprob) in zip(stepping, drawn, strict=True):
                    seq.last_token = token
                    delta = seq.accept(token, logprob, self._eos_ids)
                    if delta is not None:
                        events.append((seq, delta))
        self._drop(lambda seq: seq.finished)
        return events

    def _prefill(self, admitted: list[_Sequence], events: list) -> tuple[list[_Sequence], list[Any]]:
        """Give the admitted sequences their rows; return them in row order, and the logits [rows, vocab] for
        their first tokens in as many pieces as there were passes.

        The ones scoring their prompt are prefilled alone (their forward keeps every position's logits); the
        others together, in one pass. A sequence that only scores (max_tokens 0) gets no row, and without
        prompt_logprobs not even a forward pass.
        """
        joined, logits, together = [], [], []
        for seq in admitted:
            s = seq.settings
            if s.prompt_logprobs is None:
                if s.max_tokens == 0:
                    events.append((seq, seq.finish_unsampled()))
                else:
                    together.append(seq)
                continue
            if s.max_tokens == 0:
                seq.prompt_logprobs = prompt_logprobs(
                    self._batch.score(seq.prompt_ids, s.adapter), seq.prompt_ids, s.prompt_logprobs
                )
                events.append((seq, seq.finish_unsampled()))
                continue
            # The prefill computed every position's logits anyway: scoring the prompt costs no second pass.
            every = self._batch.prefill_scored(seq.prompt_ids, s.adapter)
            seq.prompt_logprobs = prompt_logprobs(every, seq.prompt_ids, s.prompt_logprobs)
            joined.append(seq)
            logits.append(every[-1:].float())
        if together:
            prompts, adapters = [seq.prompt_ids for seq in together], [seq.settings.adapter for seq in together]
            logits.append(self._batch.prefill(prompts, adapters))
            joined += together
        self._running += joined
        return joined, logits

    def _grammar_matcher(self, spec: GrammarSpec) -> Any:
        import xgrammar

        # One compilation per schema, even when many requests with it arrive at once: the others wait
        # for it, then find it in xgrammar's compiler cache.
        with self._grammar_lock:
            compiled = self._compile(spec)
        return xgrammar.GrammarMatcher(compiled)

    def _compile(self, spec: GrammarSpec) -> Any:
        import xgrammar

        if self._grammar_compiler is None:
            info = xgrammar.TokenizerInfo.from_huggingface(
                self.tokenizer, vocab_size=self.vocab_size, stop_token_ids=self._eos_ids
            )
            self._grammar_compiler = xgrammar.GrammarCompiler(info, max_threads=1)
        # json_object means an object (OpenAI's JSON mode), not any JSON value. Compact JSON: a weak
        # model given free whitespace can pad forever instead of closing the object.
        schema = spec.schema if spec.kind == "json_schema" else '{"type": "object"}'
        return self._grammar_compiler.compile_json_schema(schema, any_whitespace=False)


@dataclass(eq=False)
class _Sequence:
    """One request in the step loop: its sampler, its text so far, and the queue its consumer reads."""

    prompt_ids: list[int]
    settings: SamplingSettings
    sampler: RowSampler
    detokenizer: IncrementalDetokenizer
    stops: StopStringMatcher
    outbox: asyncio.Queue = field(default_factory=asyncio.Queue)
    last_token: int = 0
    cancelled: bool = False
    finished: bool = False
    _unreported: int = 0
    _logprobs: list[TokenLogprob] = field(default_factory=list)
    prompt_logprobs: tuple[TokenLogprob, ...] = ()  # until the first delta carries them

    def accept(self, token: int, logprob: TokenLogprob | None, eos_ids: list[int]) -> GenerationDelta | None:
        """Take the sampled token; return the delta to stream, if any (the last one has finish_reason)."""
        s = self.settings
        self._unreported += 1
        if logprob is not None:
            self._logprobs.append(logprob)
        if token in eos_ids and not s.ignore_eos:
            return self._finish("", "stop")
        text, stopped = self._filter(self.detokenizer.push(token))
        if stopped:
            self.finished = True
            return self._delta(text, "stop")
        if self.sampler.grammar_finished:
            return self._finish(text, "stop")
        if self.sampler.generated >= s.max_tokens:
            return self._finish(text, "length")
        return self._delta(text) if text else None

    def finish_unsampled(self) -> GenerationDelta:
        """The only delta of a sequence that generates nothing (max_tokens 0): it stopped at its limit."""
        return self._finish("", "length")

    def _filter(self, piece: str) -> tuple[str, bool]:
        # vLLM's min_tokens: no stop string counts before it is reached.
        if self.sampler.generated <= self.settings.min_tokens:
            return piece, False
        return self.stops.feed(piece)

    def _finish(self, text: str, reason: FinishReason) -> GenerationDelta:
        """The last delta: `text`, then whatever the detokenizer and the stop matcher still hold."""
        self.finished = True
        rest, stopped = self._filter(self.detokenizer.flush())
        if not stopped:
            rest += self.stops.flush()
        return self._delta(text + rest, "stop" if stopped else reason)

    def _delta(self, text: str, reason: FinishReason | None = None) -> GenerationDelta:
        delta = GenerationDelta(text, self._unreported, reason, tuple(self._logprobs), self.prompt_logprobs)
        self._unreported, self._logprobs, self.prompt_logprobs = 0, [], ()
        return delta


def _open(item: Any) -> bool:
    return isinstance(item, GenerationDelta) and item.finish_reason is None


def _merge(first: GenerationDelta, then: GenerationDelta | BaseException) -> GenerationDelta | BaseException:
    if isinstance(then, BaseException):
        return then
    return GenerationDelta(
        first.text + then.text,
        first.new_tokens + then.new_tokens,
        then.finish_reason,
        first.logprobs + then.logprobs,
        first.prompt_logprobs + then.prompt_logprobs,
    )


def _eos_ids(model: Any, tokenizer: Any) -> list[int]:
    configured = model.generation_config.eos_token_id
    ids = configured if isinstance(configured, list) else [configured]
    ids = [i for i in ids if i is not None]
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    return ids
