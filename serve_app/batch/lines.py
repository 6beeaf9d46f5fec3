"""A batch's lines: checking the input file before anything runs, and shaping each result as OpenAI writes it.

Validation follows OpenAI's: the whole file is read once and every broken line is named (bad JSON,
a missing field, a duplicate `custom_id`, a `url` other than the batch's endpoint, a model the app
does not serve, more lines than allowed, a media line naming no `file`); a batch with any of them
fails before a single request is sent. What a line's request then does (a 400 from the model, say) is
that line's own result.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from serve_app.protocol import (
    COLLECTION_ITEMS,
    MEDIA_BATCH_ENDPOINTS,
    BatchError,
    BatchInputLine,
    BatchLineError,
    BatchLineResponse,
    BatchOutputLine,
)

# Media routes whose `model` is the LLM of a pipeline, configured by default: a line may leave it out.
OPTIONAL_MODEL = frozenset({"/v1/pipelines/video-summary", "/v1/pipelines/image-rag"})
MAX_NAMED_ERRORS = 100  # a file of 50,000 bad lines names the first hundred, and says how many more


@dataclass(frozen=True)
class PendingLine:
    """A checked input line, by its 0-based position in the file."""

    idx: int
    custom_id: str
    body: dict[str, Any]


def check_lines(
    raw_lines: Iterable[bytes], endpoint: str, models: Iterable[str], max_lines: int
) -> tuple[list[PendingLine], list[BatchError]]:
    """The file's lines, or every reason it cannot run (each naming its 1-based line)."""
    served = set(models)
    lines: list[PendingLine] = []
    errors: list[BatchError] = []
    seen: set[str] = set()
    count = 0
    for number, raw in enumerate(raw_lines, start=1):
        if not raw.strip():
            continue
        count += 1
        if count > max_lines:
            errors.append(BatchError(code="too_many_requests", message=f"The file has more than {max_lines} lines."))
            break
        problem, line = _check(raw, number, endpoint, served, seen)
        if problem is not None:
            errors.append(problem)
        elif line is not None:
            lines.append(PendingLine(idx=len(lines), custom_id=line.custom_id, body=line.body))
    if count == 0:
        errors.append(BatchError(code="empty_file", message="The input file has no lines."))
    return lines, _bounded(errors)


def _check(
    raw: bytes, number: int, endpoint: str, served: set[str], seen: set[str]
) -> tuple[BatchError | None, BatchInputLine | None]:
    try:
        line = BatchInputLine.model_validate(json.loads(raw))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return BatchError(code="invalid_json_line", message="This line is not valid JSON.", line=number), None
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(p) for p in first["loc"])
        message = f"{first['msg']} (at '{param}')"
        return BatchError(code="invalid_request", message=message, param=param, line=number), None
    if line.url != endpoint:
        message = f"The line's url {line.url!r} is not the batch's endpoint {endpoint!r}."
        return BatchError(code="mismatched_endpoint", message=message, param="url", line=number), None
    if line.custom_id in seen:
        message = f"The custom_id {line.custom_id!r} is used by an earlier line; each must be unique."
        return BatchError(code="duplicate_custom_id", message=message, param="custom_id", line=number), None
    seen.add(line.custom_id)
    model = line.body.get("model")
    needs_model = endpoint not in OPTIONAL_MODEL and not COLLECTION_ITEMS.match(endpoint)
    if (needs_model or model is not None) and (not isinstance(model, str) or model not in served):
        message = f"The model {model!r} is not served here for {endpoint}; served: {sorted(served)}."
        return BatchError(code="model_not_found", message=message, param="body.model", line=number), None
    if endpoint in MEDIA_BATCH_ENDPOINTS and not isinstance(line.body.get("file"), str):
        # Whether the file exists, is the caller's and is media is the line's own result, when it runs.
        message = 'A media line names its media by id: `"file": "file-..."` (an upload with purpose user_data).'
        return BatchError(code="invalid_request", message=message, param="body.file", line=number), None
    return None, line


def _bounded(errors: list[BatchError]) -> list[BatchError]:
    if len(errors) <= MAX_NAMED_ERRORS:
        return errors
    more = len(errors) - MAX_NAMED_ERRORS
    return [*errors[:MAX_NAMED_ERRORS], BatchError(code="more_errors", message=f"... and {more} more lines.")]


def request_id() -> str:
    return f"batch_req_{uuid.uuid4().hex}"


def answered(custom_id: str, status_code: int, body: dict[str, Any] | str) -> str:
    """A line that got an HTTP answer, as OpenAI writes it (a non-2xx one goes to the error file)."""
    response = BatchLineResponse(status_code=status_code, request_id=request_id(), body=body)
    return BatchOutputLine(id=request_id(), custom_id=custom_id, response=response).model_dump_json()


def not_run(custom_id: str, code: str, message: str) -> str:
    """A line that never got an answer (the batch expired, say): `response` null, `error` says why."""
    error = BatchLineError(code=code, message=message)
    return BatchOutputLine(id=request_id(), custom_id=custom_id, error=error).model_dump_json()
