"""Decode untrusted image bytes or base64 with PIL, with clear 400s and 413s.

Only PIL is imported (no torch), so the ingress, pipelines and unit tests stay light.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from serve_app.errors import InvalidRequest, PayloadTooLarge


def _pillow_open():
    """Pillow's own Image.open.

    Ultralytics replaces PIL.Image.open on import with a wrapper that, on an unidentified file, tries to
    pip-install a HEIF plugin (a 500 offline, a network call otherwise): never on an upload. Its wrapper
    keeps the original as `_image_open`.
    """
    opener = Image.open
    if getattr(opener, "__module__", "").startswith("ultralytics"):
        from ultralytics.utils import patches

        opener = patches._image_open
    return opener


_PILLOW_OPEN = _pillow_open()
_DATA_URL = re.compile(r"^data:image/[\w.+-]+;base64,", re.IGNORECASE)


@dataclass(frozen=True)
class ImageLimits:
    max_bytes: int = 20 << 20
    max_pixels: int = 40_000_000


def image_bytes(data: str | bytes, limits: ImageLimits, param: str = "image") -> bytes:
    """Raw encoded bytes from raw bytes, base64 or a data URL; 413 over the byte limit."""
    if isinstance(data, str):
        text = _DATA_URL.sub("", data.strip(), count=1)
        # base64 is 4/3 the size: refuse before decoding something far over the limit.
        if len(text) * 3 // 4 > limits.max_bytes + 3:
            raise PayloadTooLarge(f"'{param}' is over the limit of {limits.max_bytes} bytes.", param=param)
        try:
            data = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidRequest(
                f"'{param}' is not valid base64 (or a data:image/...;base64 URL).", param=param
            ) from None
    if not data:
        raise InvalidRequest(f"'{param}' is empty.", param=param)
    if len(data) > limits.max_bytes:
        raise PayloadTooLarge(f"'{param}' is {len(data)} bytes; the limit is {limits.max_bytes} bytes.", param=param)
    return data


def decode_image(data: str | bytes, limits: ImageLimits, param: str = "image") -> Image.Image:
    """An RGB PIL image, fully loaded; 400 for anything that is not a complete image."""
    raw = image_bytes(data, limits, param)
    try:
        with _PILLOW_OPEN(io.BytesIO(raw)) as probe:
            # The header gives the size before any pixel is decoded: refuse decompression bombs here.
            width, height = probe.size
            if width * height > limits.max_pixels:
                raise PayloadTooLarge(
                    f"'{param}' is {width}x{height} = {width * height} pixels; the limit is {limits.max_pixels}.",
                    param=param,
                )
            probe.verify()  # structure and checksums (PNG CRCs) without decoding
        # verify() leaves the file unusable: reopen and decode every pixel, which catches truncation.
        with _PILLOW_OPEN(io.BytesIO(raw)) as image:
            image.load()
            return image.convert("RGB")
    except PayloadTooLarge:
        raise
    except UnidentifiedImageError:
        raise InvalidRequest(f"'{param}' is not an image PIL can read (PNG, JPEG, WebP, ...).", param=param) from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise InvalidRequest(f"'{param}' is a corrupt or truncated image: {exc}", param=param) from None
