"""The YOLOv8 detector (ultralytics), batched across requests.

detector = serve.get_deployment_handle("Detector", app_name="default")
reply = await detector.detect.remote({"model": "tiny-yolov8n", "image": png_bytes, "conf": 0.3})
"""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ray import serve

from deployments.base import ModelDeployment
from deployments.batch_stats import BatchStats
from serve_app.common.gpu_plan import GPUClaim
from serve_app.common.images import ImageLimits, decode_image
from serve_app.config import DetectorConfig
from serve_app.errors import InvalidRequest, parse_request
from serve_app.protocol import Box, Detection, DetectionRequest, DetectionResponse

WEIGHTS = "model.pt"


@dataclass(frozen=True)
class _Options:
    """Per-request NMS settings; images sharing them share one predict() call."""

    conf: float
    iou: float
    max_det: int
    classes: tuple[int, ...] | None


def _probe_job() -> tuple:
    """A blank image with default options: warms the model at start-up, then proves it answers in health checks."""
    from PIL import Image

    return Image.new("RGB", (64, 48)), _Options(0.25, 0.7, 10, None)


def _prepare_ultralytics_offline() -> None:
    # Ultralytics downloads Arial.ttf on first plot even with YOLO_OFFLINE=1 unless a copy is in its
    # config dir; matplotlib ships DejaVuSans, which serves the same purpose.
    import os

    import matplotlib

    target = Path(os.environ["YOLO_CONFIG_DIR"]) / "Ultralytics" / "Arial.ttf"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf", target)


def _class_ids(classes: list[int | str] | None, names: dict[int, str]) -> tuple[int, ...] | None:
    if classes is None:
        return None
    by_label = {label: i for i, label in names.items()}
    ids = []
    for i, value in enumerate(classes):
        if isinstance(value, str) and value.isdigit():  # multipart form fields arrive as strings
            value = int(value)
        class_id = by_label.get(value) if isinstance(value, str) else value
        if class_id is None or class_id not in names:
            raise InvalidRequest(
                f"unknown class {value!r}: use a class id 0-{len(names) - 1} or a label such as '{names[0]}'",
                param=f"classes.{i}",
            )
        ids.append(class_id)
    return tuple(sorted(set(ids)))


@serve.deployment(name="Detector")
class Detector(ModelDeployment):
    kind, library = "detector", "ultralytics"

    def __init__(
        self,
        config: DetectorConfig,
        model_store: Path,
        data_dir: Path,
        limits: ImageLimits,
        gpu: GPUClaim | None = None,
    ):
        super().__init__(
            config.served_name, data_dir, gpu, model_store=model_store, model=config.model, version=config.version
        )
        _prepare_ultralytics_offline()
        from ultralytics import YOLO, settings

        settings.update({"sync": False})
        self._config = config
        self._limits = limits
        self._model = YOLO(str(self.model_path / WEIGHTS), task="detect")  # a local file: never a download
        self._names: dict[int, str] = dict(self._model.names)
        self._stats = BatchStats(self.served_name)
        self._batch.set_max_batch_size(config.batching.max_batch_size)
        self._batch.set_batch_wait_timeout_s(config.batching.batch_wait_timeout_s)
        image, options = _probe_job()
        self._predict([image], options)  # the first call is slow: pay it here
        self._announce_loaded()

    def labels(self) -> dict[int, str]:
        return dict(self._names)

    def stats(self) -> dict:
        return self._stats.snapshot()

    async def detect(self, request: DetectionRequest | dict, decoded: Any = None) -> DetectionResponse:
        """`decoded`: the request's image as a PIL image, from a pipeline that decoded it for its own use
        (crops, embeddings): the replica then does not decode it a second time."""
        request = parse_request(DetectionRequest, request)
        options = _Options(request.conf, request.iou, request.max_det, _class_ids(request.classes, self._names))
        image = decode_image(request.image, self._limits) if decoded is None else decoded
        detections, batch_size = await self._batch((image, options))
        return DetectionResponse(
            model=self.served_name,
            width=image.width,
            height=image.height,
            detections=detections,
            batch_size=batch_size,
        )

    async def check_health(self) -> None:
        await self._batch(_probe_job())

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.01)
    async def _batch(self, jobs: list[tuple]) -> list[tuple[list[Detection], int]]:
        results: list = [None] * len(jobs)
        groups: dict[_Options, list[int]] = {}
        for i, (_, options) in enumerate(jobs):
            groups.setdefault(options, []).append(i)
        for options, indices in groups.items():
            found = await asyncio.to_thread(self._predict, [jobs[i][0] for i in indices], options)
            for i, detections in zip(indices, found, strict=True):
                results[i] = (detections, len(jobs))
        self._stats.record(len(jobs))
        return results

    def _predict(self, images: list, options: _Options) -> list[list[Detection]]:
        results = self._model.predict(
            images,
            conf=options.conf,
            iou=options.iou,
            max_det=options.max_det,
            classes=list(options.classes) if options.classes is not None else None,
            imgsz=self._config.imgsz,
            # Square letterboxing for every batch: a batch of one then pads exactly like a batch of many,
            # so batching never changes the boxes (rect padding depends on the batch's shapes).
            rect=False,
            # ultralytics' `quantize`, not its deprecated `half`, which warns on every call (each
            # health check too, flooding the replica's log and any driver that forwards it).
            quantize=16 if self._config.half and self.device != "cpu" else None,
            device=self.device,
            verbose=False,
        )
        return [self._detections(result) for result in results]

    def _detections(self, result) -> list[Detection]:
        boxes = result.boxes
        out = []
        for (x1, y1, x2, y2), score, cls in zip(
            boxes.xyxy.tolist(), boxes.conf.tolist(), boxes.cls.tolist(), strict=True
        ):
            class_id = int(cls)
            out.append(
                Detection(
                    box=Box(x1=x1, y1=y1, x2=x2, y2=y2),
                    label=self._names[class_id],
                    class_id=class_id,
                    score=score,
                )
            )
        return out
