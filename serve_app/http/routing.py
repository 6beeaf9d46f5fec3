"""Routes declared on the Ingress's methods, and registered on each replica's own app by `make_api`.

`@post("/v1/embeddings", response_model=...)` only marks the method: nothing is registered at
import time and no app exists before a replica builds one. `add_routes(app, ingress)` then
registers the replica's bound methods, so a route reaches its own replica's handles and state
through `self`, with no module-global app to share between replicas or tests.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from fastapi import FastAPI

F = TypeVar("F", bound=Callable[..., Any])
_MARK = "__http_route__"


@dataclass(frozen=True)
class RouteSpec:
    method: str
    path: str
    options: dict[str, Any] = field(default_factory=dict)  # FastAPI's add_api_route keywords


def _route(method: str, path: str, **options: Any) -> Callable[[F], F]:
    def mark(method_fn: F) -> F:
        setattr(method_fn, _MARK, RouteSpec(method, path, options))
        return method_fn

    return mark


def get(path: str, **options: Any) -> Callable[[F], F]:
    return _route("GET", path, **options)


def post(path: str, **options: Any) -> Callable[[F], F]:
    return _route("POST", path, **options)


def delete(path: str, **options: Any) -> Callable[[F], F]:
    return _route("DELETE", path, **options)


def declared_routes(owner: object) -> Iterator[tuple[RouteSpec, Callable[..., Any]]]:
    """Each marked method of `owner`'s class and its mixins, bound to `owner`, in declaration order."""
    seen: set[str] = set()
    for cls in reversed(type(owner).__mro__):
        for name, member in vars(cls).items():
            spec = getattr(member, _MARK, None)
            if isinstance(spec, RouteSpec) and name not in seen:
                seen.add(name)
                yield spec, getattr(owner, name)


def add_routes(app: FastAPI, owner: object) -> None:
    for spec, endpoint in declared_routes(owner):
        app.add_api_route(spec.path, endpoint, methods=[spec.method], **spec.options)
