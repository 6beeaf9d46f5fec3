"""The gateway's embedded state: keys, limit counters and the usage log in one SQLite file.

Only ONE process may own `<data_dir>/gateway/state.sqlite3`, so this deployment runs as a single
replica (as VectorStore does for embedded Qdrant); every ingress replica admits through it, which
is what makes limits exact across them. Thin: serve_app.gateway.sqlite does the work. Restarted,
it reopens the same file: counters, reservations and the usage log are all there.

    state = serve.get_deployment_handle("GatewayState", app_name="default")
    await state.list_keys.remote()
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ray import serve

from serve_app.gateway.sqlite import SQLiteState
from serve_app.gateway.state import Admission, Claim, Demand, Settlement
from serve_app.protocol import KeyInfo, UsageResponse

STATE_FILE = Path("gateway") / "state.sqlite3"


@serve.deployment(name="GatewayState")
class EmbeddedGatewayState:
    """serve_app.gateway.state.GatewayState over SQLite, as one deployment every ingress replica calls."""

    def __init__(self, data_dir: Path):
        self._state = SQLiteState(Path(data_dir) / STATE_FILE)

    async def admit(self, demand: Demand, claims: Sequence[Claim] = (), returned: Sequence[str] = ()) -> Admission:
        return await self._state.admit(demand, claims, returned)

    async def reconcile(
        self, claims: Sequence[Claim], settlements: Sequence[Settlement], returned: Sequence[str]
    ) -> None:
        await self._state.reconcile(claims, settlements, returned)

    async def settle(self, settlement: Settlement) -> None:
        await self._state.settle(settlement)

    async def settle_many(self, settlements: list[Settlement]) -> None:
        await self._state.settle_many(settlements)

    async def create_key(self, token: str, name: str, fields: dict[str, Any], now: float) -> KeyInfo:
        return await self._state.create_key(token, name, fields, now)

    async def update_key(self, token: str, fields: dict[str, Any]) -> KeyInfo | None:
        return await self._state.update_key(token, fields)

    async def delete_keys(self, tokens: list[str], aliases: list[str]) -> list[str]:
        return await self._state.delete_keys(tokens, aliases)

    async def key_info(self, token: str) -> KeyInfo | None:
        return await self._state.key_info(token)

    async def list_keys(self) -> list[KeyInfo]:
        return await self._state.list_keys()

    async def usage(self, token: str | None, start: float | None, end: float | None, limit: int) -> UsageResponse:
        return await self._state.usage(token, start, end, limit)

    def check_health(self) -> None:
        self._state.ping()
