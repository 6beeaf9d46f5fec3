"""Autoscaling proven on CPU: the LLM scales 1 -> 2 under concurrent streams and back to 1 when idle.

The session app's LLM is given a low target and short delays for the test (Serve reconfigures a
running deployment's autoscaling in place) and restored after; load goes through the app handle
(Ingress -> LLM) and no request may fail, before, during or after either change.
The timeline (t, replicas running / target, requests in flight) is printed (`pytest -s`) and
written to data/reports/autoscaling_timeline.txt.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from ray import serve

from tests import serve_harness
from tests.conftest import long_story

# metrics_interval_s is deprecated in favour of environment variables, but still applied; silence its
# warning, repeated on every status read.
pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(600),  # the first user of the session app: its setup may wait for the app's load
    pytest.mark.filterwarnings("ignore:The `metrics_interval_s` field:DeprecationWarning"),
]

APP = "default"  # the session app
REPORT = serve_harness.REPO / "data" / "reports" / "autoscaling_timeline.txt"
AUTOSCALING = {
    "min_replicas": 1,
    "max_replicas": 2,
    "target_ongoing_requests": 1,  # 4 streams on one replica is 4x the target: scale to the max
    "upscale_delay_s": 1,
    "downscale_delay_s": 5,
    "metrics_interval_s": 0.5,
    "look_back_period_s": 2,
}
IN_FLIGHT = 4
# Generous: a new replica starts in ~10 s on an idle 2-core machine, minutes on a shared, saturated one.
UP_WITHIN_S = 300
DOWN_WITHIN_S = 120
STREAM = long_story(200)  # every stream runs to max_tokens


def _autoscaled(app: dict) -> None:
    llm = serve_harness.deployment_options(app, "LLM")
    llm.pop("num_replicas", None)
    llm.update(autoscaling_config=AUTOSCALING, max_ongoing_requests=IN_FLIGHT)


@pytest.fixture(scope="module")
def autoscaled_app(local_app):
    with serve_harness.reconfigured(_autoscaled):
        yield APP


class Timeline:
    """Samples the LLM's replicas (running, autoscaler's target) and the requests in flight."""

    def __init__(self) -> None:
        self.start = time.monotonic()
        self.rows: list[tuple[float, int, int, int, int]] = []
        self.in_flight = 0
        self.running = self.starting = self.target = 0

    def sample(self) -> None:
        from ray.serve.context import _get_global_client
        from ray.serve.schema import ServeInstanceDetails

        details = ServeInstanceDetails(**_get_global_client().get_serve_details())
        llm = details.applications[APP].deployments["LLM"]
        self.running = sum(r.state == "RUNNING" for r in llm.replicas)
        self.starting = sum(r.state in ("STARTING", "RECOVERING") for r in llm.replicas)
        self.target = llm.target_num_replicas
        t = round(time.monotonic() - self.start, 1)
        row = (t, self.running, self.starting, self.target, self.in_flight)
        if not self.rows or row[1:] != self.rows[-1][1:]:
            self.rows.append(row)  # changes only: a readable timeline

    async def run(self, every_s: float = 0.5) -> None:
        while True:
            await asyncio.to_thread(self.sample)
            await asyncio.sleep(every_s)

    async def wait_for(self, running: int, within_s: float) -> bool:
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            if self.running == running and self.target == running:
                return True
            await asyncio.sleep(0.25)
        return False

    def render(self) -> str:
        lines = [f"LLM autoscaling {AUTOSCALING}, {IN_FLIGHT} streams of {STREAM['max_tokens']} tokens kept in flight"]
        lines.append(f"{'t s':>7} {'running':>8} {'starting':>9} {'target':>7} {'in flight':>10}")
        lines += [f"{t:>7.1f} {r:>8} {s:>9} {target:>7} {n:>10}" for t, r, s, target, n in self.rows]
        return "\n".join(lines)


async def test_llm_scales_up_under_load_and_down_when_idle_without_failing_a_request(autoscaled_app):
    handle = serve.get_app_handle(autoscaled_app)
    timeline = Timeline()
    outcomes = {"completed": 0, "failed": []}

    async def one_stream() -> None:
        timeline.in_flight += 1
        try:
            last = None
            async for chunk in handle.options(stream=True).chat_stream.remote(STREAM):
                last = chunk
            assert last is not None and last.choices[0].finish_reason in ("length", "stop"), last
            outcomes["completed"] += 1
        except Exception as exc:  # every failure is reported by the assertion below, not lost
            outcomes["failed"].append(repr(exc))
        finally:
            timeline.in_flight -= 1

    async def keep_busy(stop: asyncio.Event) -> None:
        running: set[asyncio.Task] = set()
        while not stop.is_set():
            while len(running) < IN_FLIGHT:
                running.add(asyncio.create_task(one_stream()))
            _, running = await asyncio.wait(running, timeout=0.5, return_when=asyncio.FIRST_COMPLETED)
        await asyncio.gather(*running)

    sampler = asyncio.create_task(timeline.run())
    stop = asyncio.Event()
    try:
        await asyncio.to_thread(timeline.sample)
        assert (timeline.running, timeline.target) == (1, 1), "starts at min_replicas"
        load = asyncio.create_task(keep_busy(stop))
        scaled_up = await timeline.wait_for(running=2, within_s=UP_WITHIN_S)
        if scaled_up:
            await asyncio.sleep(5)  # keep the load on while both replicas serve
        stop.set()
        await load
        scaled_down = scaled_up and await timeline.wait_for(running=1, within_s=DOWN_WITHIN_S)
    finally:
        stop.set()
        sampler.cancel()
        report = timeline.render() + f"\ncompleted {outcomes['completed']}, failed {len(outcomes['failed'])}\n"
        REPORT.parent.mkdir(parents=True, exist_ok=True)
        REPORT.write_text(report)
        print("\n" + report)

    assert scaled_up, f"no scale-up to 2 replicas within {UP_WITHIN_S}s:\n{report}"
    assert scaled_down, f"no scale-down to 1 replica within {DOWN_WITHIN_S}s of idling:\n{report}"
    assert outcomes["failed"] == [], outcomes["failed"]
    assert outcomes["completed"] >= IN_FLIGHT
    # Still serving on the one remaining replica.
    reply = await handle.chat.remote({**STREAM, "max_tokens": 4})
    assert reply.choices[0].message.content is not None
