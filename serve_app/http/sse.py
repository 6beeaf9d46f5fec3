"""Server-sent events in the OpenAI streaming format: `data: {json}` ... `data: [DONE]`."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from serve_app.errors import ServiceUnavailable, as_api_error

logger = logging.getLogger("ray.serve")


async def sse_response(stream: Any) -> StreamingResponse:
    """Await the first chunk before answering, so a rejected request is a plain HTTP error."""
    try:
        first = await stream.__anext__()
    except StopAsyncIteration:
        raise ServiceUnavailable("the model ended the stream before sending anything") from None
    return StreamingResponse(
        _sse_events(first, stream),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _sse_events(first: BaseModel, rest: AsyncIterator[BaseModel]) -> AsyncIterator[str]:
    try:
        yield _sse_data(first)
        async for chunk in rest:
            yield _sse_data(chunk)
    except Exception as exc:
        error = as_api_error(exc)
        logger.warning("stream failed mid-way: %s", error.message)
        yield f"data: {error.envelope().model_dump_json()}\n\n"
    yield "data: [DONE]\n\n"


def _sse_data(chunk: BaseModel) -> str:
    # OpenAI omits `usage` from every chunk but the usage chunk.
    exclude = {"usage"} if getattr(chunk, "usage", None) is None else None
    return f"data: {chunk.model_dump_json(exclude=exclude)}\n\n"
