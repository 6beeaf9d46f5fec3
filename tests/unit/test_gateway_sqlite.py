"""The embedded gateway state (SQLite): the backend contract, and what survives the owner restarting."""

from __future__ import annotations

import asyncio
import time

import pytest

from serve_app.gateway.keys import duration_s, hash_key, token_of, well_formed
from serve_app.gateway.sqlite import SQLiteState
from tests.gateway_contract import CHECKS, demand, make_key, settlement


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_backend_contract(check, tmp_path):
    state = SQLiteState(tmp_path / "state.sqlite3")
    try:
        asyncio.run(check(state))
    finally:
        state.close()


def test_a_restarted_owner_keeps_counters_reservations_and_usage(tmp_path):
    path = tmp_path / "state.sqlite3"

    async def before() -> tuple[str, str]:
        state = SQLiteState(path)
        token = await make_key(state, rpm_limit=3, max_parallel_requests=3)
        settled, held = demand(token), demand(token)
        for d in (settled, held):
            assert (await state.admit(d)).admitted
        await state.settle(settlement(token, settled.reservation))
        state.close()  # the replica dies here: one request settled, one still in flight
        return token, held.reservation

    async def after(token: str, held: str) -> None:
        state = SQLiteState(path)
        assert len((await state.usage(token, None, None, 10)).data) == 1, "acknowledged usage is kept"
        admissions = [await state.admit(demand(token)) for _ in range(3)]
        assert [a.admitted for a in admissions] == [True, False, False], "no fresh burst: 2 of 3 were counted"
        await state.settle(settlement(token, held))  # the ingress's retry lands after the restart
        assert (await state.key_info(token)).spend == 14
        state.close()

    asyncio.run(after(*asyncio.run(before())))


@pytest.mark.parametrize(
    "key",
    ["sk-short", "' OR 1=1 --", "sk-x'; DROP TABLE keys; --", "sk-" + "a" * 300, "", "sk-\u00e9\u00e9\u00e9\u00e9"],
)
def test_malformed_keys_are_refused_before_any_lookup(key):
    assert not well_formed(key)


def test_keys_are_named_by_themselves_or_their_token():
    key = "sk-abcdefgh12345678"
    assert token_of(key) == hash_key(key) == token_of(hash_key(key))
    with pytest.raises(Exception, match="neither a key"):
        token_of("DROP TABLE keys")


@pytest.mark.parametrize(("text", "seconds"), [("30s", 30), ("15m", 900), ("12h", 43200), ("30d", 2592000)])
def test_litellm_durations(text, seconds):
    assert duration_s(text) == seconds


def test_old_windows_are_dropped(tmp_path):
    async def check() -> None:
        state = SQLiteState(tmp_path / "s.sqlite3")
        token = await make_key(state, rpm_limit=1)
        old = demand(token, now=time.time() - 600)
        await state.admit(old)
        await state.settle(settlement(token, old.reservation))
        assert state._db.execute("SELECT COUNT(*) FROM windows").fetchone()[0] == 0
        state.close()

    asyncio.run(check())
