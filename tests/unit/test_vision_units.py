"""Vision config, protocol validation, embedding encoding and the image-RAG helpers (no Ray, no models)."""

from __future__ import annotations

import base64

import numpy as np
import pytest
from pydantic import ValidationError

from deployments.batch_stats import BatchStats
from deployments.embedding_common import check_dimensions, encode_vector, unit_rows
from pipelines.image_rag import build_prompt, crop_boxes, describe_detections, merge_hits
from serve_app.config import ConfigError, ImageRAGConfig, QdrantConfig, VisionConfig, parse_app_config
from serve_app.errors import InvalidRequest
from serve_app.protocol import (
    Box,
    Detection,
    EmbeddingRequest,
    Item,
    ItemCreate,
    SearchHit,
    SearchRequest,
)
from tests.images import scene

LLM = {"served_name": "m", "model": "m", "version": "v1"}


def test_prompt_template_rejects_unknown_fields():
    with pytest.raises(ValidationError, match="unknown fields"):
        ImageRAGConfig(prompt_template="{detections} {weather}")
    assert ImageRAGConfig(prompt_template="Q: {question}").prompt_template == "Q: {question}"


def test_image_rag_needs_its_deployments():
    with pytest.raises(ConfigError, match="vision.image_rag needs|image_rag needs"):
        parse_app_config({"llm": LLM, "vision": {"image_rag": {}}})


def test_qdrant_is_path_or_url():
    with pytest.raises(ValidationError, match="not both"):
        QdrantConfig(path="/tmp/q", url="http://qdrant:6333")


def test_vision_is_optional_and_strict():
    assert parse_app_config({"llm": LLM}).vision is None
    with pytest.raises(ConfigError, match="vision.max_image_pixel"):
        parse_app_config({"llm": LLM, "vision": {"max_image_pixel": 5}})
    assert VisionConfig().max_image_pixels > 0


def test_embedding_request_inputs():
    assert EmbeddingRequest(model="m", input="hi").inputs == ["hi"]
    mixed = EmbeddingRequest.model_validate({"model": "m", "input": ["a", {"image": "AAAA"}]})
    assert mixed.inputs[1].image == "AAAA"
    with pytest.raises(ValidationError, match="empty"):
        EmbeddingRequest(model="m", input=[])


def test_search_and_items_need_exactly_one_query():
    with pytest.raises(ValidationError, match="exactly one"):
        SearchRequest(query="a", vector=[0.1])
    with pytest.raises(ValidationError, match="exactly one"):
        SearchRequest()
    with pytest.raises(ValidationError, match="needs"):
        ItemCreate(metadata={"a": 1})


def test_base64_encoding_round_trips_as_the_openai_sdk_decodes_it():
    vector = np.array([0.5, -1.25, 3.0], dtype=np.float32)
    decoded = np.frombuffer(base64.b64decode(encode_vector(vector, "base64")), dtype="<f4")
    assert decoded.tolist() == vector.tolist() == encode_vector(vector, "float")


def test_dimensions_only_native():
    check_dimensions(EmbeddingRequest(model="m", input="a", dimensions=32), 32)
    with pytest.raises(InvalidRequest) as info:
        check_dimensions(EmbeddingRequest(model="m", input="a", dimensions=16), 32)
    assert info.value.param == "dimensions"


def test_unit_rows():
    rows = unit_rows(np.array([[3.0, 4.0], [0.0, 0.0]]))
    assert rows[0].tolist() == [0.6, 0.8] and rows[1].tolist() == [0.0, 0.0]


def test_batch_stats_histogram():
    stats = BatchStats("m")
    for size in (1, 4, 4):
        stats.record(size)
    assert stats.snapshot() == {"batches": 3, "inputs": 9, "max_batch_size": 4, "batch_sizes": {"1": 1, "4": 2}}


async def test_batch_stats_run_pairs_each_output_with_its_batch_size_and_records_the_pass():
    stats = BatchStats("m")
    assert await stats.run(lambda texts: [t.upper() for t in texts], ["a", "b", "c"]) == [("A", 3), ("B", 3), ("C", 3)]
    assert stats.snapshot()["batch_sizes"] == {"3": 1}


def _detection(label: str, x1: float, x2: float) -> Detection:
    return Detection(box=Box(x1=x1, y1=0, x2=x2, y2=10), label=label, class_id=0, score=0.5)


def _hit(item_id: str, score: float) -> SearchHit:
    return SearchHit(item=Item(id=item_id, kind="text", text=item_id, created=0), score=score)


def test_merge_hits_keeps_best_score_per_item_in_order():
    merged = merge_hits([("image", [_hit("a", 0.9), _hit("b", 0.2)]), ("crop:0", [_hit("b", 0.95), _hit("c", 0.1)])], 2)
    assert [(r.item.id, r.source, r.score) for r in merged] == [("b", "crop:0", 0.95), ("a", "image", 0.9)]


def test_crops_follow_boxes_and_skip_empty_ones():
    crops = crop_boxes(scene(size=(100, 50)), [_detection("car", 10, 40), _detection("car", 20, 20)])
    assert crops[0].size == (30, 10) and crops[1] is None


def test_prompt_mentions_detections_retrieved_and_question():
    prompt = build_prompt(
        "D={detections} R={retrieved} Q={question}",
        "what?",
        [_detection("dog", 0, 5), _detection("dog", 1, 6)],
        merge_hits([("image", [_hit("a red square", 0.8)])], 3),
    )
    assert "2 dog" in prompt and "a red square" in prompt and prompt.endswith("Q=what?")
    assert describe_detections([]) == "no objects"
