"""Traffic between model versions: aliases that split requests over weighted targets.

This is the Ingress deployment's `user_config` (`user_config: {aliases: [...]}` under its entry in
the YAML's `deployments:`), not part of `args`: Serve hands a changed user_config to the running
replicas (`reconfigure`) without restarting anything, which is how a canary is promoted or rolled
back and a blue-green alias flipped. What the targets must exist against is checked where the
model ids are known (serve_app/http/traffic.py), with the same field paths.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from serve_app.config.common import _repeated, _Strict


class AliasTarget(_Strict):
    model: str = Field(min_length=1, description="An LLM or adapter id (not another alias).")
    weight: float = Field(ge=0.0, description="Relative share of the alias's traffic; 0 drains a target.")


class AliasConfig(_Strict):
    name: str = Field(min_length=1, description="The id clients pass as `model`.")
    targets: list[AliasTarget] = Field(min_length=1)
    fallback: str | None = Field(
        default=None, description="Where a request goes when its target's queue is full, instead of a 503."
    )
    sticky: bool = Field(
        default=True, description="Keep a user (OpenAI's `user` field, else the API key) on one target."
    )

    @model_validator(mode="after")
    def _a_real_split(self) -> AliasConfig:
        models = [t.model for t in self.targets]
        if len(set(models)) != len(models):
            raise ValueError(f"targets name a model twice: {models}")
        if self.name in models or self.fallback == self.name:
            raise ValueError(f"alias {self.name!r} points at itself")
        if sum(t.weight for t in self.targets) <= 0:
            raise ValueError("target weights sum to 0: at least one must be positive")
        return self


class TrafficConfig(_Strict):
    aliases: list[AliasConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _names_unique(self) -> TrafficConfig:
        names = [a.name for a in self.aliases]
        twice = _repeated(names)
        if twice:
            raise ValueError(f"aliases {twice} are defined twice")
        return self
