"""The HTTP layer of the ingress: the FastAPI app, its middlewares and dependencies, SSE, routes."""
