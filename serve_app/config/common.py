"""What every config section builds on: strict parsing, and the one batching knob set.

Every section rejects unknown keys, because a misspelt key in a Serve YAML would otherwise
be dropped in silence and its default used, which is how a production config ends up
running with settings nobody chose. BatchingConfig is shared by the batched deployments
(detector, embedders) so they are tuned with the same two numbers.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


def _repeated(names: list[str]) -> list[str]:
    """The names that occur more than once, sorted: what a config error about duplicates names."""
    return sorted({n for n in names if names.count(n) > 1})


class _Strict(BaseModel):
    # A typo in a config key must fail loudly, not silently fall back to a default.
    model_config = ConfigDict(extra="forbid")


class BatchingConfig(_Strict):
    max_batch_size: int = Field(default=16, ge=1, description="Requests that share one forward pass, at most.")
    batch_wait_timeout_s: float = Field(
        default=0.01, ge=0.0, le=5.0, description="How long a partial batch waits for more requests."
    )
