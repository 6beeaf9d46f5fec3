"""The launcher's ports: the metrics port, fixed so a scrape config can name it and refused up front
when unusable; HAProxy's side ports, free ones per Ray."""

from __future__ import annotations

import os
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


def _side_ports() -> dict[str, str]:
    return {name: os.environ[name] for name in launch.SIDE_PORTS}


def test_side_ports_picked_by_a_parent_are_picked_again_but_an_operators_are_kept(monkeypatch):
    for name in (*launch.SIDE_PORTS, launch.PICKED_PORTS_ENV):
        monkeypatch.delenv(name, raising=False)
    operators = str(launch.free_port())
    monkeypatch.setenv("RAY_SERVE_HAPROXY_STATS_PORT", operators)
    others = [name for name in launch.SIDE_PORTS if name != "RAY_SERVE_HAPROXY_STATS_PORT"]

    launch.set_ray_environment()
    mine = _side_ports()
    assert mine["RAY_SERVE_HAPROXY_STATS_PORT"] == operators
    assert os.environ[launch.PICKED_PORTS_ENV] == f"{os.getpid()} {','.join(others)}"
    launch.set_ray_environment()  # again in the same process: the same ports, which its Ray may hold
    assert _side_ports() == mine

    # A child inherits this environment; to it, the ports were picked by another process (pid 1 here).
    monkeypatch.setenv(launch.PICKED_PORTS_ENV, f"1 {','.join(others)}")
    monkeypatch.setattr(launch, "free_port", lambda: 1)
    launch.set_ray_environment()
    assert _side_ports() == {"RAY_SERVE_HAPROXY_STATS_PORT": operators} | {name: "1" for name in others}
