"""Bad vision input gets an OpenAI error envelope, and the next valid request still succeeds."""

from __future__ import annotations

import httpx
import pytest

from tests.envelopes import assert_envelope
from tests.images import b64, noisy, png

CLIP, YOLO = "tiny-clip", "tiny-yolov8n"


@pytest.fixture()
def http(local_app):
    with httpx.Client(base_url=local_app, timeout=120) as client:
        yield client
        # Whatever the bad request did, every vision deployment still serves.
        detected = client.post("/v1/detections", json={"model": YOLO, "image": b64(png()), "max_det": 2})
        assert detected.status_code == 200, detected.text
        embedded = client.post("/v1/embeddings", json={"model": CLIP, "input": ["ok", {"image": b64(png())}]})
        assert embedded.status_code == 200, embedded.text
        assert client.get("/v1/collections").status_code == 200


def _upload(http, data: bytes, route: str = "/v1/detections") -> httpx.Response:
    return http.post(route, files={"image": ("x.png", data, "image/png")}, data={"model": YOLO})


def test_non_image_bytes(http):
    assert_envelope(_upload(http, b"GIF? no: just some text"), 400, param="image")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_image(http, fmt):
    raw = noisy((200, 150), fmt)
    assert_envelope(_upload(http, raw[: len(raw) // 2]), 400, param="image")


def test_image_over_the_pixel_limit_is_413(http):
    # 5000x4000 = 20 MP > local.yaml's 16 MP; a flat PNG this size is only a few kB on the wire.
    assert_envelope(_upload(http, png(size=(5000, 4000))), 413, code="payload_too_large")


def test_image_over_the_byte_limit_is_413(http):
    too_big = png() + b"\0" * (8 * 1024 * 1024)  # over local.yaml's 8 MiB, under the 25 MiB upload limit
    assert_envelope(_upload(http, too_big), 413, code="payload_too_large")


def test_base64_that_does_not_decode(http):
    reply = http.post("/v1/embeddings", json={"model": CLIP, "input": [{"image": "not*base64"}]})
    assert_envelope(reply, 400, param="input.0.image")


def test_empty_input_list(http):
    assert_envelope(http.post("/v1/embeddings", json={"model": CLIP, "input": []}), 400, param="input")


def test_unsupported_dimensions(http):
    reply = http.post("/v1/embeddings", json={"model": CLIP, "input": "x", "dimensions": 8})
    assert_envelope(reply, 400, param="dimensions")


def test_image_to_a_text_only_model(http):
    reply = http.post("/v1/embeddings", json={"model": "all-minilm-l6-v2", "input": [{"image": b64(png())}]})
    assert_envelope(reply, 400, param="input.0")


def test_unknown_embedding_model(http):
    assert_envelope(http.post("/v1/embeddings", json={"model": "nope", "input": "x"}), 404, param="model")


def test_unknown_collection(http):
    reply = http.post("/v1/collections/no-such-collection/search", json={"query": "x"})
    assert_envelope(reply, 404, code="collection_not_found")
    assert_envelope(http.get("/v1/collections/no-such-collection/items"), 404, code="collection_not_found")


def test_image_rag_without_a_collection(http):
    # local.yaml configures no default_collection, so the request must name one.
    reply = http.post("/v1/pipelines/image-rag", json={"image": b64(png())})
    assert_envelope(reply, 400, param="collection")


def test_item_with_the_wrong_dimension(http):
    name = "bad-input-dims"
    http.post("/v1/collections", json={"name": name, "model": CLIP})
    reply = http.post(f"/v1/collections/{name}/items", json={"items": [{"vector": [0.5] * 7}]})
    assert_envelope(reply, 400, param="items.0.vector")
    http.delete(f"/v1/collections/{name}")


def test_bad_detection_options(http):
    reply = http.post("/v1/detections", json={"model": YOLO, "image": b64(png()), "classes": ["unicorn"]})
    assert_envelope(reply, 400, param="classes.0")
    assert_envelope(
        http.post("/v1/detections", json={"model": YOLO, "image": b64(png()), "conf": 2}), 400, param="conf"
    )


def test_wrong_content_type_for_an_upload_route(http):
    reply = http.post("/v1/detections", content=b"image=1", headers={"content-type": "text/plain"})
    assert_envelope(reply, 415)


def test_multipart_without_an_image_file(http):
    assert_envelope(http.post("/v1/detections", files={"other": ("a", b"x")}, data={"model": YOLO}), 400, param="image")
