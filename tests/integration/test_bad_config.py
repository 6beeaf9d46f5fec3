"""A config typo fails the deploy with a message naming the field; the running app is untouched."""

from __future__ import annotations

import httpx
import pytest

from tests import serve_harness

pytestmark = pytest.mark.slow


def _typo(app: dict) -> None:
    llm = app["args"]["llms"][0]
    llm["enginee"] = llm.pop("engine")


def test_bad_config_fails_by_field_name_and_running_app_keeps_serving(local_app):
    local = serve_harness.application("local.yaml")
    broken = serve_harness.application("local.yaml", name="broken", route_prefix="/broken", edit=_typo)
    with pytest.raises(RuntimeError, match=r"llms\.0\.enginee"):
        serve_harness.deploy_apps([local, broken], timeout_s=120)
    serve_harness.deploy_apps([local])
    assert httpx.get(f"{local_app}/ready", timeout=30).status_code == 200
