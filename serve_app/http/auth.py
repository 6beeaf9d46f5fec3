"""Authentication: one API key, named by `ingress.api_key_env`, sent as `Authorization: Bearer <key>`.

A route dependency, so the routes that must stay open (/health, /ready, for probes) simply do
not list it. Off when no variable is configured.
"""

from __future__ import annotations

import os
import secrets

from fastapi import Request

from serve_app.errors import AuthenticationFailed


def required_api_key(env_name: str | None) -> str | None:
    """The key from the replica's environment; a configured but empty variable fails the replica at start."""
    if env_name is None:
        return None
    key = os.environ.get(env_name)
    if not key:
        raise RuntimeError(
            f"ingress.api_key_env is {env_name!r} but that variable is empty or unset in the ingress replica; "
            "export it before `serve run`, or set it in the application's runtime_env.env_vars"
        )
    return key


async def api_key(request: Request) -> None:
    expected = request.app.state.api_key
    if expected is None:
        return
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    # Constant-time: the comparison must not tell an attacker how much of a guess was right.
    if scheme.lower() != "bearer" or not secrets.compare_digest(given.strip().encode(), expected.encode()):
        raise AuthenticationFailed("Incorrect or missing API key: send `Authorization: Bearer <key>`.")
