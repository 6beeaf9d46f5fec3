"""The browser console over HTTP, without Ray: its files at /ui/ (open, with the CSP), off by config,
and its two JSON routes: deployments' health and the Operations page's points from real exposition text."""

from __future__ import annotations

import socket
import time

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

from serve_app.common.metrics import LATENCY_BUCKETS, TTFT_BUCKETS
from serve_app.http.console import CSP, FILES
from serve_app.http.ops_metrics import quantile
from tests.http.support import ASR, DETECTOR, LLM, assert_envelope

KEY = "sk-console-test-key"
ON = {"console": {"enabled": True}}


@pytest.fixture()
def console(serve_ingress, backends):
    return serve_ingress(**backends, **ON)


def test_the_console_is_served_with_its_csp_and_no_inline_anything(console):
    page = console.get("/ui/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert csp == CSP and "unsafe-inline" not in csp and "script-src 'self'" in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    assert "<script" in page.text and "<script>" not in page.text and "style=" not in page.text
    module = console.get("/ui/app.js")
    assert module.status_code == 200 and "javascript" in module.headers["content-type"]
    assert console.get("/ui/pages/chat.js").status_code == 200
    assert console.get("/ui", follow_redirects=False).headers["location"] == "/ui/"


def test_the_files_ship_small_and_write_no_html_from_strings():
    files = [p for p in FILES.rglob("*") if p.suffix in (".js", ".css")]
    assert sum(p.stat().st_size for p in files) <= 100 * 1024
    for path in files:
        text = path.read_text()
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
            assert sink not in text, f"{path.name} uses {sink}"


def test_the_console_is_off_unless_configured(client):
    assert client.get("/ui/").status_code == 404
    reply = client.get("/console/metrics")
    assert reply.status_code == 404
    assert_envelope(reply, 404, code="not_found")


def test_the_files_are_open_but_the_json_routes_need_a_key(serve_ingress, backends):
    client = serve_ingress(**backends, api_key=KEY, **ON)
    assert client.get("/ui/").status_code == 200
    assert client.get("/ui/api.js").status_code == 200
    assert_envelope(client.get("/console/deployments"), 401, code="invalid_api_key")
    reply = client.get("/console/deployments", headers={"authorization": f"Bearer {KEY}"})
    assert reply.status_code == 200


def test_deployments_name_each_model_with_its_status_and_replicas(serve_ingress, backends):
    client = serve_ingress(**backends, unhealthy={"ASR": "UPDATING"}, **ON)
    rows = {row["id"]: row for row in client.get("/console/deployments").json()["data"]}
    assert rows[LLM] == {"id": LLM, "kind": "llm", "deployment": "LLM", "status": "HEALTHY", "replicas": 1}
    assert rows[ASR]["status"] == rows["whisper-1"]["status"] == "UPDATING"
    assert rows[DETECTOR]["deployment"] == "Detector"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def exporter():
    """A real Prometheus exporter serving the app's metric names, as Ray's agent exports them."""
    registry = CollectorRegistry()
    requests = Counter(
        "ray_mms_http_requests", "", ["route", "model", "status", "error_type", "replica"], registry=registry
    )
    latency = Histogram(
        "ray_mms_http_request_duration_seconds",
        "",
        ["route", "model", "replica"],
        buckets=LATENCY_BUCKETS,
        registry=registry,
    )
    ttft = Histogram(
        "ray_mms_llm_time_to_first_token_seconds", "", ["model", "stream"], buckets=TTFT_BUCKETS, registry=registry
    )
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    yield f"http://127.0.0.1:{port}/metrics", requests, latency, ttft
    server.shutdown()
    thread.join(5)


def test_metrics_are_rates_ratios_and_quantiles_between_two_scrapes(serve_ingress, backends, exporter):
    url, requests, latency, ttft = exporter
    client = serve_ingress(**backends, console={"enabled": True, "metrics_urls": [url], "min_interval_s": 0.5})
    clock = [1000.0]
    client.replica._ops._clock = lambda: clock[0]
    first = client.get("/console/metrics").json()
    assert first["points"] == [] and first["sources"] == 1
    route = "/v1/chat/completions"
    for replica, (ok, failed) in {"a": (6, 1), "b": (2, 1)}.items():  # summed over replicas
        requests.labels(route, LLM, "200", "none", replica).inc(ok)
        requests.labels(route, LLM, "503", "server_error", replica).inc(failed)
        requests.labels(route, LLM, "400", "invalid_request_error", replica).inc(2)  # not a server error
    requests.labels("/console/metrics", "none", "200", "none", "a").inc(50)  # the console's own polling: ignored
    for seconds in (0.02,) * 8 + (0.3,) * 4:
        latency.labels(route, LLM, "a").observe(seconds)
    for seconds in (0.04,) * 10:
        ttft.labels(LLM, "true").observe(seconds)
    clock[0] += 4.0
    # This poll starts the due scrape without waiting on it; a later one shows its point.
    assert client.get("/console/metrics").json()["points"] == []
    deadline = time.monotonic() + 10
    while not (doc := client.get("/console/metrics").json())["points"]:
        assert time.monotonic() < deadline, "the scrape started by a poll never landed"
        time.sleep(0.05)
    assert doc["object"] == "console.metrics" and len(doc["points"]) == 1
    point = doc["points"][0]
    assert point["t"] == 1004.0 and set(point["models"]) == {LLM}
    figures = point["models"][LLM]
    assert figures["rps"] == pytest.approx(14 / 4)
    assert figures["error_ratio"] == pytest.approx(2 / 14)
    assert figures["p50_s"] == pytest.approx(0.01 + 0.015 * (6 - 0) / 8)  # in the (0.01, 0.025] bucket
    assert 0.25 < figures["p99_s"] <= 0.5
    assert 0.025 < figures["ttft_p50_s"] <= 0.05
    # Within min_interval_s a poll reuses the last scrape: no new point.
    clock[0] += 0.1
    assert len(client.get("/console/metrics").json()["points"]) == 1


def test_a_dead_exporter_costs_a_point_not_an_error(serve_ingress, backends):
    client = serve_ingress(**backends, console={"enabled": True, "metrics_urls": [f"http://127.0.0.1:{free_port()}/m"]})
    doc = client.get("/console/metrics").json()
    assert (doc["sources"], doc["points"]) == (0, [])


def test_quantile_interpolates_like_histogram_quantile():
    buckets = {0.1: 0.0, 0.2: 10.0, 0.4: 20.0, float("inf"): 20.0}
    assert quantile(0.5, buckets) == pytest.approx(0.2)
    assert quantile(0.75, buckets) == pytest.approx(0.3)
    assert quantile(0.5, {0.1: 0.0, float("inf"): 0.0}) is None
    assert quantile(0.99, {0.1: 0.0, float("inf"): 5.0}) == pytest.approx(0.1)


def test_every_console_file_ships_as_package_data():
    import tomllib
    from pathlib import PurePosixPath

    pyproject = tomllib.loads((FILES.parents[2] / "pyproject.toml").read_text())
    globs = pyproject["tool"]["setuptools"]["package-data"]["serve_app.http"]
    for path in FILES.rglob("*"):
        if path.is_file():
            name = PurePosixPath(path.relative_to(FILES.parent).as_posix())
            assert any(name.match(g) for g in globs), f"{name} is not in pyproject's package-data"
