"""qdrant.url_env: the server URL from the replica's environment wins over the YAML's url (compose, KubeRay)."""

from __future__ import annotations

import pytest

from serve_app.config import QdrantConfig

ENV = "QDRANT_URL_UNDER_TEST"
# A port nothing listens on: the remote client's start-up version check is refused at once, and warns.
UNREACHABLE = "http://127.0.0.1:9"
pytestmark = pytest.mark.filterwarnings("ignore:Failed to obtain server version")


def test_url_env_wins_over_url_when_set():
    config = QdrantConfig(url="http://qdrant:6333", url_env=ENV)
    assert config.server_url({ENV: "http://qdrant.prod.svc:6333"}) == "http://qdrant.prod.svc:6333"


@pytest.mark.parametrize("environ", [{}, {ENV: ""}], ids=["unset", "empty"])
def test_url_is_the_default_when_the_variable_is_unset_or_empty(environ):
    assert QdrantConfig(url="http://qdrant:6333", url_env=ENV).server_url(environ) == "http://qdrant:6333"


def test_no_url_and_no_variable_means_embedded():
    assert QdrantConfig(path="/tmp/q", url_env=ENV).server_url({}) is None
    assert QdrantConfig().server_url({ENV: "http://ignored:6333"}) is None


def test_prod_yaml_reads_the_url_from_qdrant_url():
    from tests.unit.test_config import app_args

    qdrant = QdrantConfig.model_validate(app_args("prod.yaml")["vision"]["qdrant"])
    assert qdrant.url_env == "QDRANT_URL"
    assert qdrant.server_url({}) == "http://qdrant:6333"
    assert qdrant.server_url({"QDRANT_URL": "http://10.0.0.7:6333"}) == "http://10.0.0.7:6333"


def _vector_store(config: QdrantConfig, tmp_path):
    from deployments.vector_store import VectorStore

    # The class Serve wraps, constructed directly: the replica's __init__ without Ray.
    return VectorStore.func_or_class(config, tmp_path, embedders={})


def test_vector_store_replica_connects_to_the_url_from_its_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(ENV, UNREACHABLE)
    store = _vector_store(QdrantConfig(url="http://qdrant:6333", url_env=ENV), tmp_path)
    assert store._where == UNREACHABLE


def test_vector_store_replica_falls_back_to_embedded_path_without_the_variable(monkeypatch, tmp_path):
    monkeypatch.delenv(ENV, raising=False)
    store = _vector_store(QdrantConfig(path=str(tmp_path / "kb"), url_env=ENV), tmp_path)
    assert store._where == str(tmp_path / "kb")
    assert (tmp_path / "kb").is_dir()
