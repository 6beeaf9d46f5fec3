"""The browser console in a real headless Chromium (Debian's, driven by Playwright) against the session app.

Every page loads with no console error and no failed request, and is interactive within its time
(measured, written to the artefacts, never asserted); the chat streams into the page and shows the
usage; a generated video plays with a text track whose cues are the API's VTT; the boxes drawn are the
detections the API returns for the same image, and the slider re-filters them without a request; a bad
upload shows the envelope's message; untrusted text (an item's text, a file name) stays text.
Screenshots of every page, at desktop and phone width, go to `artifacts/console/` (gitignored; set
CONSOLE_ARTIFACTS to move them). The key admin test needs a gateway: tests/e2e/test_console_keys.py.
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.images import png
from tests.speech_media import encode, speech

CHROMIUM = "/usr/bin/chromium"
PAGES = ("models", "chat", "speech", "vision", "knowledge", "batches", "keys", "operations")
ARTIFACTS = Path(os.environ.get("CONSOLE_ARTIFACTS", Path(__file__).resolve().parents[2] / "artifacts" / "console"))
LLM, ASR, YOLO = "tiny-qwen2", "tiny-whisper", "tiny-yolov8n"

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is not installed: `make test-tools` installs chromium"
)


@pytest.fixture(scope="module")
def browser() -> Iterator:
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--autoplay-policy=no-user-gesture-required"],
        )
        yield browser
        browser.close()


class Watched:
    """A page and everything that went wrong on it: console errors, uncaught errors, failed or refused requests."""

    def __init__(self, page, base: str):
        self.page, self.base = page, base
        self.problems: list[str] = []
        self.requests: list[str] = []
        page.on("console", lambda m: m.type == "error" and self.problems.append(f"console: {m.text}"))
        page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        page.on("requestfailed", lambda r: self.problems.append(f"failed: {r.method} {r.url} {r.failure}"))
        page.on("request", lambda r: self.requests.append(f"{r.method} {r.url}"))
        page.on(
            "response", lambda r: r.status >= 400 and self.problems.append(f"{r.status}: {r.request.method} {r.url}")
        )

    def open(self, page_id: str) -> float:
        """Loads the console on a page; the seconds until it is interactive (its first data in, its controls live)."""
        self.page.goto("about:blank")
        started = time.perf_counter()
        self.page.goto(f"{self.base}/ui/#/{page_id}")
        self.page.wait_for_selector(f'main[data-page="{page_id}"][data-ready="1"]', timeout=60_000)
        elapsed = time.perf_counter() - started
        self.settle(page_id)
        return elapsed

    def settle(self, page_id: str) -> None:
        # Models is interactive with its cards; leaving it before its health is in would abort that call.
        if page_id == "models":
            self.page.wait_for_selector('#models-table[data-health="1"]', timeout=30_000)

    def wait_until(self, expression: str, timeout_s: float = 60) -> None:
        """Polls a JS expression (Playwright's wait_for_function evaluates strings, which the CSP forbids)."""
        deadline = time.monotonic() + timeout_s
        while not self.page.evaluate(f"() => Boolean({expression})"):
            assert time.monotonic() < deadline, f"timed out waiting for {expression}"
            time.sleep(0.2)

    def errors_shown(self) -> list[str]:
        return [t for t in self.page.locator("main .error").all_inner_texts() if t.strip()]


@pytest.fixture()
def console(browser, local_app) -> Iterator[Watched]:
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    watched = Watched(context.new_page(), local_app)
    yield watched
    context.close()


@pytest.fixture()
def http(local_app) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=local_app, timeout=120) as client:
        yield client


def navigate(console: Watched, page_id: str) -> float:
    """Seconds from a click on the page's link to the page interactive, in the loaded console."""
    started = time.perf_counter()
    console.page.click(f'nav a[data-page="{page_id}"]')
    console.page.wait_for_selector(f'main[data-page="{page_id}"][data-ready="1"]', timeout=60_000)
    elapsed = time.perf_counter() - started
    console.settle(page_id)
    return elapsed


