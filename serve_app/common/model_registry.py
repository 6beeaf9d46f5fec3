"""Every served model's handle, by kind and by every id it answers, built once by the app builder.

`build_app` fills one `ModelRegistry` with the bound deployments and passes that same object to
the Ingress and to both pipelines; Serve delivers it to each replica with a DeploymentHandle in
place of every deployment. An adapter's handle is its base deployment's, carrying the adapter id
as Serve's multiplexed model id, so Serve sends its requests to a replica that already holds the
adapter. Configured handles (adapters' multiplexed ids, `options(stream=True)`) are made once per
replica, on first use, and reused, as Ray's own ingress caches them: `.options()` copies a handle,
and a copy per request is garbage for nothing. Aliases are the Ingress's (serve_app.http.traffic).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from serve_app.errors import NotFound

Kind = Literal["llm", "asr", "diarizer", "detector", "embedding"]
KINDS: tuple[Kind, ...] = ("llm", "asr", "diarizer", "detector", "embedding")


@dataclass
class ModelRegistry:
    handles: dict[str, dict[str, Any]] = field(default_factory=dict)  # kind -> served id -> handle
    adapters: dict[str, str] = field(default_factory=dict)  # adapter id -> its base LLM's id

    def add(self, kind: Kind, names: Iterator[str] | list[str] | tuple[str, ...], handle: Any) -> None:
        """`handle` answers each of `names` (a model and its aliases, an LLM and its adapters)."""
        self.handles.setdefault(kind, {}).update(dict.fromkeys(names, handle))

    def served(self, kind: str) -> dict[str, Any]:
        """Served id -> its configured handle, for one kind (adapters carry their multiplexed id)."""
        return self._configured().get(kind, {})

    def get(self, kind: str, name: str) -> Any | None:
        return self.served(kind).get(name)

    def streaming(self, kind: str, name: str) -> Any | None:
        """The handle answering `name` with `options(stream=True)`, made once."""
        cache: dict[tuple[str, str], Any] = self.__dict__.setdefault("_streaming", {})
        if (kind, name) not in cache:
            handle = self.get(kind, name)
            if handle is None:
                return None
            cache[(kind, name)] = handle.options(stream=True)
        return cache[(kind, name)]

    def llm(self, name: str, *, stream: bool = False) -> Any:
        """The LLM handle answering `name`, or a 404 naming the LLMs served."""
        handle = self.streaming("llm", name) if stream else self.get("llm", name)
        if handle is None:
            served = sorted(self.served("llm"))
            raise NotFound(f"The model '{name}' does not exist; LLMs served here: {served}", param="model")
        return handle

    def items(self) -> Iterator[tuple[str, str, Any]]:
        """(kind, served id, handle) for every id served."""
        for kind, by_name in self._configured().items():
            for name, handle in by_name.items():
                yield kind, name, handle

    def _configured(self) -> dict[str, dict[str, Any]]:
        # Made in the replica, on first use: at build time the values are Serve Applications, not handles.
        configured = self.__dict__.get("_handles")
        if configured is None:
            configured = {
                kind: {
                    name: handle.options(multiplexed_model_id=name) if name in self.adapters else handle
                    for name, handle in by_name.items()
                }
                for kind, by_name in self.handles.items()
            }
            self.__dict__["_handles"] = configured
        return configured
