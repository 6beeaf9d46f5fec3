"""Synthetic test images, drawn with PIL at test time (shapes and text; no files in the repo)."""

from __future__ import annotations

import base64
import io

from PIL import Image, ImageDraw

SHAPES = ("square", "circle", "triangle")
COLORS = {"red": (220, 30, 30), "green": (30, 180, 60), "blue": (40, 70, 220)}


def scene(shape: str = "square", color: str = "red", size: tuple[int, int] = (320, 240), text: str = "") -> Image.Image:
    image = Image.new("RGB", size, (245, 245, 240))
    draw = ImageDraw.Draw(image)
    w, h = size
    box = (w // 4, h // 4, 3 * w // 4, 3 * h // 4)
    fill = COLORS[color]
    if shape == "square":
        draw.rectangle(box, fill=fill)
    elif shape == "circle":
        draw.ellipse(box, fill=fill)
    else:
        draw.polygon([(w // 2, h // 4), (w // 4, 3 * h // 4), (3 * w // 4, 3 * h // 4)], fill=fill)
    if text:
        draw.text((8, 8), text, fill=(0, 0, 0))
    return image


def encode(image: Image.Image, fmt: str = "PNG") -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def png(shape: str = "square", color: str = "red", size: tuple[int, int] = (320, 240), text: str = "") -> bytes:
    return encode(scene(shape, color, size, text))


def noisy(size: tuple[int, int] = (200, 150), fmt: str = "PNG") -> bytes:
    # Noise does not compress: truncating it cuts pixel data, not padding.
    return encode(Image.effect_noise(size, 64).convert("RGB"), fmt)