def test_every_page_loads_clean_and_interactive(console, browser, local_app, http):
    timings = {}
    for page_id in PAGES:
        console.open(page_id)  # the first visit warms the routes behind the page
        timings[page_id] = {"load_ms": round(console.open(page_id) * 1000, 1)}
        if page_id == "models":
            assert console.page.locator("#models-table tbody tr").count() >= 10
        assert console.errors_shown() == [], page_id
        console.page.screenshot(path=str(ARTIFACTS / f"{page_id}.png"), full_page=True)
    console.open("keys")  # the one page that calls nothing before it is asked
    for page_id in PAGES:
        navigate(console, "models" if page_id == "keys" else "keys")
        timings[page_id]["navigate_ms"] = round(navigate(console, page_id) * 1000, 1)
        timings[page_id]["in_page_ms"] = float(console.page.locator("main").get_attribute("data-ready-ms"))
    for path in ("/v1/models", "/console/deployments", "/console/metrics", "/v1/collections"):
        started = time.perf_counter()
        assert http.get(path).status_code == 200
        timings[path] = round((time.perf_counter() - started) * 1000, 1)
    assert console.problems == []
    (ARTIFACTS / "timings.json").write_text(json.dumps(timings, indent=1))
    # The Operations page read the app's own exporter (Ray's port, reached by the Ingress, not the browser).
    assert http.get("/console/metrics").json()["sources"] >= 1
    # Readable at a phone's width: every page fits 390 px without sideways scrolling.
    phone = browser.new_context(viewport={"width": 390, "height": 844})
    small = Watched(phone.new_page(), local_app)
    for page_id in PAGES:
        small.open(page_id)
        width = small.page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"{page_id} is {width} px wide at 390"
        small.page.screenshot(path=str(ARTIFACTS / f"{page_id}-390.png"), full_page=True)
    phone.close()
    assert small.problems == []


def test_chat_streams_into_the_page_and_shows_the_usage(console):
    page = console.page
    console.open("chat")
    page.select_option("select[name=model]", LLM)
    page.fill("input[name=max_tokens]", "24")
    page.fill("input[name=temperature]", "0")
    page.fill("textarea[name=message]", "Tell me a story.")
    # Every length the answer takes while it streams in.
    page.evaluate(
        """() => { window.__lengths = []; new MutationObserver(() => {
            const a = document.querySelector('.assistant .answer'); if (a) window.__lengths.push(a.textContent.length);
        }).observe(document.querySelector('main'), {subtree: true, childList: true, characterData: true}); }"""
    )
    page.click("#send")
    page.wait_for_selector(".assistant[data-done]", timeout=60_000)
    lengths = page.evaluate("window.__lengths")
    assert len({n for n in lengths if n > 0}) >= 2, f"the answer arrived in one piece: {lengths}"
    usage = page.locator('[data-stat="usage"]').inner_text()
    prompt, completion, total = map(int, re.findall(r"\d+", usage))
    assert completion >= 2 and total == prompt + completion
    assert page.locator('[data-stat="variant"]').inner_text() == LLM
    assert page.locator('[data-stat="TTFT"]').inner_text().endswith(" ms")
    page.screenshot(path=str(ARTIFACTS / "chat-answered.png"), full_page=True)
    assert console.problems == []


def test_operations_charts_draw_the_apps_own_metrics(console, openai_client):
    for _ in range(3):
        openai_client.chat.completions.create(model=LLM, messages=[{"role": "user", "content": "hi"}], max_tokens=2)
    console.open("operations")
    # The page polls every 5 s; the Ingress scrapes at most every 2 s; Ray exports every second here.
    console.wait_until(
        "Array.from(document.querySelectorAll('#charts figure')).some(f =>"
        " f.querySelector('figcaption').textContent === 'Requests per second' && f.querySelector('svg')"
        f" && f.querySelector('.legend').textContent.includes('{LLM}:'))",
        90,
    )
    console.page.screenshot(path=str(ARTIFACTS / "operations-live.png"), full_page=True)
    assert console.problems == []


