"""Leases: ingress replicas admit from slices of a key's minute, and the embedded state still counts exactly.

Two `Gateway`s stand for two Ingress replicas over one real SQLite state (no Ray): the calls they
make are counted, the limit must hold to the request, and what the window holds at the end must be
what was admitted and used.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid

import pytest

from serve_app.config import GatewayConfig
from serve_app.gateway.leases import LeaseBook
from serve_app.gateway.service import Bounded, Gateway
from serve_app.gateway.sqlite import SQLiteState
from serve_app.gateway.state import Claim, window_of, window_reset_s
from tests.gateway_contract import demand, make_key, settlement

pytestmark = pytest.mark.timeout(60)


class Counted:
    """The state as a Ray handle would reach it, with the calls per method counted."""

    def __init__(self, state: SQLiteState):
        self.state = state
        self.calls: dict[str, int] = {}

    async def __call__(self, method: str, args: tuple):
        self.calls[method] = self.calls.get(method, 0) + 1
        await asyncio.sleep(0)  # a real call yields to the loop: let replicas interleave
        return await getattr(self.state, method)(*args)


def replicas(state: Counted, count: int, lease_s: float = 0.3) -> list[Gateway]:
    config = GatewayConfig(lease_s=lease_s)
    return [
        Gateway(config, Bounded(state, 5.0, "SQLite"), model_version=None, master_key="sk-master", leases=LeaseBook())
        for _ in range(count)
    ]


def window_row(state: SQLiteState, token: str) -> tuple[int, int]:
    row = state._db.execute(
        "SELECT requests, tokens FROM windows WHERE token = ? AND window = ?", (token, window_of(time.time()))
    ).fetchone()
    return (row[0], row[1]) if row else (0, 0)


@pytest.fixture()
def state(tmp_path):
    sqlite = SQLiteState(tmp_path / "state.sqlite3")
    yield sqlite
    sqlite.close()


async def _early_in_a_minute() -> None:
    # Fixed one-minute windows: a test that spans a boundary would rightly see two limits.
    if window_reset_s(time.time()) < 15:
        await asyncio.sleep(window_reset_s(time.time()) + 0.05)


async def _burst(gateways: list[Gateway], token: str, clients: int = 8, each: int = 12) -> int:
    """Concurrent clients, each request to a replica picked at random; how many were admitted."""
    rng = random.Random(0)

    async def client() -> int:
        admitted = 0
        for _ in range(each):
            gateway, asked = gateways[rng.randrange(len(gateways))], demand(token)
            if (await gateway.admit(asked)).admitted:
                admitted += 1
                gateway.settle_later(settlement(token, asked.reservation))
        return admitted

    admitted = sum(await asyncio.gather(*(client() for _ in range(clients))))
    for gateway in gateways:
        await gateway.drain()
    return admitted


def test_two_replicas_hold_the_limit_exactly(state):
    async def check() -> None:
        await _early_in_a_minute()
        token = await make_key(state, rpm_limit=60)
        assert await _burst(replicas(Counted(state), 2), token) == 60, "slices were held on both replicas"
        assert window_row(state, token)[0] == 60, "every lease's unspent rest came back"
        assert state._db.execute("SELECT COUNT(*) FROM leases").fetchone()[0] == 0

    asyncio.run(check())


def test_a_slice_left_unspent_elsewhere_comes_back_to_who_needs_it(state):
    async def check() -> None:
        await _early_in_a_minute()
        token = await make_key(state, rpm_limit=20)
        idle, busy = replicas(Counted(state), 2, lease_s=0.3)
        first = await idle.admit(demand(token))
        assert first.admitted and first.lease is not None, "the idle replica holds a slice it will not spend"
        admitted = [(await busy.admit(demand(token))).admitted for _ in range(19)]
        assert all(admitted), "a refusal waited for the idle replica's slice to come back, then was admitted"
        assert not (await busy.admit(demand(token))).admitted, "and the limit holds"
        for gateway in (idle, busy):
            await gateway.drain()

    asyncio.run(check())


def test_requests_together_share_one_call_for_their_lease(state):
    async def check() -> None:
        await _early_in_a_minute()
        counted = Counted(state)
        token = await make_key(state, rpm_limit=100_000, tpm_limit=10**8)
        assert await _burst(replicas(counted, 2, lease_s=5), token) == 96
        assert counted.calls["admit"] <= 4, f"one ask per replica, and a few as slices shrink: {counted.calls}"
        assert window_row(state, token)[0] == 96

    asyncio.run(check())


def test_leased_requests_settle_to_what_they_used(state):
    async def check() -> None:
        await _early_in_a_minute()
        token = await make_key(state, rpm_limit=1000, tpm_limit=100_000)
        (gateway,) = replicas(Counted(state), 1, lease_s=5)
        demands = [demand(token, tokens=50) for _ in range(10)]
        admissions = [await gateway.admit(d) for d in demands]
        assert all(a.admitted for a in admissions)
        assert admissions[-1].window.remaining_requests == 1000 - 10, "the headers count what this replica spent"
        for d in demands:
            gateway.settle_later(settlement(d.token, d.reservation))  # 7 tokens each
        await gateway.drain()
        assert window_row(state, token) == (10, 70), "the window holds what was used, not what was reserved"
        assert (await state.key_info(token)).spend == 70
        assert len((await state.usage(token, None, None, 100)).data) == 10
        assert state._db.execute("SELECT COUNT(*) FROM reservations").fetchone()[0] == 0

    asyncio.run(check())


def test_a_key_changed_here_is_asked_again_at_once(state):
    async def check() -> None:
        token = await make_key(state)
        counted = Counted(state)
        (gateway,) = replicas(counted, 1, lease_s=5)
        assert (await gateway.admit(demand(token))).admitted
        assert (await gateway.admit(demand(token))).admitted
        assert counted.calls["admit"] == 1, "the second came from the lease"
        await state.update_key(token, {"blocked": True})
        gateway.forget(token)
        assert (await gateway.admit(demand(token))).outcome == "blocked"
        await gateway.drain()

    asyncio.run(check())


def test_keys_with_parallel_or_budget_limits_are_never_leased(state):
    async def check() -> None:
        counted = Counted(state)
        (gateway,) = replicas(counted, 1, lease_s=5)
        for fields in ({"max_parallel_requests": 100}, {"max_budget": 10**6}, {"max_images": 100}):
            token = await make_key(state, **fields)
            for _ in range(3):
                assert (await gateway.admit(demand(token))).admitted
        assert counted.calls["admit"] == 9
        await gateway.drain()

    asyncio.run(check())


def test_claims_count_once_however_often_they_are_sent(state):
    async def check() -> None:
        token = await make_key(state, rpm_limit=100)
        first = demand(token)
        first.lease, first.lease_ttl_s = uuid.uuid4().hex, 30
        grant = (await state.admit(first)).lease
        assert grant is not None and grant.requests == (100 - 1) // 4
        claims = [Claim(grant.id, seq, token, uuid.uuid4().hex, 10, time.time() + 60) for seq in (1, 2)]
        await state.reconcile(claims[:1], [], [])
        await state.reconcile(claims, [], [])  # resent: the first was not acknowledged
        await state.reconcile(claims, [], [grant.id])  # and again with the return
        await state.reconcile(claims, [], [grant.id])  # a late duplicate after the return
        assert state._db.execute("SELECT COUNT(*) FROM reservations").fetchone()[0] == 3
        assert window_row(state, token) == (3, 30), "the asking request and two claims; the rest came back"

    asyncio.run(check())
