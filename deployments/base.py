"""What every model deployment does before loading its model, in the one order that works, and its card.

    @serve.deployment(name="Detector")
    class Detector(ModelDeployment):
        kind, library = "detector", "ultralytics"

        def __init__(self, config, model_store, data_dir, limits, gpu=None):
            super().__init__(config.served_name, data_dir, gpu,
                             model_store=model_store, model=config.model, version=config.version)
            from ultralytics import YOLO  # only now, with the offline runtime in place
            self._model = YOLO(str(self.model_path / "model.pt"))
            self._announce_loaded()

The order matters:
1. the offline runtime, because torch, transformers, ultralytics and whisperx read its
   variables once, at import, and the steps below import torch;
2. the GPU claim, before anything touches the card, so a replica the plan does not fit
   refuses to start instead of starving its neighbours;
3. the model store entry, so a truncated or edited download fails here with the file
   named rather than deep inside a loader;
4. the device.
Subclasses import their heavy libraries only after `super().__init__`, and never at module
level: the ingress and the unit tests import these modules without paying for them. They end
their `__init__` with `self._announce_loaded()`: the log line, `mms_model_info` and, on a GPU,
the memory gauges (deployments/gpu_memory.py).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, ClassVar, Literal

from deployments.gpu_budget import claim_gpu
from deployments.gpu_memory import start_gpu_memory_reporting
from serve_app.common import metrics
from serve_app.common.gpu_plan import GPUClaim
from serve_app.common.model_store import ModelRef, verify
from serve_app.common.runtime import configure_offline_runtime
from serve_app.protocol import ModelCard

logger = logging.getLogger("ray.serve")


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


class ModelDeployment:
    """A model deployment's start-up preamble and its `card()`; subclasses keep only their model's code.

    `kind` is the card's kind; `library` names the engine in the card as `<library>-<device>`.
    A model comes either from the store (`model_store`, `model`, `version`: verified, then
    `self.ref` is the entry) or from a directory outside it (`model_path`, e.g. a packaged model).
    """

    kind: ClassVar[str]
    library: ClassVar[str]

    def __init__(
        self,
        served_name: str,
        data_dir: Path,
        gpu: GPUClaim | None,
        *,
        model_store: Path | None = None,
        model: str | None = None,
        version: str | None = None,
        model_path: Path | None = None,
        device: Literal["auto", "cpu", "cuda"] = "auto",
        cap_torch: bool = True,
    ):
        if (model_store is None) == (model_path is None):
            raise TypeError(f"{type(self).__name__}: pass either model_store/model/version or model_path")
        configure_offline_runtime(data_dir)
        # cap_torch=False where the memory is held by another process (vLLM's engine core), not this one's torch.
        self.gpu_share = claim_gpu(gpu, cap_torch=cap_torch)
        self._gpu_claim = gpu
        self.served_name = served_name
        self._model_store = model_store
        self.ref: ModelRef | None = None
        if model_store is not None:
            assert model is not None and version is not None, "a model from the store is named with its version"
            self.ref = self._verify(model, version)
            self.model_path = self.ref.path
            self.version = f"{self.ref.name}/{self.ref.version}"
        else:
            assert model_path is not None, "a model is given by the store or by its path"
            self.model_path = model_path
            self.version = self.model_path.name
        self.device = device if device != "auto" else ("cuda" if cuda_available() else "cpu")

    def _verify(self, model: str, version: str) -> ModelRef:
        """A further entry of this deployment's store (an aligner, a diarizer), checked like its model."""
        if self._model_store is None:
            raise RuntimeError(f"{self.served_name} has no model store to verify {model}/{version} in")
        return verify(self._model_store, model, version)

    @property
    def engine_name(self) -> str:
        return f"{self.library}-{self.device}"

    def card(self, **extra: Any) -> ModelCard:
        return ModelCard(id=self.served_name, kind=self.kind, engine=self.engine_name, version=self.version, **extra)

    def _announce_loaded(self, details: str = "") -> None:
        """The model is loaded: say so in the log and in `mms_model_info`, and start the GPU memory gauges."""
        info = {
            "model": self.served_name,
            "kind": self.kind,
            "version": self.version,
            "engine": self.engine_name,
            "device": self.device,
        }
        metrics.MODEL_INFO.set(1, info)
        start_gpu_memory_reporting(self._gpu_claim)
        logger.info(
            "%s %s (%s) on %s%s",
            type(self).__name__,
            self.served_name,
            self.version,
            self.engine_name,
            f": {details}" if details else "",
        )
