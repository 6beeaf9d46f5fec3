"""LoRA adapters on the CPU engine, through peft: loaded by name, mixed per row in one forward.

peft wraps the base model once the first adapter loads; each forward then names the adapter of
every row (`adapter_names`, "__base__" for the base model), so requests for the base and for
several adapters share the model without swapping weights. Loading and deleting adapters rewrites
the model's modules, and peft's per-forward hooks are installed on shared modules, so every
forward and every load or unload holds one lock while the LLM declares adapters.
"""

from __future__ import annotations

import threading
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

BASE = "__base__"  # peft's name for "no adapter" in a mixed batch


class PeftAdapters:
    def __init__(self, model: Any, enabled: bool):
        self.base = model
        self._peft: Any = None
        self._lock: AbstractContextManager = threading.Lock() if enabled else nullcontext()
        if enabled:
            import peft  # noqa: F401  (at start: importing it would cost the first adapter's request ~0.6 s)

    @property
    def lock(self) -> AbstractContextManager:
        return self._lock

    @property
    def model(self) -> Any:
        """What a forward runs: the peft wrapper once an adapter is loaded, else the base model."""
        return self._peft if self._peft is not None else self.base

    def forward_kwargs(self, adapters: list[str | None]) -> dict[str, Any]:
        if self._peft is None:
            return {}
        return {"adapter_names": [a or BASE for a in adapters]}

    def load(self, name: str, path: Path) -> None:
        from peft import PeftModel

        with self._lock:
            if self._peft is None:
                self._peft = PeftModel.from_pretrained(self.base, str(path), adapter_name=name).eval()
            elif name not in self._peft.peft_config:
                self._peft.load_adapter(str(path), adapter_name=name)

    def unload(self, name: str) -> None:
        with self._lock:
            if self._peft is None or name not in self._peft.peft_config:
                return
            if len(self._peft.peft_config) == 1:
                # peft cannot run with zero adapters: take the LoRA layers out and serve the bare base.
                self.base = self._peft.unload()
                self._peft = None
            else:
                self._peft.delete_adapter(name)

    @property
    def loaded(self) -> list[str]:
        return sorted(self._peft.peft_config) if self._peft is not None else []
