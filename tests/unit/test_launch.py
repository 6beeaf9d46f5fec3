"""The launcher's metrics port: fixed so a scrape config can name it, refused up front when unusable."""

from __future__ import annotations

import socket

import pytest

from serve_app.tools import launch


def test_the_port_comes_from_the_environment(monkeypatch):
    port = launch.free_port()
    monkeypatch.setenv(launch.METRICS_PORT_ENV, str(port))
    assert launch.metrics_export_port() == port


@pytest.mark.parametrize("value", ["http", "0", "70000", "-1"])
def test_a_value_that_is_not_a_port_is_refused(monkeypatch, value):
    monkeypatch.setenv(launch.METRICS_PORT_ENV, value)
    with pytest.raises(SystemExit, match="SERVE_METRICS_PORT"):
        launch.metrics_export_port()


def test_a_taken_port_is_refused_before_ray_starts(monkeypatch):
    with socket.socket() as holder:
        holder.bind(("", 0))
        holder.listen()
        monkeypatch.setenv(launch.METRICS_PORT_ENV, str(holder.getsockname()[1]))
        with pytest.raises(SystemExit, match="is taken"):
            launch.metrics_export_port()
