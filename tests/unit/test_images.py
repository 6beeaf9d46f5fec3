"""Image decoding: every way an upload can be wrong maps to a clear 400 or 413."""

from __future__ import annotations

import pytest

from serve_app.common.images import ImageLimits, decode_image, image_bytes
from serve_app.errors import InvalidRequest, PayloadTooLarge
from tests.images import b64, noisy, png

LIMITS = ImageLimits(max_bytes=1 << 20, max_pixels=1_000_000)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_decodes_raw_base64_and_data_urls(fmt):
    raw = noisy((64, 48), fmt)
    for data in (raw, b64(raw), f"data:image/{fmt.lower()};base64,{b64(raw)}"):
        image = decode_image(data, LIMITS)
        assert image.size == (64, 48) and image.mode == "RGB"


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_image_is_400(fmt):
    raw = noisy((200, 150), fmt)
    with pytest.raises(InvalidRequest, match="truncated|corrupt"):
        decode_image(raw[: len(raw) // 2], LIMITS)


def test_non_image_bytes_are_400():
    with pytest.raises(InvalidRequest, match="not an image"):
        decode_image(b"%PDF-1.7 definitely not an image", LIMITS)


def test_bad_base64_is_400_with_param():
    with pytest.raises(InvalidRequest) as info:
        decode_image("this is not base64!", LIMITS, param="input.0.image")
    assert info.value.param == "input.0.image"


def test_empty_is_400():
    with pytest.raises(InvalidRequest, match="empty"):
        decode_image(b"", LIMITS)


def test_over_byte_limit_is_413_raw_and_base64():
    big = b"\x89PNG" + b"\0" * (LIMITS.max_bytes + 1)
    with pytest.raises(PayloadTooLarge):
        image_bytes(big, LIMITS)
    with pytest.raises(PayloadTooLarge):
        image_bytes(b64(big), LIMITS)


def test_over_pixel_limit_is_413_before_decoding():
    with pytest.raises(PayloadTooLarge, match="pixels"):
        decode_image(png(size=(1100, 1000)), LIMITS)


def test_non_image_never_reaches_ultralytics_plugin_installer():
    import importlib

    import ultralytics.utils.patches  # noqa: F401  (replaces PIL.Image.open on import)

    from serve_app.common import images

    # Imported after ultralytics (as in a replica that loaded it first), the module still uses Pillow's opener.
    reloaded = importlib.reload(images)
    with pytest.raises(reloaded.InvalidRequest, match="not an image"):
        reloaded.decode_image(b"just text, no image", LIMITS)
