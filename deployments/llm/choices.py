"""Several generations for one request (n choices, a list of prompts), and a chat choice's stream.

Each choice is its own engine generation, so both engines serve `n` and prompt lists the
same way and continuous batching runs them side by side. `interleave` streams their deltas
as they come; closing it cancels every generation, which frees their engine slots at once.
`ChatChoiceStream` turns one choice's deltas into OpenAI chunk choices: content, or tool-call
deltas when the request's tool mode says the text is a call.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

from deployments.llm.engines.base import GenerationDelta
from deployments.llm.openai_mapping import Accumulator, LogprobFormatter
from deployments.llm.tools import ToolMode
from serve_app.protocol import (
    AssistantMessage,
    ChatChoice,
    ChatChunkChoice,
    ChunkDelta,
    FunctionCallDelta,
    ToolCall,
    ToolCallDelta,
    new_id,
)


@dataclass
class Generation:
    acc: Accumulator
    deltas: AsyncIterator[GenerationDelta]


async def drain(generations: list[Generation]) -> None:
    """Run every generation to its end; one failing cancels the others."""

    async def run(generation: Generation) -> None:
        async for delta in generation.deltas:
            generation.acc.add(delta)

    if len(generations) == 1:
        await run(generations[0])
        return
    async with asyncio.TaskGroup() as group:
        for generation in generations:
            group.create_task(run(generation))


_DONE = object()


async def interleave(generations: list[Generation]) -> AsyncIterator[tuple[Generation, GenerationDelta]]:
    """Each generation's deltas (already added to its accumulator) in the order they arrive."""
    if len(generations) == 1:
        async for delta in generations[0].deltas:
            generations[0].acc.add(delta)
            yield generations[0], delta
        return
    queue: asyncio.Queue = asyncio.Queue()

    async def pump(generation: Generation) -> None:
        try:
            async for delta in generation.deltas:
                queue.put_nowait((generation, delta))
        except Exception as exc:
            queue.put_nowait((generation, exc))
        else:
            queue.put_nowait((generation, _DONE))

    tasks = [asyncio.create_task(pump(g)) for g in generations]
    try:
        running = len(tasks)
        while running:
            generation, item = await queue.get()
            if item is _DONE:
                running -= 1
                continue
            if isinstance(item, Exception):
                raise item
            generation.acc.add(item)
            yield generation, item
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def chat_choice(acc: Accumulator, mode: ToolMode, formatter: LogprobFormatter | None) -> ChatChoice:
    content, calls = mode.calls_from(acc.text)
    return ChatChoice(
        index=acc.index,
        message=AssistantMessage(content=content, tool_calls=calls or None),
        finish_reason=mode.finish_reason(acc.finish_reason, calls),
        logprobs=formatter.chat(acc.logprobs) if formatter is not None else None,
    )


class ChatChoiceStream:
    """One choice's deltas → chunk choices, as OpenAI streams them."""

    def __init__(self, index: int, mode: ToolMode, formatter: LogprobFormatter | None):
        self._index = index
        self._mode = mode
        self._formatter = formatter
        self._parser = mode.parser.streaming() if mode.kind == "auto" and mode.parser is not None else None
        # `required`: the JSON list of calls, parsed once complete; named: the arguments, for the finish reason.
        self._held: list[str] = []
        self._calls = 0
        self._made: list[ToolCall] = []  # the calls streamed (`required`, `auto`)

    def feed(self, delta: GenerationDelta) -> list[ChatChunkChoice]:
        logprobs = self._formatter.chat(delta.logprobs) if self._formatter is not None and delta.logprobs else None
        kind = self._mode.kind
        if kind == "none":
            if not (delta.text or delta.finish_reason or logprobs):
                return []
            return [self._choice(ChunkDelta(content=delta.text or None), delta.finish_reason, logprobs)]
        out: list[ChunkDelta] = []
        if kind == "named":
            if self._calls == 0:
                out.append(self._call_start(0, ToolCall(function={"name": self._mode.function, "arguments": ""})))
                self._calls = 1
            self._held.append(delta.text)
            if delta.text:
                out.append(
                    ChunkDelta(tool_calls=[ToolCallDelta(index=0, function=FunctionCallDelta(arguments=delta.text))])
                )
        elif kind == "required":
            self._held.append(delta.text)
            if delta.finish_reason is not None:
                content, calls = self._mode.calls_from("".join(self._held))
                out.extend(self._content_and_calls(content or "", calls))
        else:
            content, calls = self._parser.feed(delta.text) if self._parser is not None else (delta.text, [])
            out.extend(self._content_and_calls(content, calls))
            if delta.finish_reason is not None and self._parser is not None:
                rest, _ = self._parser.finish()
                out.extend(self._content_and_calls(rest, []))
        finish = None
        if delta.finish_reason is not None:
            calls = self._mode.calls_from("".join(self._held))[1] if kind == "named" else self._made
            finish = self._mode.finish_reason(delta.finish_reason, calls)
        if not out and (finish is not None or logprobs is not None):
            out.append(ChunkDelta())
        choices = [self._choice(d) for d in out]
        if choices:
            choices[0].logprobs = logprobs
            choices[-1].finish_reason = finish
        return choices

    def _content_and_calls(self, content: str, calls: list[ToolCall]) -> list[ChunkDelta]:
        out = [ChunkDelta(content=content)] if content else []
        for call in calls:
            out.append(self._call_start(self._calls, call))
            self._calls += 1
            self._made.append(call)
        return out

    def _call_start(self, index: int, call: ToolCall) -> ChunkDelta:
        function = FunctionCallDelta(name=call.function.name, arguments=call.function.arguments)
        return ChunkDelta(
            tool_calls=[ToolCallDelta(index=index, id=new_id("call"), type="function", function=function)]
        )

    def _choice(self, delta: ChunkDelta, finish: str | None = None, logprobs=None) -> ChatChunkChoice:
        return ChatChunkChoice(index=self._index, delta=delta, finish_reason=finish, logprobs=logprobs)
