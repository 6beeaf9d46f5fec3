"""A client generated from `/openapi.json` meets no surprise: schemathesis against the session app.

`st run --checks all` (coverage and fuzzing phases, a bounded number of examples per operation, a
fixed seed): every status sent is documented, every answer has its documented media type and shape,
a 405 names every allowed method, and no schema-valid request is refused, but for the refusals a
JSON schema cannot express (below: each is checked against something the schema does not know, such
as the model's vocabulary or whether bytes are decodable audio), which must then name their param.
DELETE operations are not fuzzed here: they would delete what other tests of the session app made
(tests/http checks their statuses and Allow headers).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

# param of a 400 -> why the schema cannot rule the request out beforehand.
INEXPRESSIBLE = {
    "tool_choice": "a named tool_choice must name one of the request's own tools",
    "tools": "tool names must be unique within the request",
    "logit_bias": "token ids must lie within the model's vocabulary",
    "prompt": "token ids within the vocabulary, at most the LLM's max_prompts, and within its context",
    "messages": "the prompt must fit the model's context",
    "n": "at most the LLM's configured max_n",
    "response_format.json_schema.schema": "a JSON Schema the grammar engine can compile",
    "file": "bytes that decode as audio or video",
    "image": "bytes that decode as an image",
    "language": "a language the ASR model knows",
    "collection": "required only when the app's config names no default collection",
    "known_speaker_references": "clips that decode as 0.5-10 s of audio with speech, one per name",
    "known_speaker_names": "one distinct name per reference clip, at most the Diarizer's max_known_speakers",
    "num_speakers": "within [min_speakers, max_speakers] and the Diarizer's configured cap",
    "min_speakers": "at most max_speakers and the Diarizer's configured cap",
    "max_speakers": "at most the Diarizer's configured cap",
}
ST = Path(sys.executable).with_name("st")


def failures(events: Path) -> list[dict]:
    """Every failed check of the run, with the status and the envelope's param of the answer it judged."""
    found = []
    for line in events.read_text().splitlines():
        recorder = json.loads(line).get("ScenarioFinished", {}).get("recorder")
        for case, checks in (recorder or {}).get("checks", {}).items():
            response = recorder["interactions"].get(case, {}).get("response") or {}
            for check in checks:
                if check["status"] == "failure":
                    failure = check["failure_info"]["failure"]
                    found.append(
                        {
                            "operation": recorder["label"],
                            "code": failure["code"],
                            "title": failure["title"],
                            "message": failure["message"][:300],
                            "status": response.get("status_code"),
                            "param": _param(response),
                        }
                    )
    return found


def statuses(events: Path) -> Counter[int]:
    counted: Counter[int] = Counter()
    for line in events.read_text().splitlines():
        recorder = json.loads(line).get("ScenarioFinished", {}).get("recorder") or {}
        counted.update((i.get("response") or {}).get("status_code") for i in recorder.get("interactions", {}).values())
    return counted


def _param(response: dict) -> str | None:
    try:
        return json.loads(base64.b64decode(response["content"]["$base64"]))["error"]["param"]
    except (ValueError, KeyError, TypeError):
        return None


def _the_schema_cannot_express(failure: dict) -> bool:
    """A schema-valid request refused for a reason no JSON schema can state (INEXPRESSIBLE), naming its param."""
    param = failure["param"] or ""
    return (
        failure["code"] == "ST202"
        and failure["status"] == 400
        and (param in INEXPRESSIBLE or param.split(".")[0] in INEXPRESSIBLE)
    )


@pytest.mark.timeout(240)
def test_the_server_answers_as_its_openapi_schema_says(local_app, tmp_path):
    events = tmp_path / "events.ndjson"
    command = [
        str(ST), "run", f"{local_app}/openapi.json", "--checks", "all", "--phases", "coverage,fuzzing",
        "--max-examples", "3", "--seed", "20261203", "--workers", "1", "--exclude-method", "DELETE",
        "--request-timeout", "60", "--max-response-time", "60", "--no-color", "--report", "ndjson",
        "--report-ndjson-path", str(events),
    ]  # fmt: skip
    run = subprocess.run(command, capture_output=True, text=True, timeout=220, env={**os.environ, "NO_COLOR": "1"})
    summary = [line for line in run.stdout.splitlines() if "generated" in line or "failures" in line]
    print("\n".join(summary))
    assert events.exists(), run.stdout[-3000:] + run.stderr[-2000:]
    found = failures(events)
    surprises = [f for f in found if not _the_schema_cannot_express(f)]
    assert not surprises, json.dumps(surprises, indent=1)[:6000]
    assert statuses(events)[200] > 0, "some requests were answered: the run reached the models"