def parse_vtt(text: str) -> list[tuple[str, float, float, str]]:
    def seconds(stamp: str) -> float:
        h, m, s = stamp.split(":")
        return int(h) * 3600 + int(m) * 60 + float(s)

    cues = []
    for block in text.strip().split("\n\n")[1:]:
        cue_id, timing, *lines = block.split("\n")
        start, _, end = timing.split(" ")[:3]
        cues.append((cue_id, seconds(start), seconds(end), "\n".join(lines)))
    return cues


def test_a_video_plays_with_the_apis_vtt_as_its_text_track(console, http, tmp_path):
    video = tmp_path / "clip.webm"
    video.write_bytes(encode(speech(3.0), "webm", video=True))  # VP8 + Opus: what Chromium plays
    page = console.page
    console.open("speech")
    page.set_input_files("input[type=file]", str(video))
    page.select_option("select[name=model]", ASR)
    page.get_by_role("button", name="Transcribe").click()
    console.wait_until("document.querySelector('track') && document.querySelector('track').readyState === 2", 120)
    shown = page.evaluate(
        """() => { const v = document.querySelector('video'); return Array.from(v.textTracks[0].cues)
            .map(c => [c.id, c.startTime, c.endTime, c.text]); }"""
    )
    reply = http.post(
        "/v1/audio/transcriptions",
        files={"file": ("clip.webm", video.read_bytes(), "video/webm")},
        data={"model": ASR, "response_format": "vtt"},
    )
    assert reply.status_code == 200, reply.text
    expected = parse_vtt(reply.text)
    assert expected, "the API's VTT has no cue to compare"
    assert [(i, pytest.approx(s, abs=1e-3), pytest.approx(e, abs=1e-3), t) for i, s, e, t in expected] == [
        tuple(cue) for cue in shown
    ]
    page.evaluate("() => { const v = document.querySelector('video'); v.muted = true; return v.play(); }")
    console.wait_until("document.querySelector('video').currentTime > 0.2", 30)
    assert page.locator("#transcript table tbody tr").count() > 0  # the word (or segment) timings
    # The video-summary pipeline, its stages drawn as a waterfall.
    page.get_by_role("button", name="Summarise (video-summary pipeline)").click()
    page.wait_for_selector("#summary figure", timeout=120_000)
    stages = page.locator("#summary g.stage").evaluate_all("gs => gs.map(g => g.dataset.stage)")
    assert stages == ["decode", "transcribe", "align", "diarize", "summarise"]
    page.screenshot(path=str(ARTIFACTS / "speech-transcribed.png"), full_page=True)
    assert console.problems == []


def drawn_boxes(page) -> list[tuple]:
    return page.evaluate(
        """() => Array.from(document.querySelectorAll('#detections g.box')).map(g =>
            [g.dataset.label, Number(g.dataset.score), Number(g.dataset.x1), Number(g.dataset.y1),
             Number(g.dataset.x2), Number(g.dataset.y2)])"""
    )


def as_rows(detections: list[dict]) -> list[tuple]:
    return sorted(
        (d["label"], round(d["score"], 4), *(round(d["box"][k], 2) for k in ("x1", "y1", "x2", "y2")))
        for d in detections
    )


def detect_in_console_then_api(console, http, image, shown: str):
    """`image` through the vision page's Detect until `shown` appears, then the same upload to the API."""
    console.open("vision")
    console.page.set_input_files("input[type=file]", str(image))
    console.page.select_option("select[name=model]", YOLO)
    console.page.get_by_role("button", name="Detect").click()
    console.page.wait_for_selector(shown, timeout=60_000)
    return http.post(
        "/v1/detections",
        files={"image": (image.name, image.read_bytes(), "image/png")},
        data={"model": YOLO, "conf": "0.25"},
    )


