"""An ingress replica's leases: slices of keys' minutes it spends without asking the state per request.

Asking the GatewayState replica is a Ray call on every keyed request (about 4 ms p50 on a 2-core
host, most of what the gateway cost a chat). With leases the state is asked when a key has no
live lease here, or its lease cannot cover the request; otherwise the book admits on its own and
records a claim, which reaches the state with the next batch of settlements (where it becomes the
request's reservation, so settling it works as before). A lease ends after `gateway.lease_s`, at
its minute's end, when spent, or when this replica changes its key; its unspent rest is given back
with the claims it still owes, so the window holds exactly what was used.

What a lease knows of its key (models, alias, metadata, limits) is what the state said when it
was granted: a key blocked or changed through another replica is seen here within `lease_s`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from serve_app.gateway.state import Admission, Claim, Demand, Grant, Window, window_reset_s

# A lease is not spent in its last moments: replicas refused meanwhile wait for its end, then ask again.
END_MARGIN_S = 0.05
UNLEASED_S = 1.0  # a key the state would not lease is not waited on (single-flight) for this long


@dataclass
class Lease:
    grant: Grant  # it ends by its minute's end (the state's rule), so it never spans two windows
    admission: Admission  # the state's answer to the request that asked: the key's fields and its window
    spent_requests: int = 0
    spent_tokens: int = 0
    unsent: list[Claim] = field(default_factory=list)

    def covers(self, demand: Demand) -> bool:
        models = self.admission.models
        return (
            demand.now < self.grant.expires_at - END_MARGIN_S
            and self.spent_requests < self.grant.requests
            and (self.grant.tokens is None or self.spent_tokens + demand.tokens <= self.grant.tokens)
            and (demand.model is None or not models or demand.model in models)
        )

    def spend(self, demand: Demand) -> Admission:
        self.spent_requests += 1
        self.spent_tokens += demand.tokens
        self.unsent.append(
            Claim(
                lease=self.grant.id,
                seq=self.spent_requests,
                token=demand.token,
                reservation=demand.reservation,
                tokens=demand.tokens,
                expires_at=demand.now + demand.reservation_ttl_s,
            )
        )
        return dataclasses.replace(self.admission, window=self._window(demand.now), lease=None)

    def _window(self, now: float) -> Window:
        """OpenAI's headers as this replica sees the minute: the state's figures less what it spent since."""
        seen = self.admission.window
        requests, tokens = seen.remaining_requests, seen.remaining_tokens
        return dataclasses.replace(
            seen,
            remaining_requests=None if requests is None else max(0, requests - self.spent_requests),
            remaining_tokens=None if tokens is None else max(0, tokens - self.spent_tokens),
            reset_s=window_reset_s(now),
        )


class LeaseBook:
    """The live lease per key, and the ended ones whose rest (and claims) the state has not yet taken back."""

    def __init__(self) -> None:
        self._live: dict[str, Lease] = {}
        self._ended: dict[str, Lease] = {}
        self._asking: dict[str, asyncio.Event] = {}
        self._unleased: dict[str, float] = {}  # keys the state would not lease, until when it is asked again

    def asking(self, token: str) -> asyncio.Event | None:
        """The answer another request of this key is waiting for, when its lease may cover this one too."""
        if self._unleased.get(token, 0.0) > time.monotonic():
            return None  # a key whose limits are counted per request: its requests ask side by side
        return self._asking.get(token)

    def ask(self, token: str) -> Callable[[], None]:
        """Mark this key's lease as being asked for; call the result once the state answered (twice is harmless)."""
        event = self._asking.setdefault(token, asyncio.Event())

        def answered() -> None:
            if self._asking.get(token) is event:
                del self._asking[token]
            event.set()

        return answered

    def spend(self, demand: Demand) -> Admission | None:
        """Admit from this key's lease, or None: the state must be asked (the lease, if any, is ended)."""
        lease = self._live.get(demand.token)
        if lease is None:
            return None
        if lease.covers(demand):
            return lease.spend(demand)
        self.end(demand.token)
        return None

    def add(self, demand: Demand, admission: Admission) -> None:
        if admission.lease is None:
            if admission.admitted:
                self._unleased[demand.token] = time.monotonic() + UNLEASED_S
            return
        self._unleased.pop(demand.token, None)
        self.end(demand.token)
        plain = dataclasses.replace(admission, lease=None)
        self._live[demand.token] = Lease(admission.lease, plain)

    def end(self, *tokens: str) -> None:
        for token in tokens:
            lease = self._live.pop(token, None)
            if lease is not None:
                self._ended[lease.grant.id] = lease

    def end_expired(self, now: float) -> None:
        self.end(*(token for token, lease in self._live.items() if now >= lease.grant.expires_at - END_MARGIN_S))

    def end_all(self) -> None:
        self.end(*list(self._live))

    def outbox(self) -> tuple[list[Claim], list[str]]:
        """Every claim the state has not acknowledged (resent until it has), and the leases to give back."""
        claims = [claim for lease in (*self._live.values(), *self._ended.values()) for claim in lease.unsent]
        return claims, list(self._ended)

    def sent(self, claims: Sequence[Claim], returned: Sequence[str]) -> None:
        """The state took these: forget them (claims made meanwhile stay for the next call)."""
        last: dict[str, int] = {}
        for claim in claims:
            last[claim.lease] = max(last.get(claim.lease, 0), claim.seq)
        for lease in (*self._live.values(), *self._ended.values()):
            done = last.get(lease.grant.id, 0)
            lease.unsent = [claim for claim in lease.unsent if claim.seq > done]
        for lease_id in returned:
            self._ended.pop(lease_id, None)

    def pending(self) -> bool:
        return bool(self._ended) or any(lease.unsent for lease in self._live.values())
