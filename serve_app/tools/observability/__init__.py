"""The observability files shipped under deploy/, generated from one metric catalogue.

    python -m serve_app.tools.observability            # (re)write them all, from the repository root
    python -m serve_app.tools.observability --check    # exit 1 and name the files that are out of date

- catalogue.py: every metric the dashboards and rules read (the app's, Ray Serve's) and how Ray exports
  them (`ray_` prefix, `_total` counters, `_bucket/_sum/_count` histograms), the scrape job and port;
- dashboard.py: deploy/grafana/multimodel-serve.json, panels as data (PromQL and the app's rows);
- grafana.py: the Target/Panel/Row model and the Grafana JSON it renders to (layout, variables);
- rules.py: deploy/prometheus/rules/{recording,alerts}.yml and the two Prometheus configs;
- ray_dashboards.py: Ray's own Grafana dashboards (Serve, Serve deployment, cluster), rendered by the
  installed Ray's own generator into deploy/grafana/ray/.

tests/unit/test_observability.py fails when a committed file differs from what these produce.
"""
