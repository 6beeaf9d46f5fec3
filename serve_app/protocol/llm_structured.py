"""The structured side of OpenAI's chat API: tools and tool calls, response formats, logprobs.

Shapes follow the OpenAI API reference, so the SDKs' own helpers (`.parse()`, tool-call
reassembly of stream deltas, `logprobs.content`) work unchanged. Schemas a client sends are
checked here (the JSON Schema meta-schema); whether a grammar engine supports one is the
LLM deployment's check, since it needs the engine's grammar compiler.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from serve_app.protocol.common import _Request, new_id, schema_rules, when

MAX_TOP_LOGPROBS = 20  # OpenAI's own maximum


def check_json_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """Raise ValueError (named by pydantic after the field) when `schema` is not a JSON Schema."""
    import jsonschema

    try:
        jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator).check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise ValueError(f"not a valid JSON Schema: {exc.message}") from None
    return schema


class FunctionDefinition(_Request):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[a-zA-Z0-9_-]+$")
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None

    @field_validator("parameters")
    @classmethod
    def _parameters_are_a_schema(cls, parameters: dict[str, Any] | None) -> dict[str, Any] | None:
        return check_json_schema(parameters) if parameters is not None else None

    @property
    def parameters_schema(self) -> dict[str, Any]:
        # OpenAI: omitting parameters defines a function with an empty parameter list.
        return self.parameters or {"type": "object", "properties": {}}


class Tool(_Request):
    type: Literal["function"] = "function"
    function: FunctionDefinition


class NamedFunction(_Request):
    name: str


class NamedToolChoice(_Request):
    type: Literal["function"] = "function"
    function: NamedFunction


ToolChoice = Literal["none", "auto", "required"] | NamedToolChoice


class JSONSchemaFormat(_Request):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    name: str = Field(default="response", max_length=64)
    description: str | None = None
    schema_: dict[str, Any] = Field(default_factory=dict, alias="schema")
    strict: bool | None = None

    @field_validator("schema_")
    @classmethod
    def _a_schema(cls, schema: dict[str, Any]) -> dict[str, Any]:
        return check_json_schema(schema)


class ResponseFormat(_Request):
    model_config = ConfigDict(
        json_schema_extra=schema_rules(when("type", {"const": "json_schema"}, "json_schema", {"type": "object"}))
    )

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JSONSchemaFormat | None = Field(default=None, validate_default=True)

    @field_validator("json_schema")
    @classmethod
    def _given_for_json_schema(cls, value: JSONSchemaFormat | None, info) -> JSONSchemaFormat | None:
        if info.data.get("type") == "json_schema" and value is None:
            raise ValueError("json_schema is required when type is 'json_schema'")
        return value


# --- tool calls, in messages (history) and in answers ----------------------------------------------


class FunctionCall(BaseModel):
    name: str
    arguments: str  # a JSON string, as OpenAI sends it


class ToolCall(BaseModel):
    id: str = Field(default_factory=lambda: new_id("call"))
    type: Literal["function"] = "function"
    function: FunctionCall

    def template_form(self) -> dict[str, Any]:
        """As chat templates expect it: arguments as an object (Qwen's template dumps them itself)."""
        try:
            arguments = json.loads(self.function.arguments)
        except json.JSONDecodeError:
            arguments = self.function.arguments
        return {"id": self.id, "type": "function", "function": {"name": self.function.name, "arguments": arguments}}


class FunctionCallDelta(BaseModel):
    name: str | None = None
    arguments: str = ""


class ToolCallDelta(BaseModel):
    index: int
    id: str | None = None
    type: Literal["function"] | None = None
    function: FunctionCallDelta


# --- logprobs ----------------------------------------------------------------------------------


class TopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int] | None = None


class TokenLogprobEntry(TopLogprob):
    top_logprobs: list[TopLogprob] = Field(default_factory=list)


class ChoiceLogprobs(BaseModel):
    """Chat's shape: one entry per generated token."""

    content: list[TokenLogprobEntry] | None = None
    refusal: list[TokenLogprobEntry] | None = None


class CompletionLogprobs(BaseModel):
    """The legacy completions shape: parallel lists, one item per token."""

    tokens: list[str] = Field(default_factory=list)
    token_logprobs: list[float | None] = Field(default_factory=list)
    top_logprobs: list[dict[str, float] | None] = Field(default_factory=list)
    text_offset: list[int] = Field(default_factory=list)
