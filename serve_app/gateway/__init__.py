"""The gateway: API keys, per-key limits and budgets, usage accounting and the response cache.

keys (making, hashing and naming keys), state (the one interface and its admission rule),
sqlite and server (its two backends), cache (exact-match answers), service (what the ingress
holds). The HTTP side, in request order: serve_app.http.auth (who calls) -> metering (headers,
settlement) -> the route's admission (serve_app.http.admission) and cache (answer_cache), and the
admin routes serve_app.http.routes.keys.
"""
