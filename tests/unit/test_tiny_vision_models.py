"""The tiny YOLOv8n and OpenCLIP checkpoints load through the libraries' normal public loaders."""

from __future__ import annotations

import pytest

from serve_app.common.model_store import verify
from serve_app.common.runtime import configure_offline_runtime
from tests import serve_harness
from tests.images import scene

STORE = serve_harness.REPO / "models"


@pytest.fixture(scope="module", autouse=True)
def offline(tiny_models):
    configure_offline_runtime(serve_harness.REPO / "data")


def test_tiny_yolo_loads_with_coco_names_and_sees_boxes_inside_the_image():
    from ultralytics import YOLO

    ref = verify(STORE, "tiny-yolov8n", "v1")
    model = YOLO(str(ref.path / "model.pt"), task="detect")
    assert model.names[0] == "person" and len(model.names) == 80
    (result,) = model.predict(scene(size=(300, 200)), imgsz=320, conf=0.25, max_det=20, verbose=False)
    boxes = result.boxes.xyxy.tolist()
    assert 0 < len(boxes) <= 20
    for x1, y1, x2, y2 in boxes:
        assert 0 <= x1 <= x2 <= 300 and 0 <= y1 <= y2 <= 200


def test_tiny_clip_loads_from_its_local_dir_and_embeds_text_and_images():
    import open_clip
    import torch

    ref = verify(STORE, "tiny-clip", "v1")
    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{ref.path}")
    tokenizer = open_clip.get_tokenizer(f"local-dir:{ref.path}")
    with torch.inference_mode():
        text = model.encode_text(tokenizer(["a red square"]))
        image = model.encode_image(preprocess(scene()).unsqueeze(0))
    assert text.shape == image.shape == (1, 32)
