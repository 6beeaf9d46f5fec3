"""What every GatewayState backend must do, as checks over one state: SQLite and Redis + PostgreSQL run them.

Each check is an async function of a fresh, empty state; `CHECKS` lists them for parametrizing.
"""

from __future__ import annotations

import asyncio
import time
import uuid

from serve_app.gateway.keys import hash_key, key_name, new_key
from serve_app.gateway.state import Demand, GatewayState, Settlement


async def make_key(state: GatewayState, **fields) -> str:
    key = new_key()
    await state.create_key(hash_key(key), key_name(key), fields, time.time())
    return hash_key(key)


def demand(token: str, tokens: int = 10, model: str | None = "m", now: float | None = None) -> Demand:
    return Demand(
        token=token,
        model=model,
        tokens=tokens,
        images=0,
        now=time.time() if now is None else now,
        reservation=uuid.uuid4().hex,
        reservation_ttl_s=60,
    )


def settlement(token: str, reservation: str | None, prompt: int = 3, completion: int = 4) -> Settlement:
    return Settlement(
        token=token,
        route="/v1/chat/completions",
        status=200,
        latency_ms=1.0,
        ended_at=time.time(),
        reservation=reservation,
        model="m",
        prompt_tokens=prompt,
        completion_tokens=completion,
    )


async def concurrent_admissions_are_exact(state: GatewayState) -> None:
    token = await make_key(state, rpm_limit=10)
    admissions = await asyncio.gather(*(state.admit(demand(token)) for _ in range(50)))
    assert sum(a.admitted for a in admissions) == 10
    assert {a.outcome for a in admissions if not a.admitted} == {"requests"}


async def unknown_blocked_expired_and_models(state: GatewayState) -> None:
    assert (await state.admit(demand(hash_key("sk-nobody-0123456789")))).outcome == "unknown"
    blocked = await make_key(state, blocked=True)
    assert (await state.admit(demand(blocked))).outcome == "blocked"
    expired = await make_key(state, expires=time.time() - 1)
    assert (await state.admit(demand(expired))).outcome == "expired"
    scoped = await make_key(state, models=["a", "b"])
    assert (await state.admit(demand(scoped, model="c"))).outcome == "model"
    assert (await state.admit(demand(scoped, model="b"))).admitted


async def tokens_are_reserved_then_settled(state: GatewayState) -> None:
    token = await make_key(state, tpm_limit=100)
    first = demand(token, tokens=60)
    assert (await state.admit(first)).admitted
    assert (await state.admit(demand(token, tokens=60))).outcome == "tokens", "60 reserved + 60 > 100"
    await state.settle(settlement(token, first.reservation))  # 7 used
    admission = await state.admit(demand(token, tokens=60))
    assert admission.admitted and admission.window.remaining_tokens == 100 - 7 - 60


async def settling_twice_counts_once(state: GatewayState) -> None:
    token = await make_key(state, max_budget=1000)
    first = demand(token)
    await state.admit(first)
    await state.settle(settlement(token, first.reservation))
    await state.settle(settlement(token, first.reservation))
    info = await state.key_info(token)
    assert info.spend == 7
    assert len((await state.usage(token, None, None, 100)).data) == 1


async def parallel_requests_are_reservations_in_flight(state: GatewayState) -> None:
    token = await make_key(state, max_parallel_requests=2)
    held = [demand(token), demand(token)]
    for d in held:
        assert (await state.admit(d)).admitted
    assert (await state.admit(demand(token))).outcome == "parallel"
    await state.settle(settlement(token, held[0].reservation))
    assert (await state.admit(demand(token))).admitted
    # A reservation whose ingress died stops counting once it expires.
    later = demand(token, now=time.time() + 120)
    assert (await state.admit(later)).admitted


async def budget_refuses_once_spent_or_reserved(state: GatewayState) -> None:
    token = await make_key(state, max_budget=10)
    first = demand(token, tokens=8)
    assert (await state.admit(first)).admitted
    assert (await state.admit(demand(token, tokens=8))).admitted, "8 reserved < 10"
    assert (await state.admit(demand(token, tokens=8))).outcome == "quota", "16 reserved >= 10"


async def key_crud(state: GatewayState) -> None:
    token = await make_key(state, key_alias="x", metadata={"team": "a"})
    info = await state.update_key(token, {"rpm_limit": 5, "metadata": {"cache": True}})
    assert info.rpm_limit == 5 and info.metadata == {"cache": True} and info.key_alias == "x"
    assert await state.update_key("0" * 64, {"rpm_limit": 1}) is None
    assert [k.token for k in await state.list_keys()] == [token]
    assert await state.delete_keys([], ["x"]) == [token]
    assert await state.key_info(token) is None and await state.list_keys() == []


async def usage_by_key_and_time(state: GatewayState) -> None:
    a, b = await make_key(state), await make_key(state)
    start = time.time()
    for token in (a, b, b):
        d = demand(token)
        await state.admit(d)
        await state.settle(settlement(token, d.reservation))
    assert len((await state.usage(None, start, None, 100)).data) == 3
    mine = await state.usage(b, start, None, 100)
    assert len(mine.data) == 2 and mine.totals.total_tokens == 14
    assert (await state.usage(None, start, None, 1)).has_more
    assert (await state.usage(None, time.time() + 5, None, 100)).data == []


CHECKS = [
    concurrent_admissions_are_exact,
    unknown_blocked_expired_and_models,
    tokens_are_reserved_then_settled,
    settling_twice_counts_once,
    parallel_requests_are_reservations_in_flight,
    budget_refuses_once_spent_or_reserved,
    key_crud,
    usage_by_key_and_time,
]
