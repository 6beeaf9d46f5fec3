"""deploy/grafana and deploy/prometheus: generated from serve_app/tools/observability/, valid, and reading real series.

promtool (Debian/Ubuntu package `prometheus`) validates the configs and rules and runs the rule unit tests
in deploy/prometheus/tests/; those tests are skipped, saying so, where it is not installed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from importlib import metadata
from pathlib import Path

import pytest
import yaml

from serve_app.tools.observability import catalogue, files, ray_dashboards, rules
from tests.observability import (
    base_name,
    dashboard_exprs,
    dashboard_metric_names,
    promql_metric_names,
    rules_metric_names,
    scrape_metric_names,
)

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS = REPO / "deploy" / "prometheus"
GRAFANA = REPO / "deploy" / "grafana"
DASHBOARD = GRAFANA / "multimodel-serve.json"
RECORDING = PROMETHEUS / "rules" / "recording.yml"
ALERTS = PROMETHEUS / "rules" / "alerts.yml"
ALERT_TESTS = PROMETHEUS / "tests" / "alerts_test.yml"

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool is not on PATH (Debian/Ubuntu: `apt-get install prometheus`): it validates the "
    "Prometheus configs and rules and runs deploy/prometheus/tests/",
)


def _alerts() -> dict[str, dict]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return {rule["alert"]: rule for group in groups for rule in group["rules"]}


# -- generated, and up to date ---------------------------------------------------------------------------------


def test_generated_files_are_up_to_date():
    stale = [str(path.relative_to(REPO)) for path in files.stale()]
    assert not stale, f"out of date: {', '.join(stale)}; regenerate them with:\n  {files.COMMAND}"


def test_ray_dashboards_are_rays_own_for_the_pinned_ray():
    version = metadata.version("ray")
    pinned = [line for line in (REPO / "pyproject.toml").read_text().splitlines() if '"ray[serve' in line]
    assert pinned and version in pinned[0], "the installed Ray is not the one pyproject.toml pins"
    from ray.dashboard.modules.metrics import grafana_dashboard_factory as factory

    for name, function in ray_dashboards.DASHBOARDS.items():
        shipped = json.loads((GRAFANA / "ray" / name).read_text())
        _content, uid = getattr(factory, function)()
        assert shipped["uid"] == uid and f"rayVersion:{version}" in shipped["tags"], name
    assert f"Ray {version}" in (GRAFANA / "ray" / "README.md").read_text()


def test_rays_serve_dashboards_read_the_serve_series_the_app_dashboard_and_alerts_use():
    # Ray's dashboards are written against its own metric names: the Serve names in the catalogue must be among them.
    ray_names = set()
    for name in ("serve_grafana_dashboard.json", "serve_deployment_grafana_dashboard.json"):
        ray_names |= dashboard_metric_names(GRAFANA / "ray" / name)
    assert {m.series for m in catalogue.SERVE_METRICS} <= ray_names


# -- promtool ---------------------------------------------------------------------------------------------------


def _promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([PROMTOOL, *args], cwd=PROMETHEUS, capture_output=True, text=True, timeout=120)


@needs_promtool
@pytest.mark.parametrize("config", ["prometheus.yml", "prometheus-cluster.yml"])
def test_promtool_accepts_the_config_and_the_rules_it_loads(config):
    result = _promtool("check", "config", config)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 rule files found" in result.stdout


@needs_promtool
def test_promtool_accepts_the_rules():
    result = _promtool("check", "rules", "rules/recording.yml", "rules/alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_promtool_rule_unit_tests_pass():
    result = _promtool("test", "rules", str(ALERT_TESTS.relative_to(PROMETHEUS)))
    assert result.returncode == 0, result.stdout + result.stderr


# -- the rules --------------------------------------------------------------------------------------------------


def test_the_alerts_the_issue_asks_for_each_with_severity_summary_and_description():
    alerts = _alerts()
    assert set(alerts) >= {
        "MultimodelServeDown",
        "MultimodelServeNoHealthyIngress",
        "MultimodelServeSlowFirstToken",
        "MultimodelServeHighErrorRatio",
        "MultimodelServeQueueBacklog",
        "MultimodelServeQueueGrowing",
        "MultimodelServeGPUMemoryOverBudget",
    }
    for name, rule in alerts.items():
        assert rule["labels"]["severity"] in ("critical", "warning"), name
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], name
        assert rule["for"], name


def test_every_alert_has_a_promtool_unit_test():
    suite = yaml.safe_load(ALERT_TESTS.read_text())
    tested = {case["alertname"] for test in suite["tests"] for case in test["alert_rule_test"]}
    assert tested == set(_alerts())
    assert suite["rule_files"] == ["../" + f for f in rules.RULE_FILES]


def test_the_gpu_alert_matches_every_replica_to_its_deployments_one_budget():
    # Each replica reports the budget (Serve adds `replica` to every metric), so the budget side is aggregated
    # to one series per deployment and matched many-to-one: a plain `> on(deployment)` would be an error.
    expr = _alerts()["MultimodelServeGPUMemoryOverBudget"]["expr"]
    assert "group_left" in expr and f"max by (deployment) ({catalogue.GPU_MEMORY_BUDGET.series})" in expr


def test_rules_read_only_catalogued_series():
    known = catalogue.exported_names()
    recorded = {r.name for r in rules.recording_rules()}
    assert rules_metric_names(RECORDING) <= known
    assert rules_metric_names(ALERTS) <= known | recorded | {"up"}


def test_every_config_scrapes_the_one_job_the_alerts_select():
    for name in ("prometheus.yml", "prometheus-cluster.yml"):
        config = yaml.safe_load((PROMETHEUS / name).read_text())
        assert [job["job_name"] for job in config["scrape_configs"]] == [catalogue.SCRAPE_JOB], name
        assert config["rule_files"] == rules.RULE_FILES
    local = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())["scrape_configs"][0]
    assert local["static_configs"] == [{"targets": [f"app:{catalogue.METRICS_PORT}"]}]
    cluster = yaml.safe_load((PROMETHEUS / "prometheus-cluster.yml").read_text())["scrape_configs"][0]
    assert cluster["file_sd_configs"] == [{"files": ["/tmp/ray/prom_metrics_service_discovery.json"]}]
    # Ray's discovery file labels its targets job="ray": relabelled to the app's job.
    assert {"target_label": "job", "replacement": catalogue.SCRAPE_JOB} in cluster["relabel_configs"]


# -- the app dashboard ------------------------------------------------------------------------------------------


def _panels() -> list[dict]:
    return json.loads(DASHBOARD.read_text())["panels"]


def test_dashboard_queries_go_through_the_datasource_variable():
    dashboard = json.loads(DASHBOARD.read_text())
    (variable,) = [v for v in dashboard["templating"]["list"] if v["name"] == "datasource"]
    assert variable["type"] == "datasource" and variable["query"] == "prometheus"
    for panel in _panels():
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        assert all(t["datasource"]["uid"] == "${datasource}" for t in panel["targets"]), panel["title"]


def test_dashboard_reads_every_catalogued_metric_and_nothing_else():
    # Raw series only (no recording rules): the dashboard works on a Prometheus that has not loaded the rules.
    assert dashboard_metric_names(DASHBOARD) == catalogue.exported_names()


def test_dashboard_sections_and_layout():
    panels = _panels()
    rows = [p["title"] for p in panels if p["type"] == "row"]
    for word in ("Golden signals", "LLM", "Batching", "Pipelines", "GPU", "Replicas"):
        assert any(word in title for title in rows), word
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    cells = set()
    for panel in panels:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        mine = {(x, y) for x in range(pos["x"], pos["x"] + pos["w"]) for y in range(pos["y"], pos["y"] + pos["h"])}
        assert not cells & mine, f"{panel['title']} overlaps another panel"
        cells |= mine


def test_the_waterfalls_stack_each_pipelines_stages_in_run_order():
    for pipeline, stages in catalogue.PIPELINE_STAGES.items():
        (panel,) = [p for p in _panels() if p["title"].endswith(f": {pipeline}") and "waterfall" in p["title"]]
        assert panel["fieldConfig"]["defaults"]["custom"]["stacking"]["mode"] == "normal"
        assert [t["legendFormat"] for t in panel["targets"]] == list(stages)
        for target in panel["targets"]:
            assert f'pipeline="{pipeline}"' in target["expr"] and "histogram_quantile(0.5," in target["expr"]


# -- tests/observability.py, the lead's helper ------------------------------------------------------------------


def test_promql_metric_names_leaves_out_functions_labels_ranges_and_variables():
    expr = (
        'histogram_quantile(0.99, sum by (le, route) (rate(x_seconds_bucket{route=~"$route",model="a b"}'
        "[$__rate_interval]))) / on (route) group_left () max without (replica) (y_total offset 5m) "
        "> bool 1e3 or vector(0) and absent(up{job='j'} == 1)"
    )
    assert promql_metric_names(expr) == {"x_seconds", "y_total", "up"}


def test_histograms_map_to_one_name_on_both_sides():
    scrape = "\n".join(
        [
            "# HELP ray_h_seconds a histogram",
            "# TYPE ray_h_seconds histogram",
            'ray_h_seconds_bucket{le="0.1",model="m"} 3',
            'ray_h_seconds_bucket{le="+Inf",model="m"} 4',
            'ray_h_seconds_sum{model="m"} 0.5',
            'ray_h_seconds_count{model="m"} 4',
            'ray_c_total{route="/v1/models"} 7 1712345678000',
            "ray_g 1.5",
        ]
    )
    assert scrape_metric_names(scrape) == {"ray_h_seconds", "ray_c_total", "ray_g"}
    queried = promql_metric_names("sum(rate(ray_h_seconds_sum[5m])) / sum(rate(ray_h_seconds_count[5m]))")
    assert queried == {"ray_h_seconds"} == {base_name("ray_h_seconds_bucket")}


def test_dashboard_metric_names_on_the_shipped_dashboard():
    names = dashboard_metric_names(DASHBOARD)
    assert {
        "ray_mms_http_requests_total",  # a counter keeps _total
        "ray_mms_http_request_duration_seconds",  # a histogram, queried as _bucket
        "ray_mms_vector_store_operation_seconds",  # queried as _count only
        "ray_mms_model_info",  # a gauge (and the $model variable's label_values)
        "ray_serve_deployment_replica_healthy",
    } <= names
    assert not any(n.endswith(("_bucket", "_sum", "_count")) or ":" in n for n in names)
    assert not names & {"le", "model", "route", "deployment", "sum", "rate", "by"}
    # Every expression counted, panels and variables alike.
    assert len(dashboard_exprs(DASHBOARD)) > len([p for p in _panels() if p["type"] != "row"])