def test_the_boxes_drawn_are_the_apis_detections_and_the_slider_refilters_locally(console, http, tmp_path):
    image = tmp_path / "scene.png"
    image.write_bytes(png("circle", "blue", size=(320, 240)))
    page = console.page
    reply = detect_in_console_then_api(console, http, image, "#detections figure")
    assert reply.status_code == 200, reply.text
    detections = reply.json()["detections"]
    assert detections, "the tiny detector found nothing to draw"
    drawn = drawn_boxes(page)
    assert sorted((label, round(s, 4), *(round(v, 2) for v in box)) for label, s, *box in drawn) == as_rows(detections)
    page.screenshot(path=str(ARTIFACTS / "vision-boxes.png"), full_page=True)
    # A higher minimum score re-filters what was fetched: no second request.
    scores = sorted(d["score"] for d in detections)
    threshold = round(min(0.95, max(0.3, scores[len(scores) // 2])) * 20) / 20
    asked = len([r for r in console.requests if "/v1/detections" in r])
    page.evaluate(
        "t => { const s = document.getElementById('conf'); s.value = String(t); s.dispatchEvent(new Event('input')); }",
        threshold,
    )
    assert len(drawn_boxes(page)) == len([d for d in detections if d["score"] >= threshold])
    assert len([r for r in console.requests if "/v1/detections" in r]) == asked
    assert console.problems == []


def test_a_bad_upload_shows_the_envelopes_message(console, http, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_bytes(b"this is not an image at all")
    reply = detect_in_console_then_api(console, http, bad, "main .error:not([hidden])")
    assert reply.status_code == 400
    assert console.errors_shown() == [reply.json()["error"]["message"]]
    console.page.screenshot(path=str(ARTIFACTS / "vision-bad-upload.png"), full_page=True)


PAYLOAD = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script> & "quotes"'


def test_untrusted_text_stays_text(console, http, tmp_path):
    name = f"e2e-console-{uuid.uuid4().hex[:8]}"
    assert http.post("/v1/collections", json={"name": name, "model": "all-minilm-l6-v2"}).status_code == 200
    try:
        item = {"text": PAYLOAD, "metadata": {"note": PAYLOAD}}
        assert http.post(f"/v1/collections/{name}/items", json={"items": [item]}).status_code == 200
        page = console.page
        console.open("knowledge")
        page.get_by_role("button", name=f"Open {name}").click()
        page.wait_for_selector("#collection table")
        cells = page.locator("#collection table td").all_inner_texts()
        assert PAYLOAD in cells
        page.fill("input[name=query]", "quotes")
        page.get_by_role("button", name="Search", exact=True).click()
        page.wait_for_selector("#hits table")
        assert PAYLOAD in page.locator("#hits table td").all_inner_texts()
        # A file name is shown as given, too.
        evil = tmp_path / "a<img src=x onerror=window.__pwned=3>.png"
        evil.write_bytes(png())
        console.open("vision")
        page.set_input_files("input[type=file]", str(evil))
        assert evil.name in page.locator("main [role=status]").first.inner_text()
        assert page.evaluate("window.__pwned") is None
        assert page.locator("main img[src=x], main script").count() == 0
    finally:
        http.delete(f"/v1/collections/{name}")


def test_a_batch_created_in_the_page_completes_with_its_bar_full(console, http, tmp_path):
    lines = [
        {"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions",
         "body": {"model": LLM, "messages": [{"role": "user", "content": f"hi {i}"}], "max_tokens": 4}}
        for i in range(3)
    ]  # fmt: skip
    jsonl = tmp_path / "requests.jsonl"
    jsonl.write_text("".join(json.dumps(line) + "\n" for line in lines))
    page = console.page
    console.open("batches")
    page.set_input_files("input[type=file]", str(jsonl))
    page.get_by_role("button", name="Create batch").click()
    batch_id = page.locator("#created-batch").inner_text(timeout=60_000)
    # The page polls the batch: its row ends `completed` with the bar full, 3 of 3 lines answered.
    row = (
        f"Array.from(document.querySelectorAll('#batches tbody tr')).find(r => r.cells[0].textContent === {batch_id!r})"
    )
    console.wait_until(f"{row} && {row}.cells[2].textContent === 'completed'", 180)
    percent, counts = page.evaluate(
        f"() => [{row}.querySelector('progress').dataset.percent, {row}.cells[3].textContent]"
    )
    assert (percent, counts) == ("100", "3 completed · 0 failed · 3 total")
    page.screenshot(path=str(ARTIFACTS / "batches-completed.png"), full_page=True)
    assert console.problems == []
