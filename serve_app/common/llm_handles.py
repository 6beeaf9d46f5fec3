"""The LLM deployments' handles by every id they answer: base models and their adapters.

An adapter's handle is its base deployment's, carrying the adapter id as Serve's multiplexed model
id, so Serve sends its requests to a replica that already holds the adapter. The Ingress and the
pipelines route a request's `model` through one of these; aliases are the Ingress's (serve_app.http.traffic).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from serve_app.errors import NotFound


class LLMHandles(Mapping):
    def __init__(self, handles: Mapping[str, Any], adapters: Mapping[str, str] | None = None):
        self.parents = dict(adapters or {})  # adapter id -> its base's id
        self._handles = {
            model: handle.options(multiplexed_model_id=model) if model in self.parents else handle
            for model, handle in handles.items()
        }

    def __getitem__(self, model: str) -> Any:
        return self._handles[model]

    def __iter__(self) -> Iterator[str]:
        return iter(self._handles)

    def __len__(self) -> int:
        return len(self._handles)

    def pick(self, model: str) -> Any:
        """The handle that answers `model`, or a 404 naming what is served."""
        handle = self._handles.get(model)
        if handle is None:
            raise NotFound(f"The model '{model}' does not exist; LLMs served here: {sorted(self)}", param="model")
        return handle
