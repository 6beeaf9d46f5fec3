"""Tiny YOLOv8n and OpenCLIP checkpoints: the real architectures, random weights, fixed seed."""

from __future__ import annotations

import json
from pathlib import Path

from serve_app.tools.tiny_models.offline import force_offline_defaults

YOLO_WEIGHTS = "model.pt"
# A random YOLOv8 head scores every class near zero: its features collapse and its class biases start
# around -10. Raising the bias of a few COCO classes (person, car, dog) to a positive logit makes them
# score about 0.62 everywhere, so NMS keeps boxes above the default conf and `classes` can filter them.
YOLO_BIASED_CLASSES = (0, 2, 16)
YOLO_CLASS_BIAS = 0.5

TINY_CLIP_NAME = "tiny-clip"
TINY_CLIP_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


def build_tiny_yolov8n(out_dir: Path, seed: int = 0) -> None:
    """YOLOv8n from its yaml, COCO class names, class biases raised so it emits boxes."""
    force_offline_defaults()
    import torch
    import ultralytics
    import yaml
    from ultralytics import YOLO

    coco = yaml.safe_load((Path(ultralytics.__file__).parent / "cfg/datasets/coco.yaml").read_text())["names"]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = YOLO("yolov8n.yaml", task="detect")  # architecture from the packaged yaml; no weights fetched
    head = model.model.model[-1]
    with torch.no_grad():
        for branch in head.cv3:
            branch[-1].bias[list(YOLO_BIASED_CLASSES)] = YOLO_CLASS_BIAS
    model.model.names = dict(coco)
    model.save(Path(out_dir) / YOLO_WEIGHTS)


def build_tiny_clip(out_dir: Path, seed: int = 0) -> None:
    """An OpenCLIP ViT (64 px, 2 layers, 32-d embeddings) in the `local-dir:` layout open_clip loads."""
    force_offline_defaults()
    import torch
    from open_clip.push_to_hf_hub import save_config_for_hf
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = _create()
    save_config_for_hf(model, out_dir / "open_clip_config.json", model_config=TINY_CLIP_CONFIG)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, out_dir / "open_clip_model.safetensors")


def _create():
    import tempfile

    import open_clip

    if TINY_CLIP_NAME not in open_clip.list_models():
        with tempfile.TemporaryDirectory() as tmp:
            config = Path(tmp) / f"{TINY_CLIP_NAME}.json"
            config.write_text(json.dumps(TINY_CLIP_CONFIG))
            open_clip.add_model_config(config)
    return open_clip.create_model(TINY_CLIP_NAME, pretrained=None)
