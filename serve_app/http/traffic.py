"""Which model answers a request: aliases resolved to one weighted target, sticky per user.

Pure and Ray-free: the Ingress holds one TrafficTable, rebuilt from its user_config on every
`reconfigure`, and asks it for each request whose `model` is an alias. Stickiness hashes the
user (OpenAI's `user` field, else the API key) onto [0, 1) and walks the cumulative weights in
the configured order, so a user keeps their target while weights stay put, and moving weight from
the first target to the last (a canary growing from 10% to 50%) moves only the users in between.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Collection
from dataclasses import dataclass

from pydantic import ValidationError

from serve_app.config import AliasConfig, ConfigError, TrafficConfig, validation_problems


@dataclass(frozen=True)
class Route:
    """The model that answers, and the alias (with its fallback) it was picked for, if any."""

    model: str
    alias: str | None = None
    fallback: str | None = None


class TrafficTable:
    def __init__(self, aliases: Collection[AliasConfig] = ()):
        self._aliases = {a.name: a for a in aliases}

    @classmethod
    def from_user_config(cls, user_config: dict | None, served: Collection[str]) -> TrafficTable:
        """Validate the Ingress's user_config against the ids the app serves; errors name the field."""
        try:
            traffic = TrafficConfig.model_validate(user_config or {})
        except ValidationError as exc:
            raise ConfigError(f"invalid Ingress user_config: {validation_problems(exc)}") from None
        problems = []
        for i, alias in enumerate(traffic.aliases):
            if alias.name in served:
                problems.append(f"aliases.{i}.name: {alias.name!r} is already a model id; an alias needs its own")
            for j, target in enumerate(alias.targets):
                if target.model not in served:
                    problems.append(f"aliases.{i}.targets.{j}.model: {target.model!r} is not served here")
            if alias.fallback is not None and alias.fallback not in served:
                problems.append(f"aliases.{i}.fallback: {alias.fallback!r} is not served here")
        if problems:
            raise ConfigError(f"invalid Ingress user_config: {'; '.join(problems)}; served: {sorted(served)}")
        return cls(traffic.aliases)

    @property
    def aliases(self) -> list[AliasConfig]:
        return list(self._aliases.values())

    def __contains__(self, model: str) -> bool:
        return model in self._aliases

    def resolve(self, model: str, user: str | None = None) -> Route:
        alias = self._aliases.get(model)
        if alias is None:
            return Route(model)
        point = _point(alias.name, user) if alias.sticky and user else random.random()
        return Route(_pick(alias, point), alias.name, alias.fallback)


def _point(alias: str, user: str) -> float:
    digest = hashlib.sha256(f"{alias}\0{user}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _pick(alias: AliasConfig, point: float) -> str:
    total = sum(t.weight for t in alias.targets)
    edge = 0.0
    for target in alias.targets:
        edge += target.weight / total
        if point < edge and target.weight > 0:
            return target.model
    # Rounding can leave the last edge a hair under 1.0: the last positive target owns the rest.
    return next(t.model for t in reversed(alias.targets) if t.weight > 0)
