"""What the ingress holds of the gateway: its config, the master key, the state and the cache.

The state is reached through `Bounded`, which gives every call `gateway.timeout_s` and turns
a state that cannot answer into a clear 503: a request never hangs on a dead Redis, PostgreSQL
or GatewayState replica. Settling runs after the response is out, in the background, batched (one
call for the settlements of a few tens of milliseconds), and is retried until the state takes it (a
restarting GatewayState replica), so no acknowledged usage is lost; settling is idempotent, so a
retry never counts twice. With the embedded state, admissions come from this replica's leases
where one covers the request (serve_app.gateway.leases), and the settling calls carry the leases'
claims and returns too.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from serve_app.config import GatewayConfig
from serve_app.errors import APIError, ServiceUnavailable, unwrap
from serve_app.gateway.cache import ResponseCache
from serve_app.gateway.leases import LeaseBook
from serve_app.gateway.state import Admission, Demand, Settlement

logger = logging.getLogger("ray.serve")
SETTLE_RETRY_S = (0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0)
SETTLE_BATCH_S = 0.05
SETTLE_BATCH_MAX = 256
# A refusal while other replicas hold slices of the key's minute is asked again when they are back.
LEASE_ASKS = 3
RETURN_GRACE_S = 0.1  # a replica gives an ended lease back with its next flush


def required_master_key(env_name: str) -> str:
    key = os.environ.get(env_name)
    if not key:
        raise RuntimeError(
            f"gateway.master_key_env is {env_name!r} but that variable is empty or unset in the ingress replica; "
            "export it before `serve run` (e.g. SERVE_MASTER_KEY=sk-...), or set it in runtime_env.env_vars"
        )
    return key


class Bounded:
    """Any GatewayState (a DeploymentHandle's methods, or an in-process backend) with a deadline per call."""

    def __init__(self, call: Callable[[str, tuple], Awaitable[Any]], timeout_s: float, what: str):
        self._call = call
        self._timeout_s = timeout_s
        self._what = what

    async def __call__(self, method: str, *args: Any) -> Any:
        try:
            return await asyncio.wait_for(self._call(method, args), self._timeout_s)
        except TimeoutError:
            raise ServiceUnavailable(
                f"The gateway state ({self._what}) did not answer within {self._timeout_s:g} s; retry shortly.",
                code="gateway_unavailable",
                retry_after_s=1.0,
            ) from None
        except Exception as exc:
            cause = unwrap(exc)
            if isinstance(cause, APIError):
                raise cause from None
            raise ServiceUnavailable(
                f"The gateway state ({self._what}) is unavailable ({type(cause).__name__}); retry shortly.",
                code="gateway_unavailable",
                retry_after_s=1.0,
            ) from None


def handle_caller(handle: Any) -> Callable[[str, tuple], Awaitable[Any]]:
    async def call(method: str, args: tuple) -> Any:
        return await getattr(handle, method).remote(*args)

    return call


def object_caller(state: Any) -> Callable[[str, tuple], Awaitable[Any]]:
    async def call(method: str, args: tuple) -> Any:
        return await getattr(state, method)(*args)

    return call


class Gateway:
    """Set on the app as `app.state.gateway` by the Ingress; the middlewares and key routes use it."""

    def __init__(
        self,
        config: GatewayConfig,
        state: Bounded,
        model_version: Callable[[str], Awaitable[str]],
        master_key: str | None = None,
        leases: LeaseBook | None = None,
    ):
        self.config = config
        self.state = state
        self.model_version = model_version
        self._master_key = (master_key or required_master_key(config.master_key_env)).encode()
        self.cache = ResponseCache(config.cache) if config.cache is not None else None
        self._pending: list[Settlement] = []
        self._flusher: asyncio.Task | None = None
        self._leases = leases

    def is_master(self, key: str) -> bool:
        # Constant-time: the comparison must not tell an attacker how much of a guess was right.
        return secrets.compare_digest(key.encode(), self._master_key)

    async def admit(self, demand: Demand) -> Admission:
        """The state's answer for one request, or this replica's lease's when one covers it."""
        if self._leases is None:
            return await self.state("admit", demand)
        local = self._leases.spend(demand)
        if local is None:
            # Requests that arrive together wait for the one already asking: its lease may cover them.
            asking = self._leases.asking(demand.token)
            if asking is not None:
                await asking.wait()
                demand.now = time.time()
                local = self._leases.spend(demand)
        if local is not None:
            self._flush_soon()  # the claim reaches the state with the next batch
            return local
        demand.lease, demand.lease_ttl_s = uuid.uuid4().hex, self.config.lease_s
        answered = self._leases.ask(demand.token)
        try:
            for _ in range(LEASE_ASKS):
                claims, returned = self._leases.outbox()  # counted before the state judges this request
                admission: Admission = await self.state("admit", demand, claims, returned)
                self._leases.sent(claims, returned)
                self._leases.add(demand, admission)
                answered()
                if admission.leased_until is None:
                    break
                await asyncio.sleep(max(0.0, admission.leased_until - time.time()) + RETURN_GRACE_S)
                demand.now = time.time()
        finally:
            answered()
        if admission.lease is not None:  # given back when it ends, even if no request comes to notice
            asyncio.get_running_loop().call_later(max(0.0, admission.lease.expires_at - time.time()), self._flush_soon)
        return admission

    def forget(self, *tokens: str) -> None:
        """Keys this replica changed or deleted: their leases end now, so the next request sees the change."""
        if self._leases is not None:
            self._leases.end(*tokens)
            self._flush_soon()

    def settle_later(self, settlement: Settlement) -> None:
        """Settle in the background: the client has its answer already, and a cancelled request still settles.

        Settlements made within SETTLE_BATCH_S share one call to the state, off the requests' path.
        """
        self._pending.append(settlement)
        self._flush_soon()

    def _flush_soon(self) -> None:
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush())

    def _owed(self) -> bool:
        if self._leases is None:
            return bool(self._pending)
        self._leases.end_expired(time.time())
        return bool(self._pending) or self._leases.pending()

    async def _flush(self) -> None:
        await asyncio.sleep(SETTLE_BATCH_S)
        while self._owed():
            batch, self._pending = self._pending[:SETTLE_BATCH_MAX], self._pending[SETTLE_BATCH_MAX:]
            await self._settle(batch)

    async def _send(self, batch: list[Settlement]) -> None:
        if self._leases is None:
            await self.state("settle_many", batch)
            return
        claims, returned = self._leases.outbox()
        await self.state("reconcile", claims, batch, returned)
        self._leases.sent(claims, returned)

    async def _settle(self, batch: list[Settlement]) -> None:
        for wait in (*SETTLE_RETRY_S, None):
            try:
                await self._send(batch)
                return
            except Exception as exc:
                if wait is None:
                    logger.error("usage of %d requests lost: %s", len(batch), exc)
                    return
                await asyncio.sleep(wait)

    async def drain(self, timeout_s: float = 5.0) -> None:
        """Give the leases back and wait for the settlements in flight (tests, and a replica shutting down)."""
        if self._leases is not None:
            self._leases.end_all()
            self._flush_soon()
        if self._flusher is not None and not self._flusher.done():
            await asyncio.wait([self._flusher], timeout=timeout_s)


STATE_SERVICE = "gateway_state"


def connect_gateway(config: GatewayConfig, services: dict[str, Any], model_version: Callable) -> Gateway:
    """The ingress replica's gateway: over the GatewayState deployment (embedded) or Redis + PostgreSQL (server)."""
    if config.state == "embedded":
        state = Bounded(handle_caller(services[STATE_SERVICE]), config.timeout_s, "GatewayState deployment")
        # Leases spare the Ray call per request; Redis answers in-process calls fast enough without them.
        leases = LeaseBook() if config.lease_s > 0 else None
        return Gateway(config, state, model_version, leases=leases)
    from serve_app.gateway.server import ServerState

    state = Bounded(object_caller(ServerState.from_env(config)), config.timeout_s, "Redis/PostgreSQL")
    return Gateway(config, state, model_version)
