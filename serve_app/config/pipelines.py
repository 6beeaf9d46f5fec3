"""The pipeline sections: the video-summary and image-RAG prompts and limits.

The pipelines only compose other deployments, so their config is what they add on top:
prompts, token budgets and defaults for what a request leaves out. Prompt templates are
checked when the config is read, so a template with a misspelt placeholder fails at
start-up rather than on the first request.
"""

from __future__ import annotations

from pydantic import Field, field_validator

from serve_app.config.common import _Strict

# Where each pipeline names its LLM in the app's YAML: the key errors name, and the Ingress resolves by.
VIDEO_SUMMARY_LLM = "video_summary.llm_model"
IMAGE_RAG_LLM = "vision.image_rag.llm_model"


class VideoSummaryConfig(_Strict):
    llm_model: str | None = Field(
        default=None, description="LLM or adapter id of the summarising LLM; default: the first of `llms`."
    )
    system_prompt: str = "You summarise transcripts of recordings accurately and concisely."
    chunk_prompt: str = Field(
        default="Summarise this part of a transcript in a few sentences.\n\nTranscript:\n{transcript}",
        description="Map step; {transcript} is replaced by the chunk text.",
    )
    combine_prompt: str = Field(
        default="Combine these partial summaries of one recording into a single summary.\n\nSummaries:\n{summaries}",
        description="Reduce step; {summaries} is replaced by the partial summaries.",
    )
    summary_prompt: str = Field(
        default="Summarise this transcript in a few sentences.\n\nTranscript:\n{transcript}",
        description="Used when the whole transcript fits the LLM's context.",
    )
    max_summary_tokens: int = Field(default=256, ge=1, description="Tokens generated per LLM call.")
    chunk_tokens: int | None = Field(
        default=None,
        ge=32,
        description="Transcript tokens per map chunk; default: what fits the LLM's context with the prompt and output.",
    )
    temperature: float = Field(default=0.3, ge=0.0, le=2.0)
    max_reduce_rounds: int = Field(default=4, ge=1, description="Reduce levels before giving up (400).")


DEFAULT_RAG_PROMPT = (
    "You are looking at an image. An object detector found: {detections}.\n"
    "Related items from the knowledge base:\n{retrieved}\n"
    "Answer the question using only this information.\nQuestion: {question}"
)
RAG_PROMPT_FIELDS = {"detections", "retrieved", "question"}


class ImageRAGConfig(_Strict):
    llm_model: str | None = Field(
        default=None, description="LLM or adapter id that answers; default: the first of `llms`."
    )
    default_collection: str | None = Field(default=None, description="Used when a request names no collection.")
    default_question: str = "What is in this image?"
    top_k: int = Field(default=5, ge=1, le=100)
    max_tokens: int = Field(default=128, ge=1)
    prompt_template: str = Field(
        default=DEFAULT_RAG_PROMPT, description="Python format string with {detections}, {retrieved}, {question}."
    )

    @field_validator("prompt_template")
    @classmethod
    def _known_fields(cls, template: str) -> str:
        import string

        try:
            used = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
        except ValueError as exc:
            raise ValueError(f"prompt_template is not a valid format string: {exc}") from None
        unknown = used - RAG_PROMPT_FIELDS
        if unknown:
            raise ValueError(
                f"prompt_template uses unknown fields {sorted(unknown)}; allowed: {sorted(RAG_PROMPT_FIELDS)}"
            )
        return template
