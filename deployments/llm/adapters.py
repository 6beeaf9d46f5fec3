"""An LLM's LoRA adapters: checked at start, loaded on first use, kept in an LRU per replica.

Every declared adapter is verified when the replica starts (manifest and sha256, rank within the
engine's maximum, trained on this base), so a bad one fails the deploy with its name and reason.
Loading waits for the first request that names it, through `serve.multiplexed`: Serve keeps at
most `max_adapters_per_replica` loaded (LRU) and routes a request to a replica that already holds
its adapter. An evicted adapter stays in the engine until the generations using it have ended.
A load that fails later (the files changed on disk) answers 503 for that adapter alone.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path
from typing import Any

from ray import serve

from deployments.llm.engines.base import LORA
from serve_app.common.model_store import ModelStoreError, verify
from serve_app.config import AdapterConfig, LLMConfig
from serve_app.errors import ServiceUnavailable


class AdapterRefused(RuntimeError):
    """A declared adapter cannot be served: the deploy fails with this message."""


def check_adapter(adapter: AdapterConfig, llm: LLMConfig, store: Path) -> Path:
    """The adapter's directory, once it verifies and fits this LLM; else AdapterRefused saying why."""
    label = f"llms[{llm.served_name}].adapters[{adapter.name}]"
    try:
        path = verify(store, adapter.model, adapter.version).path
    except ModelStoreError as exc:
        raise AdapterRefused(f"{label}: {exc}") from None
    try:
        peft_config = json.loads((path / "adapter_config.json").read_text())
    except (OSError, ValueError) as exc:
        raise AdapterRefused(f"{label}: no readable adapter_config.json in {path} ({exc})") from None
    ranks = [peft_config.get("r", 0), *(peft_config.get("rank_pattern") or {}).values()]
    if max(ranks) > llm.max_lora_rank:
        raise AdapterRefused(
            f"{label}: rank {max(ranks)} is above this LLM's max_lora_rank {llm.max_lora_rank}; raise max_lora_rank"
        )
    base = str(peft_config.get("base_model_name_or_path") or "")
    if base not in (llm.model, f"{llm.model}/{llm.version}") and not base.endswith(f"/{llm.model}"):
        raise AdapterRefused(
            f"{label}: trained on base {base!r}, which is not this LLM's model {llm.model!r}; "
            "declare the adapter under the LLM it was trained on"
        )
    return path


class Adapters:
    def __init__(self, engine: Any, llm: LLMConfig, store: Path):
        self._engine = engine
        self._llm = llm
        self._store = store
        self._declared = {a.name: a for a in llm.adapters}
        if llm.adapters and LORA not in engine.capabilities:
            raise RuntimeError(
                f"{llm.served_name}: the {engine.name} engine serves no LoRA adapters; remove `adapters:`"
            )
        for adapter in llm.adapters:
            check_adapter(adapter, llm, store)
        self._users: Counter[str] = Counter()  # generations plus the LRU's own hold, per adapter

        # A plain function, not the bound method: Serve keeps its LRU as an attribute of what it wraps.
        async def load(name: str) -> _Resident:
            return await self._load(name)

        self._resident = serve.multiplexed(max_num_models_per_replica=llm.max_adapters_per_replica)(load)

    def __contains__(self, name: str) -> bool:
        return name in self._declared

    def version(self, name: str) -> str:
        return self._declared[name].version

    async def load(self, name: str) -> None:
        """Load `name` if it is not resident (an LRU hit otherwise): a bad adapter fails here, before any output."""
        await self._resident(name)

    async def acquire(self, name: str) -> None:
        """Load `name` if needed and hold it for one generation (until `release`)."""
        await self._resident(name)
        self.hold(name)

    def hold(self, name: str) -> None:
        self._users[name] += 1

    async def release(self, name: str) -> None:
        self._users[name] -= 1
        if self._users[name] <= 0:
            del self._users[name]
            await self._engine.unload_adapter(name)

    async def _load(self, name: str) -> _Resident:
        try:
            # Checked again: the files may have changed since the replica started.
            path = await asyncio.to_thread(check_adapter, self._declared[name], self._llm, self._store)
            await self._engine.load_adapter(name, path)
        except Exception as exc:
            raise ServiceUnavailable(
                f"The adapter '{name}' could not be loaded: {exc}", code="adapter_unavailable"
            ) from None
        self.hold(name)
        return _Resident(self, name, asyncio.get_running_loop())


class _Resident:
    """The LRU's hold on one loaded adapter; Serve calls __del__ when it evicts the adapter."""

    def __init__(self, adapters: Adapters, name: str, loop: asyncio.AbstractEventLoop):
        self._adapters = adapters
        self._name = name
        self._loop = loop
        self._released = False

    def __del__(self) -> None:
        # Serve calls this from a worker thread, and Python may call it again at collection: once only.
        if self._released:
            return
        self._released = True
        try:
            self._loop.call_soon_threadsafe(self._loop.create_task, self._adapters.release(self._name))
        except RuntimeError:
            pass  # the loop is closed: the replica is shutting down, the engine goes with it
