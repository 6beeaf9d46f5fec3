"""The console's Keys page on a slim gateway app (Ingress, LLM, GatewayState) in a real headless Chromium:
a key created in the page answers a chat in the page, and fails there once it is blocked in the page.

Heavy: it cold-starts an app of its own beside the session's (the session app has no gateway).
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests import serve_harness
from tests.e2e.test_console import ARTIFACTS, CHROMIUM, LLM, Watched, browser  # noqa: F401 (the browser fixture)
from tests.gateway_harness import gateway_app

MASTER = "sk-console-master-0123456789"
APP = "gwconsole"

pytestmark = [
    pytest.mark.heavy,
    pytest.mark.timeout(900),
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is not installed"),
]


@pytest.fixture(scope="module")
def gw(serve_http, tmp_path_factory) -> str:
    app = gateway_app(APP, tmp_path_factory.mktemp("console-gateway"), MASTER, ingress_replicas=1)
    assert app["args"]["ingress"]["console"]["enabled"], "configs/gateway.yaml serves the console"
    with serve_harness.beside(app, timeout_s=600):
        yield f"{serve_http}/{APP}"


def chat(page) -> None:
    page.select_option("select[name=model]", LLM)
    page.fill("input[name=max_tokens]", "4")
    page.fill("textarea[name=message]", "hi")
    page.click("#send")


def test_a_key_made_in_the_page_chats_then_fails_once_blocked(browser, gw):  # noqa: F811
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    console = Watched(context.new_page(), gw)
    page = console.page
    console.open("keys")
    page.fill("input[name=master]", MASTER)
    page.get_by_role("button", name="Use master key").click()
    page.wait_for_selector("#key-list table")
    page.fill("input[name=key_alias]", "console-e2e")
    page.fill("input[name=rpm_limit]", "100")
    page.get_by_role("button", name="Create key").click()
    key = page.locator("#new-key").inner_text(timeout=30_000)
    assert key.startswith("sk-")
    page.get_by_role("button", name="Use it as this tab's API key").click()
    page.screenshot(path=str(ARTIFACTS / "keys.png"), full_page=True)

    console.open("chat")
    chat(page)
    page.wait_for_selector(".assistant[data-done]", timeout=120_000)
    assert "completion" in page.locator('[data-stat="usage"]').inner_text()
    assert console.problems == []

    console.open("keys")  # the master key is remembered for the tab
    page.get_by_role("button", name="Block console-e2e").click()
    page.wait_for_selector("#key-list >> text=blocked")
    # Blocked, the key is refused from the chat page's first call on: the page shows the envelope's message.
    console.open("chat")
    page.wait_for_selector("main .error", timeout=60_000)
    with httpx.Client(base_url=gw, timeout=60, headers={"authorization": f"Bearer {key}"}) as http:
        listed = http.get("/v1/models")
        refused = http.post(
            "/v1/chat/completions",
            json={"model": LLM, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4},
        )
    assert refused.status_code == listed.status_code and refused.status_code in (401, 403)
    assert console.errors_shown() == [listed.json()["error"]["message"]] == [refused.json()["error"]["message"]]
    page.screenshot(path=str(ARTIFACTS / "chat-blocked-key.png"), full_page=True)
    context.close()
